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

/// What step 1 of the gate decided: the entry it appended (committed) and, unless refused, the grant recorded under
/// the same seq.
struct AccessGrant: Sendable {
    /// The access-log entry's seq; also the grant's key.
    let seq: Int
    /// The logged outcome (`ok`, `unknown tokens: ...`, `not found: ...`, `refused: ...`).
    let outcome: String
    /// The rows the entry counted (0 for a refusal).
    let rowCount: Int
    /// The vault key id the rows are sealed to, when the request was refused because none is sealed to the caller's.
    let otherKeyID: String?

    var isRefused: Bool { outcome.hasPrefix("refused") }
}

/// The one path every compliance action takes to sealed data (unmask today; lookup, forget, rewrap, retokenize and
/// retention next): a committed access-log entry first, then the action, never the reverse.
///
/// - `request` runs the action's `request_*` SQL function on its own (autocommit), which appends the entry and
///   records a grant keyed by the entry's seq and the action (`audit.append_and_grant`, migration 0010). When it
///   returns, the entry is committed. A login outside `piivault_compliance` is refused by Postgres (42501) and its
///   attempt is recorded with the procedure `audit.record_denied` (which commits its own append); a log held locked
///   by another session is reported as such.
/// - `release` runs the action's `release_*` SQL function for that seq in a transaction, which claims the grant
///   (`audit.claim_grant`: committed earlier, same login, once, within five minutes) and returns or changes exactly
///   the granted rows; `body` works on them inside that transaction.
/// - `recordRefusal` appends a second entry when the client refuses what it was given (a value that does not open,
///   a forged value).
///
/// An action that deletes writes its entry in the same transaction as the deletion instead (one SQL function that
/// calls `audit.append_entry` and deletes), so neither happens without the other.
///
/// A new action adds its SQL request/release pair in a migration and calls these three methods; see SECURITY.md.
struct LoggedAccessGate: Sendable {
    let connection: PostgresConnection
    let caller: AccessLogCaller
    /// The entry's `action` column: `unmask`, `lookup`, ...
    let action: String

    /// Step 1. `call` must return one row with `log_seq`, `outcome`, `row_count` and `other_key_id`.
    /// `deniedSubject` is what a refused login's attempt records (fixed values only; see `audit.record_denied`).
    func request(_ call: PostgresQuery, reason: String, deniedSubject: String) async throws -> AccessGrant {
        try await requestRow(call, reason: reason, deniedSubject: deniedSubject).grant
    }

    /// Step 1, also handing back the request function's row for the columns an action adds (counts, ...).
    func requestRow(_ call: PostgresQuery, reason: String, deniedSubject: String) async throws
        -> (grant: AccessGrant, row: PostgresRow)
    {
        guard !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw UnmaskError.reasonRequired }
        let rows: PostgresRows
        do {
            rows = try await connection.query(call)  // its own transaction: committed when it returns
        } catch let error as PostgresError where error.isPermissionDenied {
            throw UnmaskError.notPermitted(logSeq: try? await recordDenied(subject: deniedSubject, reason: reason))
        } catch let error as PostgresError where error.sqlState == "55P03" {
            throw AccessLogBusy(holders: await lockHolders())
        }
        guard let row = rows.first else { throw UnmaskProtocolError() }
        return (AccessGrant(seq: try row["log_seq"].requiredInt(), outcome: try row["outcome"].requiredString(),
                            rowCount: try row["row_count"].requiredInt(), otherKeyID: try row["other_key_id"].string()),
                row)
    }

    /// Step 2: the granted rows of `grant`, handed to `body` inside the releasing transaction (a throw rolls the
    /// claim back with everything else).
    func release<T: Sendable>(
        _ grant: AccessGrant, _ call: PostgresQuery, _ body: (PostgresRows) throws -> T
    ) async throws -> T {
        try await connection.transaction { connection in
            try body(try await connection.query(call))
        }
    }

    /// A refusal the client decided after step 2 (`audit.record_refusal`); returns its seq.
    func recordRefusal(subject: String, reason: String, outcome: String) async throws -> Int {
        let rows = try await connection.query("""
            SELECT audit.record_refusal(\(action), \(reason), \(subject), \(outcome), \(caller.osUser),
                                        \(caller.clientHost)) AS seq
            """)
        return try rows.first?["seq"].requiredInt() ?? 0
    }

    func recordDenied(subject: String, reason: String) async throws -> Int {
        let rows = try await connection.query("""
            CALL audit.record_denied(\(action), \(reason), \(subject), \(caller.osUser), \(caller.clientHost), NULL)
            """)
        return try rows.first?["seq"].requiredInt() ?? 0
    }

    /// The sessions holding the log's append lock, as `pid N (login L)`, for the message of a lock timeout.
    func lockHolders() async -> [String] {
        let rows = try? await connection.query("""
            SELECT l.pid, coalesce(a.usename::text, '?') AS login
              FROM pg_catalog.pg_locks AS l LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = l.pid
             WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'ExclusiveLock'
               AND l.relation = pg_catalog.to_regclass('audit.access_log')
               AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
             ORDER BY l.pid
            """)
        return (try? rows?.map { "pid \(try $0["pid"].requiredInt()) (login \(try $0["login"].requiredString()))" }) ?? []
    }
}

/// Another session holds the access log's append lock (an open transaction that appended and did not end).
public struct AccessLogBusy: PIIVaultReportableError, Equatable {
    /// `pid N (login L)` of each holder found; empty when it let go meanwhile or could not be seen.
    public let holders: [String]

    public var message: String {
        let who = holders.isEmpty ? "another session" : holders.joined(separator: ", ")
        return "the access log is locked by \(who), an open transaction that appended an entry; nothing was logged or released: retry, or ask the database owner to end it (SELECT pg_terminate_backend(PID))"
    }

    public var exitCode: PIIVaultExitCode { .unavailable }
}

/// A request function that returned no row: they always return one.
struct UnmaskProtocolError: PIIVaultReportableError {
    var message: String { "the vault's unmask request returned no row; run `piivault migrate` to bring the database up to date" }
    var exitCode: PIIVaultExitCode { .failure }
}
