import Postgres

/// Who holds the advisory locks `forget` and `retention` wait on (the vault-wide value lock, a user's subject lock),
/// for the message of a lock timeout. Sessions are told apart by `application_name`, which piivault sets per command
/// (`piivault etl`, `piivault forget`, `piivault retention`); `pg_locks` and that column are visible to every login.
enum VaultLockHolders {
    /// A session holding one of the locks.
    struct Holder: Sendable, Equatable {
        let pid: Int
        let applicationName: String
        let login: String
    }

    /// The holders of the vault-wide value lock and of the subject locks of `subjectHashes`, other than this session.
    /// Empty when they let go meanwhile or the query fails.
    static func find(on connection: PostgresConnection, subjectHashes: [String] = []) async -> [Holder] {
        let literal = PostgresArray.texts(subjectHashes)
        let rows = try? await connection.query("""
            WITH keys AS (
                SELECT hashtextextended('piivault-vault-values', 0) AS k
                UNION ALL
                SELECT hashtextextended('piivault-subject:' || h, 0) FROM unnest(\(literal)::text[]) AS h)
            SELECT DISTINCT l.pid, coalesce(a.application_name, '') AS app, coalesce(a.usename::text, '?') AS login
              FROM pg_catalog.pg_locks AS l
              JOIN keys ON l.classid = ((keys.k >> 32) & 4294967295)::oid AND l.objid = (keys.k & 4294967295)::oid
              LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.pid <> pg_backend_pid()
               AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
             ORDER BY l.pid
            """)
        return (try? rows?.map { row in
            Holder(pid: try row["pid"].requiredInt(), applicationName: try row["app"].requiredString(),
                   login: try row["login"].requiredString())
        }) ?? []
    }
}

/// `forget` or `retention` gave up waiting for a lock an ETL batch (or another erasure) holds; nothing was deleted by
/// the statement that timed out.
public struct VaultLockTimeout: PIIVaultReportableError, Equatable {
    /// What was waiting: `forget`, `retention`.
    public let action: String
    /// Holders as found (pid, application name, login); empty when none could be seen.
    let holders: [VaultLockHolders.Holder]

    public var message: String {
        let etl = holders.filter { $0.applicationName.hasPrefix("piivault etl") }
        let pids = { (holders: [VaultLockHolders.Holder]) in holders.map { String($0.pid) }.joined(separator: ", ") }
        let retry = action == "retention" ? "retry after it ends (a rerun resumes where this one stopped)" : "retry after it ends"
        if !etl.isEmpty {
            let what = action == "forget" ? "is loading this user's messages (or values they share)" : "is loading into the vault"
            return "\(action) timed out waiting for a lock: an ETL run (pid \(pids(etl))) \(what); nothing was deleted by this step; \(retry)"
        }
        if let other = holders.first {
            let who = other.applicationName.hasPrefix("piivault ")
                ? "a `\(other.applicationName.dropFirst("piivault ".count))` run (pid \(pids(holders)))"
                : "another session (pid \(pids(holders)), login \(other.login)"
                    + (other.applicationName.isEmpty ? ")" : ", application \(other.applicationName))")
            return "\(action) timed out waiting for a lock: \(who) holds it; nothing was deleted by this step; \(retry), or ask the database owner to end it (SELECT pg_terminate_backend(PID))"
        }
        return "\(action) timed out waiting for a lock an ETL batch or another erasure held; nothing was deleted by this step; \(retry)"
    }

    public var exitCode: PIIVaultExitCode { .unavailable }
}
