import ArgumentParser
import Foundation
import Logging
import PIIVault

struct ETL: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "etl",
        abstract: "Drain the login queue: tokenize, seal, load.",
        discussion: """
            Receives login events from SQS (or, with --from-file, newline-delimited JSON), replaces ip and device_id \
            with keyed tokens, seals the originals to the vault public key, and loads the rows into Postgres, one \
            transaction per batch. A message leaves the queue only after its batch committed; a message that breaks \
            the rules goes to vault.quarantine with its body sealed. The run ends when the queue stays empty for \
            --idle-exit seconds, after --max-messages, or on SIGTERM/SIGINT (finishing the batch in hand).

            Exit status: 0 when every received message was loaded or quarantined; 1 when the run stopped early \
            (messages not committed stay in the queue for the next run); 64 usage; 65 bad key file or input file; \
            69 database or SQS unavailable; 77 permission refused.
            """
    )

    @Option(help: ArgumentHelp("The SQS queue URL (also PIIVAULT_QUEUE_URL).", valueName: "URL"))
    var queueURL: String?

    @Option(help: ArgumentHelp("The SQS queue name, looked up with GetQueueUrl (also PIIVAULT_QUEUE_NAME).", valueName: "NAME"))
    var queueName: String?

    @Option(help: ArgumentHelp("Read newline-delimited JSON from FILE instead of SQS.", valueName: "FILE"))
    var fromFile: String?

    @Option(help: ArgumentHelp("The SQS endpoint (also AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL).", valueName: "URL"))
    var endpointURL: String?

    @Option(help: ArgumentHelp("The token key file (also PIIVAULT_TOKEN_KEY; default token.key).", valueName: "FILE"))
    var tokenKey: String?

    @Option(help: ArgumentHelp("The vault public key file (also PIIVAULT_VAULT_PUBLIC_KEY; default vault.pub).", valueName: "FILE"))
    var vaultPublicKey: String?

    @Option(help: "Stop after this many messages (also PIIVAULT_MAX_MESSAGES).")
    var maxMessages: Int?

    @Option(help: "Concurrent pollers (also PIIVAULT_CONCURRENCY; default 4).")
    var concurrency: Int?

    @Option(help: "Messages per transaction (also PIIVAULT_BATCH_SIZE; default 1000).")
    var batchSize: Int?

    @Option(help: "Visibility timeout asked for on receive, seconds (also PIIVAULT_VISIBILITY_TIMEOUT; default 60).")
    var visibilityTimeout: Int?

    @Option(help: "Long-polling wait of each receive, seconds, 0-20 (also PIIVAULT_WAIT_TIME; default 1).")
    var waitTime: Int?

    @Option(help: "Seconds the queue must stay empty to count as drained (also PIIVAULT_IDLE_EXIT; default 5).")
    var idleExit: Double?

    @Option(help: ArgumentHelp("Also write the summary as JSON to FILE (also PIIVAULT_SUMMARY_JSON).", valueName: "FILE"))
    var summaryJSON: String?

    @Option(help: "Log format: text or json (also PIIVAULT_LOG_FORMAT).")
    var logFormat: LogFormat?

    @Option(help: "Log level: debug, info, warning, error (also PIIVAULT_LOG_LEVEL; default warning).")
    var logLevel: String?

    @OptionGroup var database: DatabaseOptions

    func validate() throws {
        for (name, value) in [("--concurrency", concurrency), ("--batch-size", batchSize), ("--max-messages", maxMessages)] {
            if let value, value < 1 { throw ValidationError("\(name) must be at least 1") }
        }
        if let waitTime, !(0...20).contains(waitTime) { throw ValidationError("--wait-time must be 0 to 20 seconds") }
        if let visibilityTimeout, !(1...43_200).contains(visibilityTimeout) {
            throw ValidationError("--visibility-timeout must be 1 to 43200 seconds")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        func setting(_ flag: String?, _ variable: String) -> String? { flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 } }
        func number<T: LosslessStringConvertible>(_ flag: T?, _ variable: String) throws -> T? {
            if let flag { return flag }
            guard let text = environment[variable], !text.isEmpty else { return nil }
            guard let value = T(text) else { throw ValidationError("\(variable)=\(text) is not a number") }
            return value
        }
        let format = logFormat ?? LogFormat(rawValue: environment["PIIVAULT_LOG_FORMAT"] ?? "") ?? .text
        let level = Logger.Level(rawValue: setting(logLevel, "PIIVAULT_LOG_LEVEL") ?? "warning") ?? .warning
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = format == .json ? JSONLogHandler(label: label) : TerseLogHandler(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "piivault.etl")

        var settings = ETLConfiguration()
        settings.batchSize = try number(batchSize, "PIIVAULT_BATCH_SIZE") ?? settings.batchSize
        settings.concurrency = try number(concurrency, "PIIVAULT_CONCURRENCY") ?? settings.concurrency
        settings.maxMessages = try number(maxMessages, "PIIVAULT_MAX_MESSAGES")
        settings.idleExit = try number(idleExit, "PIIVAULT_IDLE_EXIT") ?? settings.idleExit
        let visibility = try number(visibilityTimeout, "PIIVAULT_VISIBILITY_TIMEOUT") ?? 60
        settings.maxBatchAge = min(settings.maxBatchAge, Double(visibility) / 4)
        let wait = try number(waitTime, "PIIVAULT_WAIT_TIME") ?? 1
        let summaryPath = setting(summaryJSON, "PIIVAULT_SUMMARY_JSON")

        let stop = StopSignal()
        stop.installSignalHandlers()
        let progressLine = ProgressLine()
        let summary = try await reportingErrors {
                let tokenKeyFile = try KeyLoading.loadTokenKey(path: setting(tokenKey, "PIIVAULT_TOKEN_KEY") ?? "token.key")
                let publicKey = try KeyLoading.loadVaultPublicKey(
                    path: setting(vaultPublicKey, "PIIVAULT_VAULT_PUBLIC_KEY") ?? "vault.pub")
                let source: any MessageSource
                if let fromFile {
                    source = try FileMessageSource(path: fromFile)
                } else {
                    source = try await SQSMessageSource.resolve(
                        queueURL: setting(queueURL, "PIIVAULT_QUEUE_URL"), queueName: setting(queueName, "PIIVAULT_QUEUE_NAME"),
                        endpointURL: endpointURL, waitTimeSeconds: wait, visibilityTimeout: visibility, logger: logger)
                }
                let run = ETLRun(
                    source: source, databaseURL: database.resolved, tokenKey: tokenKeyFile, vaultPublicKey: publicKey,
                    configuration: settings, logger: logger)
                do {
                    return try await run.run(stop: stop) { progressLine.show($0) }
                } catch let error as ETLError {
                    if case .failed(_, let partial) = error {
                        progressLine.clear()
                        print(partial.line)
                        try? writeSummary(partial, to: summaryPath)
                    }
                    throw error
                }
        }
        progressLine.clear()
        print(summary.line)
        do { try writeSummary(summary, to: summaryPath) } catch {
            printError("cannot write the summary to \(summaryPath ?? ""): \(error.localizedDescription)")
            throw ExitCode(PIIVaultExitCode.failure.rawValue)
        }
        if summary.deleteFailures > 0 {
            printWarning("\(summary.deleteFailures) committed messages could not be deleted from the queue; they will be redelivered and skipped as duplicates")
        }
    }

    private func writeSummary(_ summary: ETLSummary, to path: String?) throws {
        guard let path else { return }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try (encoder.encode(summary) + Data("\n".utf8)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

enum LogFormat: String, ExpressibleByArgument {
    case text, json
}
