import Foundation
import Postgres

/// The auditor's work beyond reading the log: checkpoints signed with the auditor's key, verification against
/// them, the incremental export for a SIEM, and the review report. Each call opens its own connection.
public struct AuditorService: Sendable {
    /// A libpq connection string or URI ("" for libpq's defaults).
    public let databaseURL: String

    public init(databaseURL: String) {
        self.databaseURL = databaseURL
    }

    /// Verifies the chain, then writes its head as a statement at `path` and its signature at `path.minisig`
    /// (neither may exist yet). A broken chain is refused: signing it would vouch for the damage.
    public func signCheckpoint(with key: Minisign.SecretKey, to path: String) async throws -> SignedCheckpoint {
        let signaturePath = path + ".minisig"
        let existing = [path, signaturePath].filter { FileManager.default.fileExists(atPath: $0) }
        guard existing.isEmpty else { throw CheckpointFileExists(files: existing) }
        let (head, database, identity) = try await Database.withConnection(databaseURL) { connection in
            let head = try await AccessLogReader(connection: connection).checkpoint()
            return (head, try await Self.databaseName(connection), try await DatabaseIdentity.current(connection))
        }
        let checkpoint = SignedCheckpoint(head: head, takenAt: SignedCheckpoint.now(), database: database,
                                          databaseID: identity)
        try KeyGeneration.writeNew(path: path, contents: Array(checkpoint.statement.utf8), mode: 0o644) {}
        do {
            try KeyGeneration.writeNew(path: signaturePath, contents: Array(checkpoint.signature(with: key).utf8),
                                       mode: 0o644) {}
        } catch {
            try? FileManager.default.removeItem(atPath: path)
            throw error
        }
        return checkpoint
    }

    /// Checks each checkpoint's signature with `auditorKey`, then that the log is intact and extends every signed
    /// head. A signature that does not verify throws; a log that does not extend a head is a broken verdict.
    public func verify(checkpoints paths: [String], auditorKey: Minisign.PublicKey, anchor: AccessLogAnchor? = nil)
        async throws -> (AccessLogVerdict, [SignedCheckpoint])
    {
        let checkpoints = try paths.map { try SignedCheckpoint.load(path: $0, publicKey: auditorKey) }
        let (entries, identity) = try await Database.withConnection(databaseURL) { connection in
            let entries = try await connection.transaction { connection in
                try await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return try await AccessLogReader(connection: connection).entries()
            }
            return (entries, try await DatabaseIdentity.current(connection))
        }
        // A checkpoint of a copy would otherwise match: the copy's log is the original's, byte for byte.
        for (path, checkpoint) in zip(paths, checkpoints) {
            if let signedID = checkpoint.databaseID, signedID != identity {
                throw CheckpointDatabaseMismatch(file: path, checkpointDatabase: checkpoint.database,
                                                 checkpointIdentity: signedID, currentIdentity: identity)
            }
        }
        let anchors = checkpoints.map(\.head) + (anchor.map { [$0] } ?? [])
        var verdict = AccessLogVerifier.verify(entries, anchor: nil)
        for anchor in anchors {
            let checked = AccessLogVerifier.verify(entries, anchor: anchor)
            if case .broken = checked {
                verdict = checked
                break
            }
        }
        return (verdict, checkpoints)
    }

    /// Streams the entries matching `filter` as JSON lines to `write`, a page at a time.
    public func exportJSONLines(matching filter: AccessLogFilter, _ write: (String) -> Void) async throws {
        try await Database.withConnection(databaseURL) { connection in
            try await AccessLogReader(connection: connection).forEachPage(matching: filter) { entries in
                write(entries.map { $0.jsonLine + "\n" }.joined())
            }
        }
    }

    /// The review report for entries in `since`..<`until`, with the whole chain verified (against the signed
    /// checkpoints given, each signature checked first).
    public func report(since: String?, until: String?, checkpoints paths: [String], auditorKey: Minisign.PublicKey?)
        async throws -> AuditReport
    {
        var verdict: AccessLogVerdict
        var checkpoints: [SignedCheckpoint] = []
        if let auditorKey {
            (verdict, checkpoints) = try await verify(checkpoints: paths, auditorKey: auditorKey)
        } else {
            verdict = try await Database.withConnection(databaseURL) { try await AccessLogReader(connection: $0).verify() }
        }
        let (entries, officers, policiesAtStart) = try await Database.withConnection(databaseURL) { connection in
            let reader = AccessLogReader(connection: connection)
            let entries = try await reader.entries(matching: AccessLogFilter(since: since, until: until))
            // The policies in force when the period began: the policy changes before it.
            let earlier = since == nil ? [] : try await reader.entries(matching: AccessLogFilter(until: since, action: "policy"))
            let officers = try await Self.officerLogins(among: Set(entries.map(\.dbUser)), connection)
                .union(AuditReport.actedAsOfficers(entries))
            return (entries, officers, AuditReport.policies(after: earlier))
        }
        return AuditReport(entries: entries, verdict: verdict, checkpoints: checkpoints, since: since, until: until,
                           generatedAt: SignedCheckpoint.now(), officerLogins: officers,
                           policiesAtStart: policiesAtStart)
    }

    /// Which of `logins` may act as compliance officers now (members of `piivault_compliance`, superusers included).
    /// A login dropped since is not one: an officer who left is known by their entries (`actedAsOfficers`), and
    /// counting every dropped login would take an analyst's refused attempts for an officer's accesses.
    static func officerLogins(among logins: Set<String>, _ connection: PostgresConnection) async throws -> Set<String> {
        guard !logins.isEmpty else { return [] }
        let members = try await connection.query("""
            SELECT r.rolname FROM pg_catalog.pg_roles AS r
             WHERE r.rolname = ANY(\(PostgresArray.texts(logins.sorted()))::text[])
               AND pg_catalog.pg_has_role(r.oid, 'piivault_compliance', 'MEMBER')
            """)
        return Set(try members.map { try $0["rolname"].requiredString() })
    }

    /// `NAME on HOST:PORT` as the server sees itself.
    static func databaseName(_ connection: PostgresConnection) async throws -> String {
        let row = try await connection.query("""
            SELECT current_database() AS name, coalesce(host(inet_server_addr()), 'local socket') AS host,
                   current_setting('port') AS port
            """).requiredFirst("SELECT current_database()")
        return "\(try row["name"].requiredString()) on \(try row["host"].requiredString()):\(try row["port"].requiredString())"
    }
}

/// `audit checkpoint --sign` found its statement or signature file already there; nothing was written.
public struct CheckpointFileExists: PIIVaultReportableError, Equatable {
    public let files: [String]
    public var message: String {
        "\(files.joined(separator: ", ")) already \(files.count == 1 ? "exists" : "exist"); a signed checkpoint never replaces one: choose another --out, or move the old one away"
    }
    public var exitCode: PIIVaultExitCode { .failure }
}
