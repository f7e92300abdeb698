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
            --idle-exit seconds, after --max-messages, or on SIGTERM/SIGINT (finishing the batch in hand; it says so at \
            once, and a second signal exits at once). While it works it reports its progress: on a terminal a line \
            refreshed every second, in a log an info line every --progress-interval seconds. The summary line gives \
            the run's time, the time spent working (without the final wait for an empty queue) and the rate over \
            the working time.

            Exit status: 0 when every received message was loaded or quarantined (also when SIGTERM, SIGINT or \
            --max-duration ended the run early: an interrupted run); 1 when the run failed (messages not committed \
            stay in the queue for the next run); 130 on a second signal; 64 usage; 65 bad key file or input file; \
            69 database or SQS unavailable; 77 permission refused (a key file's mode or owner, a vault public key other than \
            --vault-key-id, a database privilege).
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

    @Option(help: ArgumentHelp("Refuse to run unless the vault public key has this key id (also PIIVAULT_VAULT_KEY_ID); without it, a key that differs from the last run's is reported.", valueName: "KEY_ID"))
    var vaultKeyID: String?

    @Option(help: ArgumentHelp("Write the run's metrics in the Prometheus text format to FILE, atomically, for node_exporter's textfile collector (also PIIVAULT_METRICS_FILE).", valueName: "FILE"))
    var metricsFile: String?

    @Option(help: ArgumentHelp("Push the run's metrics to this Pushgateway, job piivault_etl (also PIIVAULT_METRICS_PUSH_URL).", valueName: "URL"))
    var metricsPushURL: String?

    @Option(help: "Stop after this many messages (also PIIVAULT_MAX_MESSAGES).")
    var maxMessages: Int?

    @Option(help: "Concurrent pollers (also PIIVAULT_CONCURRENCY; default 4).")
    var concurrency: Int?

    @Option(help: "Messages per transaction (also PIIVAULT_BATCH_SIZE; default 10000).")
    var batchSize: Int?

    @Option(help: "Visibility timeout asked for on receive, seconds (also PIIVAULT_VISIBILITY_TIMEOUT; default 60).")
    var visibilityTimeout: Int?

    @Option(help: "Long-polling wait of each receive, seconds, 0-20 (also PIIVAULT_WAIT_TIME; default 1).")
    var waitTime: Int?

    @Option(help: "Seconds the queue must stay empty to count as drained (also PIIVAULT_IDLE_EXIT; default 5).")
    var idleExit: Double?

    @Option(help: ArgumentHelp("Stop after SECONDS, as on SIGTERM: the batches in hand are loaded, the rest stays in the queue (also PIIVAULT_MAX_DURATION; default none). A queue that never stays empty for --idle-exit otherwise keeps the run going.", valueName: "SECONDS"))
    var maxDuration: Double?

    @Option(help: ArgumentHelp("Also write the summary as JSON to FILE (also PIIVAULT_SUMMARY_JSON).", valueName: "FILE"))
    var summaryJSON: String?

    @Option(help: "Log format: text or json (also PIIVAULT_LOG_FORMAT).")
    var logFormat: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (also PIIVAULT_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(help: ArgumentHelp("When standard error is not a terminal, log a progress line (info) every SECONDS; 0 for none (also PIIVAULT_PROGRESS_INTERVAL; default 30). On a terminal the progress line is refreshed every second.", valueName: "SECONDS"))
    var progressInterval: Double?

    @OptionGroup var database: DatabaseOptions

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let settings = try await reportingErrors { try ETLSettings.resolve(flags, environment: environment) }
        bootstrapLogging(format: settings.logFormat, level: settings.logLevel)
        let logger = Logger(label: "piivault.etl")

        let stop = StopSignal()
        let progressLine = ProgressLine()
        SignalHandlers.install(stop: stop) {
            progressLine.clear()
            logger.notice("stopping after the batch in hand (it is loaded first, and deleted from the queue if it came from one); a second signal exits at once")
        }
        let metrics = settings.metrics.isEnabled ? ETLMetrics() : nil
        let tracker = ETLProgressTracker()
        // The progress report: a line refreshed every second on a terminal, an info line every
        // --progress-interval seconds in a log.
        let reporter = Task {
            if progressLine.isTerminal {
                await ETLProgressReporter.run(every: ETLProgressReporter.terminalInterval, tracker: tracker) {
                    progressLine.show($0)
                }
            } else {
                await ETLProgressReporter.run(every: settings.progressInterval, tracker: tracker) {
                    logger.info("progress: \($0.line)")
                }
            }
        }
        let result: Result<ETLSummary, any Error>
        // A process-wide allocator setting, so the process's entry point makes it, once.
        LargeBufferPolicy.apply()
        do {
            var run = try await ETLRun.open(settings: settings, logger: logger)
            run.afterCommit = faultExitAfterCommits(environment)
            run.metrics = metrics
            run.tracker = tracker
            result = .success(try await run.run(stop: stop) { tracker.noteQueueDepth($0.queueDepth) })
        } catch {
            result = .failure(error)
        }
        reporter.cancel()
        await reporter.value
        progressLine.clear()

        // The counts end the run whatever happened: the summary line, the JSON, the metrics.
        var summary: ETLSummary?
        switch result {
        case .success(let completed): summary = completed
        case .failure(let error): summary = (error as? ETLError)?.partialSummary
        }
        if let summary { print(summary.line) }
        var summaryFileError: (any Error)?
        if let summary, let path = settings.summaryPath {
            do { try SummaryFile.write(summary.json, to: path) } catch { summaryFileError = error }
        }
        if let metrics {
            if summary == nil {
                // It failed before it started (keys, queue, database): still visible to monitoring.
                var failed = ETLSummary()
                failed.outcome = "failed"
                metrics.recordEnd(failed, queueDepth: nil)
            }
            do { try await settings.metrics.publish(metrics) } catch {
                printWarning((error as? any PIIVaultReportableError)?.message ?? "\(error)")
            }
        }
        let completed = try await reportingErrors {
            let completed = try result.get()
            if let summaryFileError { throw summaryFileError }
            return completed
        }
        if completed.deleteFailures > 0 {
            printWarning("\(completed.deleteFailures) committed messages could not be deleted from the queue; they will be redelivered and skipped as duplicates")
        }
    }

    private var flags: ETLFlags {
        var flags = ETLFlags()
        flags.queueURL = queueURL
        flags.queueName = queueName
        flags.fromFile = fromFile
        flags.endpointURL = endpointURL
        flags.tokenKey = tokenKey
        flags.vaultPublicKey = vaultPublicKey
        flags.maxMessages = maxMessages
        flags.concurrency = concurrency
        flags.batchSize = batchSize
        flags.visibilityTimeout = visibilityTimeout
        flags.waitTime = waitTime
        flags.idleExit = idleExit
        flags.maxDuration = maxDuration
        flags.summaryJSON = summaryJSON
        flags.logFormat = logFormat
        flags.logLevel = logLevel
        flags.databaseURL = database.databaseURL
        flags.vaultKeyID = vaultKeyID
        flags.metricsFile = metricsFile
        flags.metricsPushURL = metricsPushURL
        flags.progressInterval = progressInterval
        return flags
    }
}
