import Foundation
import Postgres

/// Who is asking, as written into the access log's `os_user` and `client_host`. The database records its own
/// authenticated login (`db_user`) beside these, which are the client's claim.
public struct AccessLogCaller: Sendable, Equatable {
    public var osUser: String
    public var clientHost: String
    /// The approved dual-control request this access executes (`--request N`), nil for none. The database holds
    /// the access to that request's action, login and parameters (SECURITY.md, "Dual control").
    public var approvalRequest: Int?

    public init(osUser: String, clientHost: String, approvalRequest: Int? = nil) {
        self.osUser = osUser
        self.clientHost = clientHost
        self.approvalRequest = approvalRequest
    }

    /// The same caller, executing request `id` (nil: none).
    public func executing(request id: Int?) -> AccessLogCaller {
        var caller = self
        caller.approvalRequest = id
        return caller
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

/// What the request step decided: the entry it appended (committed) and, unless refused, the grant recorded under
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

    /// From a `request_*` function's row: `log_seq`, `outcome`, `row_count` and `other_key_id`.
    init(_ row: PostgresRow) throws {
        seq = try row["log_seq"].requiredInt()
        outcome = try row["outcome"].requiredString()
        rowCount = try row["row_count"].requiredInt()
        otherKeyID = try row["other_key_id"].string()
    }
}

/// Whose locks a step may wait on, to name the holder when `lock_timeout` gives up.
enum ComplianceLocks: Sendable {
    /// Only the access log's append lock (every request takes it).
    case accessLog
    /// The vault-wide value lock (an erasure, a batch that changes the vault), then the access log's.
    case vault
}

/// What one batch of a long action did.
enum BatchStep: Sendable {
    /// Nothing was left to do: no batch was committed.
    case finished
    /// A batch committed; `more` is false when it was the last (it took less than a full batch).
    case committed(more: Bool)
}

/// The one path every compliance action (`unmask`, `lookup`, `forget`, `retention`, `rewrap`, `retokenize`) takes
/// to the vault: a committed access-log entry first, then the action, never the reverse. It owns what the actions
/// share, so that each is only its SQL names and the mapping of their rows:
///
/// - the reason check (`run`), before anything else;
/// - the connection's lifetime (one per action, `application_name` `piivault <action>`, closed on every path);
/// - the request step (`ComplianceSession.request`): the action's `request_*` SQL function appends the entry and
///   records a grant keyed by its seq (`audit.append_and_grant`), committed when it returns; dry runs go through it
///   too (a dry run by a login outside compliance is an attempt as well);
/// - the one error mapping: permission denied (a login outside `piivault_compliance`) records the attempt with
///   `audit.record_denied` and throws `ComplianceError.notPermitted`; a lock timeout names who holds the lock
///   (`ComplianceError.accessLogBusy` or `VaultLockTimeout`); a request that returns no row is
///   `ComplianceError.protocolError`;
/// - releasing a grant's rows in a transaction (`release`), binding a long run's grant to the session (`bind`), and
///   the batched apply loop with its after-batch hook (`batches`);
/// - refusals the client decides after the release (`recordRefusal`).
///
/// Adding an action: docs/ARCHITECTURE.md, "A new compliance action".
struct ComplianceRunner: Sendable {
    /// A libpq connection string or URI.
    let databaseURL: String
    let caller: AccessLogCaller
    /// The entry's `action` column: `unmask`, `lookup`, ...
    let action: String
    /// Called after each committed batch with the number of batches committed so far (progress, and the tests'
    /// fault hook).
    var afterBatch: @Sendable (Int) async throws -> Void = { _ in }

    /// Refuses a blank reason, then runs `body` on a connection of its own, closed afterwards whatever happens.
    func run<T: Sendable>(reason: String, _ body: (ComplianceSession) async throws -> T) async throws -> T {
        guard !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ComplianceError.reasonRequired
        }
        return try await Database.withConnection(databaseURL, applicationName: "piivault \(action)") { connection in
            // READ COMMITTED whatever the login's default: an erasure decides what to delete from what it sees after
            // waiting for the vault-wide lock, which a REPEATABLE READ snapshot, taken before the wait, would not show
            // (the database refuses those steps otherwise: vault.require_read_committed).
            try await connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if let request = caller.approvalRequest {
                // Read by audit.append_entry when the action's policy asks for approvals (15_dual_control.sql).
                _ = try await connection.query(
                    "SELECT pg_catalog.set_config('piivault.approval_request', \(String(request)), false)")
            }
            return try await body(ComplianceSession(connection: connection, caller: caller, action: action, reason: reason,
                                             afterBatch: afterBatch))
        }
    }
}

/// One compliance action's connection, inside `ComplianceRunner.run`.
struct ComplianceSession: Sendable {
    let connection: PostgresConnection
    let caller: AccessLogCaller
    let action: String
    let reason: String
    let afterBatch: @Sendable (Int) async throws -> Void

    /// The request step: `call` runs on its own (autocommit), so the entry it appends is committed when it returns;
    /// or, with `prepare`, in one transaction after `prepare` (an erasure: the entry and the deletions commit
    /// together). Returns the one row every request function returns. `deniedSubject` is what a refused login's
    /// attempt records (fixed values only; see `audit.record_denied`); `waitsOn` names the holder of a lock it timed
    /// out on.
    func request(
        _ call: PostgresQuery, deniedSubject: String, waitsOn locks: ComplianceLocks = .accessLog,
        prepare: ((PostgresConnection) async throws -> Void)? = nil
    ) async throws -> PostgresRow {
        let rows = try await mappingErrors(deniedSubject: deniedSubject, waitsOn: locks) {
            guard let prepare else { return try await connection.query(call) }
            return try await connection.transaction { connection in
                try await prepare(connection)
                return try await connection.query(call)
            }
        }
        guard let row = rows.first else { throw ComplianceError.protocolError(action: action) }
        if row.columns.contains("log_seq"), let seq = try row["log_seq"].int() {
            try await checkDualControl(entry: seq)
        }
        return row
    }

    /// Dual control, after the request step: throws `ApprovalPending` when the action's policy turned the access
    /// into a request for approvals, `ComplianceError.dualControlRefused` when it refused the `--request` given;
    /// returns when the access went through as asked. The database decided and logged either (the grant was not
    /// given, nothing was deleted); this only reports it.
    private func checkDualControl(entry seq: Int) async throws {
        let rows = try await connection.query(
            "SELECT state, approvals_required, outcome FROM audit.dual_control_state(\(seq))")
        guard let row = rows.first else { return }
        if try row["state"].requiredString() == "pending" {
            throw ApprovalPending(requestID: seq, action: action, approvals: try row["approvals_required"].int() ?? 1)
        }
        throw ComplianceError.dualControlRefused(outcome: try row["outcome"].requiredString(), logSeq: seq)
    }

    /// The request step of a function returning the standard grant columns.
    func requestGrant(_ call: PostgresQuery, deniedSubject: String) async throws -> AccessGrant {
        try AccessGrant(try await request(call, deniedSubject: deniedSubject))
    }

    /// The granted rows (`call` is the action's `release_*` function for the grant's seq), handed to `body` inside
    /// the releasing transaction: a throw rolls the claim back with everything else.
    func release<T: Sendable>(_ call: PostgresQuery, _ body: (PostgresRows) throws -> T) async throws -> T {
        try await connection.transaction { connection in
            try body(try await connection.query(call))
        }
    }

    /// Claims a long run's grant once and binds it to this session (`vault.start_*(seq)`): no other session can use
    /// it, and it ends with ours.
    func bind(_ call: PostgresQuery) async throws {
        _ = try await connection.query(call)  // its own transaction: claimed when it returns
    }

    /// Runs `batch` until it reports nothing left (or a last, short batch), calling the after-batch hook with the
    /// number committed so far, counted on from `done`. Returns that number. A lock timeout is mapped as in the
    /// request step, naming the holders of `locks`.
    func batches(after done: Int = 0, waitsOn locks: ComplianceLocks = .vault,
                 _ batch: () async throws -> BatchStep) async throws -> Int
    {
        var committed = done
        while true {
            let step = try await mappingErrors(deniedSubject: nil, waitsOn: locks) { try await batch() }
            guard case .committed(let more) = step else { return committed }
            committed += 1
            try await afterBatch(committed)
            if !more { return committed }
        }
    }

    /// One statement (or transaction) of a long action after its request, outside the batch loop, with the lock
    /// timeout mapped as in `batches`.
    func step<T>(waitsOn locks: ComplianceLocks = .vault, _ body: () async throws -> T)
        async throws -> T
    {
        try await mappingErrors(deniedSubject: nil, waitsOn: locks, body)
    }

    /// A refusal the client decided after the release (a value that does not open, a forged value;
    /// `audit.record_refusal`); returns its seq.
    func recordRefusal(subject: String, outcome: String) async throws -> Int {
        let rows = try await connection.query("""
            SELECT audit.record_refusal(\(action), \(reason), \(subject), \(outcome), \(caller.osUser),
                                        \(caller.clientHost)) AS seq
            """)
        return try rows.requiredFirst("audit.record_refusal")["seq"].requiredInt()
    }

    // MARK: - The one error mapping

    /// Runs `body`, mapping the database's refusals: permission denied (when `deniedSubject` is given: the request
    /// step) records the attempt and throws `notPermitted`; a lock timeout throws who holds the lock.
    private func mappingErrors<T>(deniedSubject: String?, waitsOn locks: ComplianceLocks,
                                  _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresError where error.isPermissionDenied && deniedSubject != nil {
            throw ComplianceError.notPermitted(logSeq: try? await recordDenied(subject: deniedSubject ?? ""))
        } catch let error as PostgresError where error.isLockTimeout {
            throw await lockTimeout(waitsOn: locks)
        }
    }

    /// A login outside compliance: its attempt, through the procedure `audit.record_denied` (which commits its own
    /// append); returns its seq.
    private func recordDenied(subject: String) async throws -> Int {
        // The database checks that its caller is `audit.record_denied` by the name Postgres gives the procedure, which
        // has no schema when the login's search path (ALTER ROLE ... SET search_path) shows `audit`.
        try await connection.execute("SET search_path TO pg_catalog, pg_temp")
        let rows = try await connection.query("""
            CALL audit.record_denied(\(action), \(reason), \(subject), \(caller.osUser), \(caller.clientHost), NULL)
            """)
        return try rows.requiredFirst("audit.record_denied")["seq"].requiredInt()
    }

    /// A lock timeout, named by its holder: for a step that waits on the vault's lock, an ETL batch or another
    /// erasure holding the vault-wide value lock; else a session holding the access log's append lock.
    private func lockTimeout(waitsOn locks: ComplianceLocks) async -> any PIIVaultReportableError {
        guard case .vault = locks else {
            return ComplianceError.accessLogBusy(holders: await accessLogHolders())
        }
        let holders = await VaultLockHolders.find(on: connection)
        if holders.isEmpty {
            let logHolders = await accessLogHolders()
            if !logHolders.isEmpty { return ComplianceError.accessLogBusy(holders: logHolders) }
        }
        return VaultLockTimeout(action: action, holders: holders)
    }

    /// The sessions holding the log's append lock, as `pid N (login L)`, for the message of a lock timeout.
    private func accessLogHolders() async -> [String] {
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
