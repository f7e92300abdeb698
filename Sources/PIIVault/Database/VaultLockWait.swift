import Postgres

/// Who holds the vault-wide value lock `forget`, `retention` and `retokenize` wait on, for the message of a lock
/// timeout: `vault.vault_lock_holders()` (migration 0017) reads the table lock's holders from `pg_locks`. Sessions
/// are told apart by `application_name`, which piivault sets per command (`piivault etl`, `piivault forget`,
/// `piivault retention`).
enum VaultLockHolders {
    /// A session holding the lock.
    struct Holder: Sendable, Equatable {
        let pid: Int
        let applicationName: String
        let login: String
    }

    /// The holders of the vault-wide value lock, other than this session. Empty when they let go meanwhile or the
    /// query fails.
    static func find(on connection: PostgresConnection) async -> [Holder] {
        let rows = try? await connection.query(
            "SELECT pid, application_name AS app, login FROM vault.vault_lock_holders()")
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
