import Postgres

/// Which entries `audit log` lists. Every filter is optional; together they must all match.
public struct AccessLogFilter: Sendable, Equatable {
    /// Entries at or after this time (any form Postgres accepts for `timestamptz`, e.g. `2024-05-01` or
    /// `2024-05-01T12:00:00Z`; without a zone, the session's time zone).
    public var since: String?
    /// Entries before this time (exclusive), same forms as `since`.
    public var until: String?
    /// Entries whose database user or operating-system user is this.
    public var actor: String?
    /// Entries with this action (`unmask`, ...).
    public var action: String?
    /// Entries with this outcome (`ok`, or a refusal's text).
    public var outcome: String?
    /// Entries after this sequence number (exclusive), for incremental export.
    public var afterSeq: Int?

    /// The actions the access log records (the rows of `audit.actions`): the compliance actions, then dual
    /// control's policy changes, requests, approvals and denials (migration 0021).
    public static let actions = ["unmask", "lookup", "forget", "retention", "rewrap", "retokenize",
                                 "policy", "request", "approve", "deny"]

    public init(since: String? = nil, until: String? = nil, actor: String? = nil, action: String? = nil,
                outcome: String? = nil, afterSeq: Int? = nil) {
        self.since = since
        self.until = until
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.afterSeq = afterSeq
    }
}

/// Why reading the access log failed, beyond a plain database error.
public enum AccessLogError: PIIVaultReportableError, Equatable {
    /// `--since` or `--until` is not a time Postgres understands.
    case invalidTime(option: String)
    /// `audit checkpoint` found the chain broken and took no checkpoint.
    case brokenChain(AccessLogBreak)
    /// An access was asked for without a reason; every access-log entry needs one.
    case reasonRequired

    public var message: String {
        switch self {
        case .invalidTime(let option):
            return "\(option) is not a time; give a date or time such as 2024-05-01 or 2024-05-01T12:00:00Z"
        case .reasonRequired:
            return "a reason is required for every access to sealed values; pass --reason with the case or request number"
        case .brokenChain(let damage):
            return "\(damage.message); no checkpoint taken: investigate with `piivault audit log` and restore the log from a backup"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .invalidTime, .reasonRequired: return .usage
        case .brokenChain: return .failure
        }
    }
}

/// Reads `audit.access_log` (role `piivault_auditor`).
public struct AccessLogReader: Sendable {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    /// The entries matching `filter`, in sequence order.
    public func entries(matching filter: AccessLogFilter = AccessLogFilter()) async throws -> [AccessLogEntry] {
        try await checkTimes(filter)
        return try await page(filter, limit: nil)
    }

    /// Calls `body` with the entries matching `filter` in sequence order, `pageSize` at a time, so that an export
    /// of a long log holds one page in memory (SIEM export: `audit log --format jsonl --after-seq N`).
    public func forEachPage(
        matching filter: AccessLogFilter, pageSize: Int = 5000, _ body: ([AccessLogEntry]) throws -> Void
    ) async throws {
        try await checkTimes(filter)
        var filter = filter
        while true {
            let entries = try await page(filter, limit: pageSize)
            if entries.isEmpty { return }
            try body(entries)
            filter.afterSeq = entries.last!.seq
            if entries.count < pageSize { return }
        }
    }

    /// Validates the times first so that a typo gets a message naming the option, not a bare data error.
    private func checkTimes(_ filter: AccessLogFilter) async throws {
        for (option, value) in [("--since", filter.since), ("--until", filter.until)] {
            guard let value else { continue }
            do {
                try await connection.query("SELECT \(value)::timestamptz")
            } catch let error as PostgresError where error.code?.errorClass == PostgresError.Code.dataExceptionClass {
                throw AccessLogError.invalidTime(option: option)
            }
        }
    }

    private func page(_ filter: AccessLogFilter, limit: Int?) async throws -> [AccessLogEntry] {
        let rows = try await connection.query("""
            SELECT seq, coalesce(to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                                 || CASE WHEN at < '0001-01-01 00:00:00+00' THEN ' BC' ELSE '' END, at::text) AS at,
                   db_user, os_user, client_host, action, reason, subject, row_count, outcome, prev_hash, hash
              FROM audit.access_log
             WHERE (\(filter.since)::timestamptz IS NULL OR at >= \(filter.since)::timestamptz)
               AND (\(filter.until)::timestamptz IS NULL OR at < \(filter.until)::timestamptz)
               AND (\(filter.actor)::text IS NULL OR db_user = \(filter.actor)::text OR os_user = \(filter.actor)::text)
               AND (\(filter.action)::text IS NULL OR action = \(filter.action)::text)
               AND (\(filter.outcome)::text IS NULL OR outcome = \(filter.outcome)::text)
               AND (\(filter.afterSeq)::bigint IS NULL OR seq > \(filter.afterSeq)::bigint)
             ORDER BY seq
             LIMIT \(limit)
            """)
        return try rows.map { row in
            AccessLogEntry(
                seq: try row["seq"].requiredInt(), at: try row["at"].requiredString(),
                dbUser: try row["db_user"].requiredString(), osUser: try row["os_user"].requiredString(),
                clientHost: try row["client_host"].requiredString(), action: try row["action"].requiredString(),
                reason: try row["reason"].requiredString(), subject: try row["subject"].requiredString(),
                rowCount: try row["row_count"].requiredInt(), outcome: try row["outcome"].requiredString(),
                prevHash: try row["prev_hash"].requiredBytes(), hash: try row["hash"].requiredBytes())
        }
    }

    /// Reads the whole log and recomputes its chain (`audit verify`).
    ///
    /// Reads in one REPEATABLE READ, READ ONLY transaction so that appends made meanwhile cannot show up half-read.
    public func verify(anchor: AccessLogAnchor? = nil) async throws -> AccessLogVerdict {
        let entries = try await connection.transaction { connection in
            try await connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            return try await AccessLogReader(connection: connection).entries()
        }
        return AccessLogVerifier.verify(entries, anchor: anchor)
    }

    /// The head of a verified chain, to keep elsewhere as an anchor (`audit checkpoint`). A broken chain throws
    /// `AccessLogError.brokenChain`: anchoring a damaged log would vouch for the damage.
    public func checkpoint() async throws -> AccessLogAnchor {
        switch try await verify() {
        case .intact(_, let head): return head
        case .broken(let damage): throw AccessLogError.brokenChain(damage)
        }
    }
}
