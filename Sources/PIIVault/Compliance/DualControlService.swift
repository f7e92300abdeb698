import Foundation
import Postgres

/// How long a dual-control request stays usable from its creation, written as a number and a unit: `90s`, `15m`,
/// `24h`, `2d`.
public struct ApprovalWindow: Sendable, Equatable, CustomStringConvertible {
    public let seconds: Int

    public init(seconds: Int) { self.seconds = seconds }

    /// `90s`, `15m`, `24h`, `2d`; nil for anything else (no unit, zero, a fraction, over 366 days).
    public init?(parsing text: String) {
        guard let unit = text.last, let count = Int(text.dropLast()), count > 0, !text.hasPrefix("+") else { return nil }
        let scale: Int
        switch unit {
        case "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86400
        default: return nil
        }
        guard count <= 366 * 86400 / scale else { return nil }
        seconds = count * scale
    }

    /// The largest whole unit: `24h`, `90s`, `2d`.
    public var description: String {
        if seconds % 86400 == 0 { return "\(seconds / 86400)d" }
        if seconds % 3600 == 0 { return "\(seconds / 3600)h" }
        if seconds % 60 == 0 { return "\(seconds / 60)m" }
        return "\(seconds)s"
    }
}

/// One action's dual-control policy: how many other compliance officers must approve (0: none, the default) and
/// how long a request stays usable.
public struct ApprovalPolicy: Sendable, Equatable {
    public let action: String
    public let approvals: Int
    public let window: ApprovalWindow
    /// The access-log entry of the last change; nil when never changed.
    public let changedSeq: Int?
}

/// `piivault policy show`.
public struct ApprovalPolicies: Sendable, Equatable, Renderable {
    public let policies: [ApprovalPolicy]

    public var tableRows: TextRows {
        TextRows(header: ["action", "approvals", "window", "changed_entry"],
                 rows: policies.map { [$0.action, String($0.approvals), $0.window.description,
                                       $0.changedSeq.map(String.init) ?? ""] })
    }

    public var jsonValue: Any {
        policies.map { p -> [String: Any] in
            ["action": p.action, "approvals": p.approvals, "window": p.window.description,
             "window_seconds": p.window.seconds, "changed_entry": p.changedSeq ?? NSNull()]
        }
    }
}

/// One dual-control request, as `piivault requests` lists it. `subject` is the subject the action logs (tokens, a
/// keyed hash, a key id, counts), read from the request's access-log entry.
public struct ApprovalRequestInfo: Sendable, Equatable {
    public let id: Int
    public let action: String
    public let requester: String
    public let subject: String
    public let reason: String
    /// `pending`, `approved`, `denied`, `expired` or `executed`.
    public let state: String
    public let approvals: Int
    public let approvalsRequired: Int
    /// `login at time`, comma-separated.
    public let approvers: String
    public let createdAt: String
    public let expiresAt: String
    public let executedSeq: Int?
}

/// `piivault requests`.
public struct ApprovalRequestList: Sendable, Equatable, Renderable {
    public let requests: [ApprovalRequestInfo]

    public var tableRows: TextRows {
        TextRows(header: ["id", "action", "requester", "subject", "reason", "state", "approvals", "approvers",
                          "created", "expires", "executed_entry"],
                 rows: requests.map { r in
                     [String(r.id), r.action, r.requester, r.subject, r.reason, r.state,
                      "\(r.approvals)/\(r.approvalsRequired)", r.approvers, r.createdAt, r.expiresAt,
                      r.executedSeq.map(String.init) ?? ""]
                 })
    }

    public var jsonValue: Any {
        requests.map { r -> [String: Any] in
            ["id": r.id, "action": r.action, "requester": r.requester, "subject": r.subject, "reason": r.reason,
             "state": r.state, "approvals": r.approvals, "approvals_required": r.approvalsRequired,
             "approvers": r.approvers, "created": r.createdAt, "expires": r.expiresAt,
             "executed_entry": r.executedSeq ?? NSNull()]
        }
    }
}

/// What `approve` or `deny` recorded.
public struct ApprovalDecision: Sendable, Equatable {
    public let logSeq: Int
    public let outcome: String
    public let approvals: Int
    public let approvalsRequired: Int
}

/// Why `policy set` did nothing.
public enum PolicyError: PIIVaultReportableError, Equatable {
    /// The login is neither the database owner nor in piivault_policy_admin (nothing logged: nothing changed).
    case notPermitted
    /// No such action, or approvals out of range (the database's words).
    case invalid(String)

    public var message: String {
        switch self {
        case .notPermitted:
            return "only the database owner or a member of piivault_policy_admin may change a dual-control policy; ask them (SECURITY.md, \"Dual control\")"
        case .invalid(let reason):
            return reason
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .notPermitted: return .noPermission
        case .invalid: return .usage
        }
    }
}

/// Dual control (SECURITY.md, "Dual control"): the policies, their changes, the requests, and approving or denying
/// one. The database decides everything (15_dual_control.sql); this reads and asks.
public struct DualControlService: Sendable {
    /// The actions a policy exists for.
    public static let actions = ["unmask", "lookup", "forget", "retention", "rewrap", "retokenize"]

    public let databaseURL: String
    public let caller: AccessLogCaller

    public init(databaseURL: String, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.caller = caller
    }

    /// Every action's policy, by action name.
    public func policies() async throws -> ApprovalPolicies {
        try await Database.withConnection(databaseURL, applicationName: "piivault policy") { connection in
            let rows = try await connection.query("""
                SELECT action, approvals, extract(epoch FROM approval_window)::bigint AS window_seconds, changed_seq
                  FROM audit.action_policies ORDER BY action
                """)
            return ApprovalPolicies(policies: try rows.map { row in
                ApprovalPolicy(action: try row["action"].requiredString(), approvals: try row["approvals"].requiredInt(),
                               window: ApprovalWindow(seconds: try row["window_seconds"].requiredInt()),
                               changedSeq: try row["changed_seq"].int())
            })
        }
    }

    /// Changes one action's policy (the window stays when nil); returns the `policy` entry's seq and outcome.
    public func setPolicy(action: String, approvals: Int, window: ApprovalWindow?, reason: String) async throws
        -> (logSeq: Int, outcome: String)
    {
        try await Database.withConnection(databaseURL, applicationName: "piivault policy") { connection in
            let windowText = window.map { "\($0.seconds) seconds" }
            // READ COMMITTED whatever the login's default, as for every other append (ComplianceRunner): under
            // REPEATABLE READ an append that waited for another one reads a stale head and fails.
            try await connection.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
            do {
                let rows = try await connection.query("""
                    SELECT log_seq, outcome FROM audit.set_policy(\(action), \(approvals), \(windowText)::interval,
                                                                  \(reason), \(caller.osUser), \(caller.clientHost))
                    """)
                let row = try rows.requiredFirst("audit.set_policy")
                return (try row["log_seq"].requiredInt(), try row["outcome"].requiredString())
            } catch let error as PostgresError where error.isPermissionDenied {
                throw PolicyError.notPermitted
            } catch let error as PostgresError where error.code == .invalidParameterValue {
                throw PolicyError.invalid("the database refused the policy (\(error.text)); ACTION must be one of \(Self.actions.joined(separator: ", ")), --approvals 0 to 3")
            }
        }
    }

    /// Approves (or denies) request `id` as this login, through the compliance runner (a login outside compliance
    /// is refused and its attempt logged). Throws `ComplianceError.decisionRefused` for a refusal the database
    /// logged.
    public func decide(request id: Int, approve: Bool, reason: String) async throws -> ApprovalDecision {
        let runner = ComplianceRunner(databaseURL: databaseURL, caller: caller, action: approve ? "approve" : "deny")
        return try await runner.run(reason: reason) { session in
            let row = try await session.request("""
                SELECT log_seq, outcome, approvals, approvals_required
                  FROM audit.decide_request(\(id), \(approve), \(reason), \(caller.osUser), \(caller.clientHost))
                """, deniedSubject: "request:\(id)")
            let decision = ApprovalDecision(
                logSeq: try row["log_seq"].requiredInt(), outcome: try row["outcome"].requiredString(),
                approvals: try row["approvals"].requiredInt(), approvalsRequired: try row["approvals_required"].requiredInt())
            if decision.outcome.hasPrefix("refused") {
                throw ComplianceError.decisionRefused(outcome: decision.outcome, logSeq: decision.logSeq)
            }
            return decision
        }
    }

    /// Request `id`; throws `DualControlError.noSuchRequest` when this login cannot see it.
    public func request(id: Int) async throws -> ApprovalRequestInfo {
        guard let found = try await requests(pendingOnly: false).requests.first(where: { $0.id == id }) else {
            throw DualControlError.noSuchRequest(id)
        }
        return found
    }

    /// The requests, newest first (only those waiting for approvals with `pendingOnly`).
    public func requests(pendingOnly: Bool) async throws -> ApprovalRequestList {
        try await Database.withConnection(databaseURL, applicationName: "piivault requests") { connection in
            let rows = try await connection.query("""
                SELECT id, action, requester, subject, reason, state, approvals, approvals_required, approvers,
                       to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created,
                       to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS expires, executed_seq
                  FROM audit.list_requests(\(pendingOnly))
                """)
            return ApprovalRequestList(requests: try rows.map { row in
                ApprovalRequestInfo(
                    id: try row["id"].requiredInt(), action: try row["action"].requiredString(),
                    requester: try row["requester"].requiredString(), subject: try row["subject"].requiredString(),
                    reason: try row["reason"].requiredString(), state: try row["state"].requiredString(),
                    approvals: try row["approvals"].requiredInt(),
                    approvalsRequired: try row["approvals_required"].requiredInt(),
                    approvers: try row["approvers"].requiredString(), createdAt: try row["created"].requiredString(),
                    expiresAt: try row["expires"].requiredString(), executedSeq: try row["executed_seq"].int())
            })
        }
    }
}

/// A `--request N` the client cannot use before asking the database to run it.
public enum DualControlError: PIIVaultReportableError, Equatable {
    /// No request with that number.
    case noSuchRequest(Int)
    /// The request's logged subject is not one this command can run (it is for another kind of target).
    case otherTarget(Int)
    /// The request is for another action (id, its action, this command's).
    case otherAction(Int, String, String)

    public var message: String {
        switch self {
        case .noSuchRequest(let id):
            return "there is no dual-control request \(id); see piivault requests"
        case .otherTarget(let id):
            return "request \(id) is not for this command's targets; give its parameters again with --request \(id), or see piivault requests"
        case .otherAction(let id, let action, let command):
            return "request \(id) is for \(action), not \(command); run piivault \(action) with its parameters and --request \(id)"
        }
    }

    public var exitCode: PIIVaultExitCode { .usage }
}

extension UnmaskRequest.Target {
    /// The target a request's access-log subject names (`tokens:...`, `user_id:...`, `message_id:...`).
    public init(loggedSubject subject: String, request: Int) throws {
        if subject.hasPrefix("user_id:") {
            self = .userID(String(subject.dropFirst("user_id:".count)))
        } else if subject.hasPrefix("message_id:") {
            self = .quarantined(messageID: String(subject.dropFirst("message_id:".count)))
        } else if subject.hasPrefix("tokens:") {
            let tokens = subject.dropFirst("tokens:".count).split(separator: ",").compactMap { Token(parsing: String($0)) }
            guard !tokens.isEmpty else { throw DualControlError.otherTarget(request) }
            self = .tokens(tokens)
        } else {
            throw DualControlError.otherTarget(request)
        }
    }
}
