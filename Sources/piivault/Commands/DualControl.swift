import ArgumentParser
import Foundation
import PIIVault

/// `--request N`, shared by every compliance action: run an approved dual-control request (SECURITY.md, "Dual
/// control").
struct ApprovalRequestOptions: ParsableArguments {
    @Option(name: .customLong("request"),
            help: ArgumentHelp("Run the approved dual-control request N (same parameters as asked; once, by its requester, within its window).",
                               valueName: "N"))
    var request: Int?

    func validate() throws {
        if let request, request < 1 { throw ValidationError("--request must be a request number (1 or more)") }
    }

    /// This process's caller, executing the request if one was given.
    var caller: AccessLogCaller { AccessLogCaller.current.executing(request: request) }
}

struct Policy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policy",
        abstract: "Show or change how many other compliance officers must approve each action (dual control).",
        subcommands: [PolicyShow.self, PolicySet.self])
}

struct PolicyShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Print each action's dual-control policy: approvals needed and the request window.",
        discussion: """
            Readable by compliance officers, the auditor and piivault_policy_admin. Exit status: 0 printed; 69 \
            database unavailable; 77 a login that may not read the policies.
            """)

    @OptionGroup var database: DatabaseOptions

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @OptionGroup var csv: CSVSafetyOptions

    func run() async throws {
        try await reportingErrors {
            csv.print(try await DualControlService(databaseURL: database.resolved).policies(), as: format)
        }
    }
}

struct PolicySet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set",
        abstract: "Change one action's dual-control policy (database owner or piivault_policy_admin; logged).",
        discussion: """
            ACTION is one of unmask, lookup, forget, retention, rewrap, retokenize. --approvals 0 (the default: no \
            approval needed) to 3; --window, how long a request stays usable from its creation (90s, 15m, 24h, 2d; \
            default: unchanged, 24h at first). Every change is an access-log entry (action policy).

            Exit status: 0 changed; 64 usage; 69 database unavailable; 77 a login that is neither the database owner \
            nor in piivault_policy_admin.
            """)

    @OptionGroup var database: DatabaseOptions

    @Argument(help: ArgumentHelp("The action: unmask, lookup, forget, retention, rewrap or retokenize.", valueName: "ACTION"))
    var action: String

    @Option(help: ArgumentHelp("Approvals by other compliance officers, 0 to 3.", valueName: "N"))
    var approvals: Int

    @Option(help: ArgumentHelp("How long a request stays usable: 90s, 15m, 24h, 2d.", valueName: "DURATION"))
    var window: String?

    @Option(help: ArgumentHelp("Why the policy changes; logged (default: policy change).", valueName: "TEXT"))
    var reason: String?

    func validate() throws {
        guard DualControlService.actions.contains(action) else {
            throw ValidationError("ACTION must be one of \(DualControlService.actions.joined(separator: ", "))")
        }
        guard (0...3).contains(approvals) else { throw ValidationError("--approvals must be 0 to 3") }
        if let window, ApprovalWindow(parsing: window) == nil {
            throw ValidationError("--window must be a whole number and a unit: 90s, 15m, 24h, 2d")
        }
    }

    func run() async throws {
        try await reportingErrors {
            let change = try await DualControlService(databaseURL: database.resolved).setPolicy(
                action: action, approvals: approvals, window: window.flatMap(ApprovalWindow.init(parsing:)),
                reason: reason ?? "policy change")
            print("\(action): \(change.outcome.replacingOccurrences(of: "ok: ", with: ""))")
            flushBeforeNote()
            FileHandle.standardError.write(Data("piivault: policy change logged as entry \(change.logSeq)\n".utf8))
        }
    }
}

/// `approve` and `deny` share everything but the verb.
protocol DecisionCommand: AsyncParsableCommand {
    var database: DatabaseOptions { get }
    var requestID: Int { get }
    var reason: String? { get }
    static var approves: Bool { get }
}

extension DecisionCommand {
    func decide() async throws {
        try await reportingErrors {
            let decision = try await DualControlService(databaseURL: database.resolved)
                .decide(request: requestID, approve: Self.approves, reason: reason ?? "")
            if Self.approves {
                let left = max(0, decision.approvalsRequired - decision.approvals)
                print("request \(requestID): approval \(decision.approvals) of \(decision.approvalsRequired)"
                      + (left == 0 ? "; approved: its requester may run it with --request \(requestID)"
                                   : "; waits for \(left) more"))
            } else {
                print("request \(requestID): denied")
            }
            flushBeforeNote()
            FileHandle.standardError.write(Data("piivault: logged as entry \(decision.logSeq)\n".utf8))
        }
    }
}

struct Approve: DecisionCommand {
    static let configuration = CommandConfiguration(
        commandName: "approve",
        abstract: "Approve another compliance officer's dual-control request (logged).",
        discussion: """
            Run as a login in piivault_compliance other than the requester. The database refuses (and logs) an \
            approval by the requester, a second approval by the same login, one from a login outside \
            piivault_compliance, and one of a request that expired, was denied or was executed.

            Exit status: 0 approved; 64 usage; 69 database unavailable; 77 refused (logged).
            """)
    static let approves = true

    @OptionGroup var database: DatabaseOptions

    @Argument(help: ArgumentHelp("The request number (piivault requests).", valueName: "N"))
    var requestID: Int

    @Option(help: ArgumentHelp("Why you approve (required); logged.", valueName: "TEXT"))
    var reason: String?

    func validate() throws { try validateDecision(reason: reason) }

    func run() async throws { try await decide() }
}

struct Deny: DecisionCommand {
    static let configuration = CommandConfiguration(
        commandName: "deny",
        abstract: "Deny another compliance officer's dual-control request (logged); it can no longer run.",
        discussion: """
            Run as a login in piivault_compliance other than the requester; refused (and logged) otherwise, or when \
            the request expired, was denied or was executed.

            Exit status: 0 denied; 64 usage; 69 database unavailable; 77 refused (logged).
            """)
    static let approves = false

    @OptionGroup var database: DatabaseOptions

    @Argument(help: ArgumentHelp("The request number (piivault requests).", valueName: "N"))
    var requestID: Int

    @Option(help: ArgumentHelp("Why you deny (required); logged.", valueName: "TEXT"))
    var reason: String?

    func validate() throws { try validateDecision(reason: reason) }

    func run() async throws { try await decide() }
}

private func validateDecision(reason: String?) throws {
    guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
        throw ValidationError("--reason is required: say why (case or ticket number); it is logged")
    }
}

struct Requests: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "requests",
        abstract: "List dual-control requests: action, requester, subject as logged, reason, state, approvers.",
        discussion: """
            Readable by compliance officers and the auditor. States: pending (waits for approvals), approved (its \
            requester may run it), denied, expired, executed. Exit status: 0 printed; 69 database unavailable; 77 a \
            login that may not read them.
            """)

    @OptionGroup var database: DatabaseOptions

    @Flag(help: "Only requests still waiting for approvals.")
    var pending = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @OptionGroup var csv: CSVSafetyOptions

    func run() async throws {
        try await reportingErrors {
            csv.print(try await DualControlService(databaseURL: database.resolved).requests(pendingOnly: pending),
                      as: format)
        }
    }
}
