import ArgumentParser
import Foundation
import PIIVault

struct Retention: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retention",
        abstract: "Delete logins older than the retention period, the sealed values and data keys left unused (compliance; logged).",
        discussion: """
            Run as a login in role piivault_compliance, e.g. nightly beside the ETL. Deletes the user_logins rows \
            whose create_date is before the UTC date DAYS days ago (create_date < current_date - DAYS: with \
            --older-than 30 on 2026-11-25, rows dated 2026-10-25 and earlier; rows without a date stay), then every \
            sealed value no remaining login references, then every data key no remaining sealed value or quarantined \
            body uses (crypto-shredding), except the keys of ETL runs still loading. One retention entry per run \
            (subject: the cutoff; the counts), committed before anything is deleted: if it cannot be written, \
            nothing is deleted. Then batches of --batch-size rows, each its own short transaction; a run stopped \
            midway is finished by the next. --dry-run prints the counts and changes and logs nothing.

            Exit status: 0 done; 1 failure (what was committed stays deleted; run again to finish); 64 usage; 69 \
            database unavailable, or a lock held too long by an ETL batch (run again); 75 the action's dual-control policy asks for approvals: a request was recorded, nothing done (run \
            again with --request N once approved); 77 a login outside \
            piivault_compliance (the attempt is logged).
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var approval: ApprovalRequestOptions

    @Option(help: ArgumentHelp("Why (the retention policy's reference); logged.", valueName: "TEXT"))
    var reason: String?

    @Option(help: ArgumentHelp("Delete logins dated before the UTC date this many days ago.", valueName: "DAYS"))
    var olderThan: Int

    @Option(help: ArgumentHelp("Logins (or sealed values) per transaction.", valueName: "N"))
    var batchSize: Int = RetentionRequest.defaultBatchSize

    @Flag(help: "Print what would be deleted; change nothing, log nothing.")
    var dryRun = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @OptionGroup var csv: CSVSafetyOptions

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: give the retention policy's reference; it is logged")
        }
        guard olderThan >= 1 else { throw ValidationError("--older-than must be 1 or more (days)") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be 1 or more") }
    }

    func run() async throws {
        try await reportingErrors {
            let service = RetentionService(databaseURL: database.resolved, caller: approval.caller,
                                           afterBatch: faultExitAfterCommits(ProcessInfo.processInfo.environment))
            let report = try await service.run(RetentionRequest(
                olderThanDays: olderThan, reason: reason ?? "", dryRun: dryRun, batchSize: batchSize))
            csv.print(report, as: format)
            flushBeforeNote()
            if let seq = report.logSeq {
                FileHandle.standardError.write(Data("piivault: retention logged as entry \(seq)\n".utf8))
            } else {
                FileHandle.standardError.write(Data("piivault: dry run: nothing changed, nothing logged\n".utf8))
            }
        }
    }
}
