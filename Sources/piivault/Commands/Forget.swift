import ArgumentParser
import Foundation
import PIIVault

struct Forget: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget",
        abstract: "Erase one data subject's logins and the sealed values only they reference, or one quarantined body (compliance; logged).",
        discussion: """
            Run as a login in role piivault_compliance. --user-id (with the token key): in one transaction, appends \
            a forget entry (subject: a keyed hash of the user id, never the id; counts of rows deleted, values \
            deleted and values kept because other users share them), deletes the user's logins and every sealed \
            value no remaining login references, and keeps a tombstone so that the ETL does not load the user again. \
            --quarantined MESSAGE_ID (no key needed): in one transaction, appends a forget entry (subject: the \
            message id) and deletes that quarantined body. If the entry cannot be written, nothing is deleted. \
            --dry-run prints the counts and changes and logs nothing.

            Exit status: 0 done; 1 failure (nothing deleted), or no quarantined message with that id (logged); 64 \
            usage; 65 token key malformed, or the user's rows were loaded with another token key (refused, nothing \
            deleted); 69 database unavailable, or a lock held by an ETL run past --lock-wait \
            (retry); \
            75 the action's dual-control policy asks for approvals: a request was recorded, nothing done (run \
            again with --request N once approved); 77 token key mode/owner, a --request not approved, expired, \
            executed or another's, or a login outside piivault_compliance (the attempt is logged).
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var approval: ApprovalRequestOptions

    @OptionGroup var tokenKey: TokenKeyOptions

    @Option(help: ArgumentHelp("Why (the erasure request's number); logged.", valueName: "TEXT"))
    var reason: String?

    @Option(name: .customLong("user-id"), help: ArgumentHelp("The user id to erase (not logged).", valueName: "ID"))
    var userID: String?

    @Option(help: ArgumentHelp("The quarantined message to erase (its id is logged).", valueName: "MESSAGE_ID"))
    var quarantined: String?

    @Flag(help: "Print what would be deleted; change nothing, log nothing.")
    var dryRun = false

    @Option(help: ArgumentHelp(
        "How long to wait for an ETL batch that holds the vault's lock, then give up (exit 69).",
        valueName: "SECONDS"))
    var lockWait: Int = ForgetRequest.defaultLockWaitSeconds

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: give the erasure request's number; it is logged")
        }
        guard (userID == nil) != (quarantined == nil) else {
            throw ValidationError("give one of --user-id or --quarantined")
        }
        guard userID?.isEmpty != true else { throw ValidationError("--user-id must not be empty") }
        guard quarantined?.isEmpty != true else { throw ValidationError("--quarantined must not be empty") }
        guard (1...3600).contains(lockWait) else { throw ValidationError("--lock-wait must be 1 to 3600 seconds") }
    }

    func run() async throws {
        try await reportingErrors {
            if let quarantined {
                let report = try await ForgetService.forgetQuarantined(
                    messageID: quarantined, reason: reason ?? "", dryRun: dryRun, databaseURL: database.resolved,
                    caller: approval.caller)
                printOutput(report.text)
                flushBeforeNote()
                reportLogged(report.logSeq)
                return
            }
            guard let userID else { throw ValidationError("give one of --user-id or --quarantined") }
            let key = try await tokenKey.load(
                missing: "--token-key is required (or PIIVAULT_TOKEN_KEY): forget names the subject by a hash keyed with it")
            let report = try await ForgetService(databaseURL: database.resolved, tokenKey: key, caller: approval.caller)
                .run(ForgetRequest(userID: userID, reason: reason ?? "", dryRun: dryRun, lockWaitSeconds: lockWait))
            printOutput(report.text)
            flushBeforeNote()
            reportLogged(report.logSeq)
        }
    }

    private func reportLogged(_ seq: Int?) {
        if let seq {
            FileHandle.standardError.write(Data("piivault: erasure logged as entry \(seq)\n".utf8))
        } else {
            FileHandle.standardError.write(Data("piivault: dry run: nothing changed, nothing logged\n".utf8))
        }
    }
}
