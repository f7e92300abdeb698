import ArgumentParser
import Foundation
import PIIVault

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "runs",
        abstract: "Show the ETL's run history (operator, auditor).",
        discussion: """
            Newest first: start and end (UTC), source, counts, outcome (running, completed, interrupted, failed, \
            abandoned), the error of a failed run, and the vault key id and token key version the run used. A run \
            still marked running whose process is gone is shown as abandoned. Readable by logins in \
            piivault_etl or piivault_auditor.

            Exit status: 0 shown; 64 usage; 65 the database has no piivault tables (run piivault migrate); 69 \
            database unavailable; 77 a login outside piivault_etl and piivault_auditor.
            """)

    @OptionGroup var database: DatabaseOptions

    @Option(help: "How many runs to show.")
    var last: Int = 20

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @OptionGroup var csv: CSVSafetyOptions

    func validate() throws {
        guard last >= 1 else { throw ValidationError("--last must be 1 or more") }
    }

    func run() async throws {
        let runs = try await reportingErrors {
            try await RunHistory.last(last, databaseURL: database.resolved)
        }
        csv.print(RunHistoryRows(runs), as: format)
    }
}
