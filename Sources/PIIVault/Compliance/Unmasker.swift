import Foundation
import Postgres

/// Who is asking, as written into the access log's `os_user` and `client_host`. The database records its own
/// authenticated login (`db_user`) beside these, which are the client's claim.
public struct AccessLogCaller: Sendable, Equatable {
    public var osUser: String
    public var clientHost: String

    public init(osUser: String, clientHost: String) {
        self.osUser = osUser
        self.clientHost = clientHost
    }

    /// This process's user (`USER`/`LOGNAME`, else the password database's name for the uid, else the uid) and
    /// host name.
    public static var current: AccessLogCaller {
        let environment = ProcessInfo.processInfo.environment
        let account = getpwuid(getuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
        let user = environment["USER"] ?? environment["LOGNAME"] ?? account ?? "uid \(getuid())"
        return AccessLogCaller(osUser: user, clientHost: ProcessInfo.processInfo.hostName)
    }
}

/// Recovers original values for a compliance officer (role `piivault_compliance`), logging every access.
///
/// Two steps (migration 0008): `vault.request_unmask_*` appends the access-log entry and records which rows it
/// grants, in a transaction of its own that is committed before the call returns; only then does
/// `vault.release_unmask_*` hand out the sealed rows of that grant, once. So:
/// - no sealed value leaves the database before its entry is committed, whatever the client does (a rolled-back
///   read is impossible, not merely avoided by this client); if the append or its commit fails, nothing is released;
/// - another vault's key is refused at step 1 (the data keys' key ids are compared there): one entry, no rows;
/// - a value that does not open (moved between rows, damaged) is logged as a refusal after the grant's entry;
/// - a login outside `piivault_compliance` is refused by Postgres, and the attempt is logged through
///   `audit.record_denied`.
public struct Unmasker: Sendable {
    public let connection: PostgresConnection
    public let secretKey: VaultSecretKey
    public let caller: AccessLogCaller

    public init(connection: PostgresConnection, secretKey: VaultSecretKey, caller: AccessLogCaller = .current) {
        self.connection = connection
        self.secretKey = secretKey
        self.caller = caller
    }

    /// The original values of `tokens` (`vault.request_unmask_tokens`, then `release_unmask_tokens`). Refused when more than `maxRows` distinct tokens are
    /// asked for.
    public func unmask(tokens: [String], reason: String, maxRows: Int) async throws -> Unmasked<UnmaskedTokens> {
        var seen = Set<String>()
        let wanted = tokens.filter { seen.insert($0).inserted }
        let subject = "tokens:" + wanted.sorted().joined(separator: ",")
        let tokensJSON = String(decoding: try JSONSerialization.data(withJSONObject: wanted), as: UTF8.self)
        let request: PostgresQuery = """
            SELECT * FROM vault.request_unmask_tokens(
                ARRAY(SELECT jsonb_array_elements_text(\(tokensJSON)::jsonb)), \(reason), \(caller.osUser),
                \(caller.clientHost), \(maxRows), \(secretKey.keyID.hex))
            """
        return try await access(subject: subject, reason: reason, request: request, release: { seq in
            "SELECT * FROM vault.release_unmask_tokens(\(seq))"
        }) { rows, keys in
            var opened: [String: UnmaskedValue] = [:]
            for row in rows {
                let token = try row["token"].requiredString()
                let value = try keys.openValue(
                    try row["sealed"].requiredBytes(), token: token,
                    dataKey: try DataKeyReference(row, id: "data_key_id", keyID: "key_id", sealed: "sealed_key"))
                opened[token] = UnmaskedValue(token: token, field: try row["field"].requiredString(), value: value)
            }
            return UnmaskedTokens(values: wanted.compactMap { opened[$0] },
                                  unknownTokens: wanted.filter { opened[$0] == nil })
        }
    }

    /// Every login of `userID` with its original ip and device_id (`vault.request_unmask_user`, then
    /// `release_unmask_user`). Refused when the user has
    /// more than `maxRows` logins.
    public func unmask(userID: String, reason: String, maxRows: Int) async throws -> Unmasked<[UnmaskedLogin]> {
        let request: PostgresQuery = """
            SELECT * FROM vault.request_unmask_user(\(userID), \(reason), \(caller.osUser), \(caller.clientHost),
                                                    \(maxRows), \(secretKey.keyID.hex))
            """
        return try await access(subject: "user_id:" + userID, reason: reason, request: request, release: { seq in
            "SELECT *, create_date::text AS create_date_text FROM vault.release_unmask_user(\(seq))"
        }) {
            rows, keys in
            try rows.map { row in
                let maskedIP = try row["masked_ip"].string()
                let maskedDeviceID = try row["masked_device_id"].string()
                var ip: String?
                if let maskedIP, let sealed = try row["ip_sealed"].bytes() {
                    ip = try keys.openValue(sealed, token: maskedIP, dataKey: try DataKeyReference(
                        row, id: "ip_data_key_id", keyID: "ip_key_id", sealed: "ip_sealed_key"))
                }
                var deviceID: String?
                if let maskedDeviceID, let sealed = try row["device_sealed"].bytes() {
                    deviceID = try keys.openValue(sealed, token: maskedDeviceID, dataKey: try DataKeyReference(
                        row, id: "device_data_key_id", keyID: "device_key_id", sealed: "device_sealed_key"))
                }
                return UnmaskedLogin(
                    userID: try row["user_id"].requiredString(), deviceType: try row["device_type"].string(),
                    maskedIP: maskedIP, ip: ip, maskedDeviceID: maskedDeviceID, deviceID: deviceID,
                    locale: try row["locale"].string(), appVersion: try row["app_version"].int(),
                    appVersionText: try row["app_version_text"].string(),
                    createDate: try row["create_date_text"].string(), messageID: try row["message_id"].string())
            }
        }
    }

    /// The body of a quarantined message, exactly as received (`vault.request_unmask_quarantined`, then `release_unmask_quarantined`); nil when there is no
    /// quarantined message with that id (the access is logged all the same).
    public func unmask(quarantinedMessageID messageID: String, reason: String) async throws
        -> Unmasked<UnmaskedMessage?>
    {
        let request: PostgresQuery = """
            SELECT * FROM vault.request_unmask_quarantined(\(messageID), \(reason), \(caller.osUser),
                                                           \(caller.clientHost), \(secretKey.keyID.hex))
            """
        return try await access(subject: "message_id:" + messageID, reason: reason, request: request, release: { seq in
            "SELECT *, received_at::text AS received_at_text FROM vault.release_unmask_quarantined(\(seq))"
        }) { rows, keys in
            guard let row = rows.first else { return nil }
            let body = try keys.openBody(
                try row["sealed_body"].requiredBytes(), messageID: messageID,
                dataKey: try DataKeyReference(row, id: "data_key_id", keyID: "key_id", sealed: "sealed_key"))
            return UnmaskedMessage(
                messageID: messageID, receivedAt: try row["received_at_text"].requiredString(),
                reason: try row["quarantine_reason"].requiredString(), body: body)
        }
    }

    // MARK: - One logged access

    /// Step 1: `request` appends the access-log entry and records which rows it grants; it runs on its own and is
    /// committed before anything else happens. Step 2: `release(seq)` returns the granted sealed rows, which `open`
    /// opens inside that transaction; a value that does not open rolls it back and is logged as a refusal.
    private func access<Rows: Sendable>(
        subject: String, reason: String, request: PostgresQuery, release: (Int) -> PostgresQuery,
        open: ([PostgresRow], DataKeyRing) throws -> Rows
    ) async throws -> Unmasked<Rows> {
        guard !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw UnmaskError.reasonRequired }
        let granted: PostgresRows
        do {
            granted = try await connection.query(request)  // its own transaction: committed when it returns
        } catch let error as PostgresError where error.isPermissionDenied {
            throw UnmaskError.notPermitted(logSeq: try? await recordDenied(subject: subject, reason: reason))
        }
        guard let entry = granted.first else { throw UnmaskProtocolError() }
        let seq = try entry["log_seq"].requiredInt()
        let outcome = try entry["outcome"].requiredString()
        if let otherKey = try entry["other_key_id"].string() {
            throw UnmaskError.wrongVaultKey(recorded: otherKey, given: secretKey.keyID, logSeq: seq)
        }
        if outcome.hasPrefix("refused") { throw UnmaskError.overRowCap(outcome: outcome, logSeq: seq) }

        let keys = DataKeyRing(secretKey: secretKey)
        if try entry["row_count"].requiredInt() == 0 {
            return Unmasked(rows: try open([], keys), logSeq: seq, outcome: outcome)
        }
        do {
            let rows = try await connection.transaction { connection in
                try open(Array(try await connection.query(release(seq))), keys)
            }
            return Unmasked(rows: rows, logSeq: seq, outcome: outcome)
        } catch let failure as OpenFailure {
            // The values were released under entry `seq` but do not open: log why, then report it.
            let refusal = try await diagnose(failure)
            let refusalSeq = try await recordRefusal(subject: subject, reason: reason, outcome: refusal.loggedOutcome ?? "")
            throw refusal.logged(as: refusalSeq)
        }
    }

    /// Tells a value moved from another row from a damaged one, by trying the tokens sealed under the same data key.
    private func diagnose(_ failure: OpenFailure) async throws -> UnmaskError {
        switch failure {
        case .refused(let error):
            return error
        case let .value(token, dataKeyID, sealed, opener):
            let candidates = try await connection.query(
                "SELECT t FROM vault.tokens_sealed_with(\(dataKeyID)) AS t").map { try $0["t"].requiredString() }
            if case .moved(let original) = opener.diagnose(sealed, expectedToken: token, candidates: candidates) {
                return .valueMoved(token: token, originalToken: original, logSeq: 0)
            }
            return .valueDamaged(subject: "token \(token)", logSeq: 0)
        }
    }

    private func recordRefusal(subject: String, reason: String, outcome: String) async throws -> Int {
        let rows = try await connection.query("""
            SELECT audit.record_refusal('unmask', \(reason), \(subject), \(outcome), \(caller.osUser),
                                        \(caller.clientHost)) AS seq
            """)
        return try rows.first?["seq"].requiredInt() ?? 0
    }

    private func recordDenied(subject: String, reason: String) async throws -> Int {
        let rows = try await connection.query("""
            SELECT audit.record_denied('unmask', \(reason), \(subject), \(caller.osUser), \(caller.clientHost)) AS seq
            """)
        return try rows.first?["seq"].requiredInt() ?? 0
    }
}

/// A `vault.request_unmask_*` call that returned no row: they always return one.
struct UnmaskProtocolError: PIIVaultReportableError {
    var message: String { "the vault's unmask request returned no row; run `piivault migrate` to bring the database up to date" }
    var exitCode: PIIVaultExitCode { .failure }
}
