import Foundation
import Logging
import Postgres

/// Tuning of an ETL run; every field has a flag and a `PIIVAULT_*` variable in the command line.
public struct ETLConfiguration: Sendable {
    /// Messages per database transaction.
    public var batchSize = 1000
    /// Concurrent receive calls (pollers).
    public var concurrency = 4
    /// Stop after receiving this many messages.
    public var maxMessages: Int?
    /// How long the queue must stay empty to count as drained, in seconds.
    public var idleExit: Double = 5
    /// The longest a batch may collect before it is loaded, in seconds; kept well under the visibility timeout so
    /// that no message becomes visible again while its batch is still in hand.
    public var maxBatchAge: Double = 5

    public init() {}
}

/// Counts of one run; the summary line and `--summary-json` show them.
public struct ETLSummary: Sendable, Codable, Equatable {
    public var received = 0
    public var loaded = 0
    public var duplicates = 0
    public var quarantined = 0
    public var valuesSealed = 0
    /// Messages the queue refused to delete after their batch committed (they will be redelivered and skipped).
    public var deleteFailures = 0
    public var seconds = 0.0
    public var messagesPerSecond = 0.0
    /// `completed`, `interrupted`, `failed`.
    public var outcome = "running"
    /// Why the run failed, without PII; nil when it did not.
    public var error: String?

    enum CodingKeys: String, CodingKey {
        case received, loaded, duplicates, quarantined, seconds, outcome, error
        case valuesSealed = "values_sealed"
        case deleteFailures = "delete_failures"
        case messagesPerSecond = "messages_per_second"
    }

    /// Sets `seconds` to the time since `started` and `messagesPerSecond` to the messages received per second.
    mutating func updateRate(since started: Date) {
        seconds = Date().timeIntervalSince(started)
        messagesPerSecond = seconds > 0 ? Double(received) / seconds : 0
    }

    /// The one-line summary that ends every run.
    public var line: String {
        String(format: "%@: received %d, loaded %d, duplicates %d, quarantined %d, values sealed %d, %.2f s, %.0f messages/s",
               outcome, received, loaded, duplicates, quarantined, valuesSealed, seconds, messagesPerSecond)
            + (deleteFailures > 0 ? ", \(deleteFailures) not deleted" : "")
    }
}

/// Progress after each batch, for a terminal's progress line.
public struct ETLProgress: Sendable {
    public let summary: ETLSummary
    /// Approximate messages still queued, when the source knows.
    public let queueDepth: Int?
}

/// Why a run could not complete. Messages hold no PII.
public enum ETLError: PIIVaultReportableError {
    case inputFile(String)
    case configuration(String)
    case failed(String, ETLSummary)

    public var message: String {
        switch self {
        case .inputFile(let text), .configuration(let text): return text
        case .failed(let text, _): return text
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .inputFile, .configuration: return .dataError
        case .failed: return .failure
        }
    }
}

/// A stop request (SIGTERM, SIGINT): the run finishes the batch in hand and exits without receiving more.
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var requested = false
    private var sources: [any DispatchSourceSignal] = []

    public init() {}

    /// Whether a stop was requested.
    public var isRequested: Bool { lock.withLock { requested } }

    /// Requests a stop.
    public func request() { lock.withLock { requested = true } }

    /// Turns SIGINT and SIGTERM into a stop request; a second signal ends the process at once (exit 130).
    public func installSignalHandlers() {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in
                if isRequested { exit(130) }
                request()
            }
            source.resume()
            lock.withLock { sources.append(source) }
        }
    }
}

/// The nightly run: receive, validate, tokenize, seal, load in batches, and delete from the source only what has
/// committed. At-least-once in, exactly-once effect (message ids are the idempotency key).
public struct ETLRun: Sendable {
    public let source: any MessageSource
    public let databaseURL: String
    public let tokenKey: TokenKey
    public let vaultPublicKey: VaultPublicKey
    public let configuration: ETLConfiguration
    public let logger: Logger

    public init(
        source: any MessageSource, databaseURL: String, tokenKey: TokenKey, vaultPublicKey: VaultPublicKey,
        configuration: ETLConfiguration, logger: Logger
    ) {
        self.source = source
        self.databaseURL = databaseURL
        self.tokenKey = tokenKey
        self.vaultPublicKey = vaultPublicKey
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs to the end (drained, `maxMessages`, or a stop request) and returns the summary. Throws
    /// `ETLError.failed` (with the summary so far) when something keeps it from loading what it received.
    public func run(stop: StopSignal = StopSignal(), progress: @Sendable (ETLProgress) -> Void = { _ in })
        async throws -> ETLSummary
    {
        let started = Date()
        var summary = ETLSummary()
        let connection = try await Database.connect(databaseURL)
        defer { Task { await connection.close() } }
        let loader = BatchLoader(connection: connection)
        let runID = try await connection.query(
            "INSERT INTO public.etl_runs (source) VALUES (\(source.label)) RETURNING id").first!["id"].requiredInt()
        let tokenizer = Tokenizer(key: tokenKey)
        var preparer: MessagePreparer?

        func finish(_ outcome: String, error: String?) async {
            summary.outcome = outcome
            summary.error = error
            summary.updateRate(since: started)
            _ = try? await connection.execute("""
                UPDATE public.etl_runs SET finished_at = now(), received = \(summary.received),
                       loaded = \(summary.loaded), duplicates = \(summary.duplicates),
                       quarantined = \(summary.quarantined), values_sealed = \(summary.valuesSealed),
                       outcome = \(outcome), error = \(error)
                 WHERE id = \(runID)
                """)
        }

        // Vault look-ups get their own connection: they run while the loader's transaction is open, and must see
        // only committed rows (a batch that rolls back must not hide a value from the next one).
        let lookupConnection = try await Database.connect(databaseURL)
        defer { Task { await lookupConnection.close() } }
        // Its one query asks for a few thousand tokens at a time; as vault.secrets grows, the planner would rather
        // scan the whole table with a hashed ANY than probe the primary key, which makes a run quadratic (measured:
        // most of the database's time at 400k sealed values). This session does nothing else.
        try await lookupConnection.execute("SET enable_seqscan = off")
        let lookup = BatchLoader(connection: lookupConnection)
        let faultExitAfterCommits = ProcessInfo.processInfo.environment["PIIVAULT_FAULT_EXIT_AFTER_COMMITS"]
            .flatMap(Int.init)
        var committedBatches = 0
        // The batch being loaded and then deleted from the source, while the next one is received and prepared:
        // the database and this process work at the same time. At most one batch is in flight, so batches commit
        // and leave the queue in order, each only after its own commit.
        var inFlight: Task<(LoadOutcome, deleteFailures: Int), any Error>?

        /// Waits for the batch in flight and counts it.
        func settle() async throws {
            guard let task = inFlight else { return }
            inFlight = nil
            let (outcome, deleteFailures) = try await task.value
            preparer?.remember(outcome.tokens)
            summary.loaded += outcome.loaded
            summary.duplicates += outcome.duplicates
            summary.quarantined += outcome.quarantined
            summary.valuesSealed += outcome.valuesSealed
            summary.deleteFailures += deleteFailures
            committedBatches += 1
            summary.updateRate(since: started)
            progress(ETLProgress(summary: summary, queueDepth: await source.approximateDepth()))
        }

        do {
            var lastMessageAt = Date()
            var exhausted = false
            while !exhausted && !stop.isRequested {
                if let max = configuration.maxMessages, summary.received >= max { break }
                let collected = try await collectBatch(summary: summary, stop: stop, lastMessageAt: &lastMessageAt)
                exhausted = collected.exhausted
                let batch = collected.messages
                if batch.isEmpty { continue }
                summary.received += batch.count
                if preparer == nil || preparer!.needsNewDataKey {
                    // The batch in flight names the current data key; let it finish before the key changes.
                    try await settle()
                    let sealer = try DataKeySealer(vaultPublicKey: vaultPublicKey)
                    let dataKeyID = try await storeDataKey(sealer.sealedDataKey, connection: connection)
                    if let preparer { preparer.replaceDataKey(sealer, dataKeyID: dataKeyID) } else {
                        preparer = MessagePreparer(tokenizer: tokenizer, sealer: sealer, dataKeyID: dataKeyID)
                    }
                }
                let activePreparer = preparer!
                let prepared = try await activePreparer.prepare(batch) { try await lookup.vaultHolds($0) }
                try await settle()
                let dataKeyID = activePreparer.currentDataKeyID
                let ordinal = committedBatches + 1
                let source = self.source, logger = self.logger
                inFlight = Task {
                    let outcome = try await loader.load(prepared, dataKeyID: dataKeyID) {
                        try activePreparer.quarantine($0, reason: $1)
                    }
                    if let crashAfter = faultExitAfterCommits, ordinal >= crashAfter {
                        // Test hook: simulate a crash between commit and delete (redelivery).
                        logger.warning("exiting after commit, before delete (PIIVAULT_FAULT_EXIT_AFTER_COMMITS)")
                        exit(75)
                    }
                    // Only now, with the batch committed, may the messages leave the queue.
                    let deleteFailures = try await source.acknowledge(batch)
                    logger.debug("batch committed", metadata: [
                        "messages": "\(batch.count)", "loaded": "\(outcome.loaded)",
                        "quarantined": "\(outcome.quarantined)", "sealed": "\(outcome.valuesSealed)",
                    ])
                    return (outcome, deleteFailures)
                }
            }
            try await settle()
        } catch {
            // A batch still in flight either commits and is deleted, or deletes nothing; wait for it either way.
            try? await settle()
            let reason = (error as? any PIIVaultReportableError)?.message ?? String(describing: error)
            await finish("failed", error: reason)
            logger.error("run failed", metadata: ["reason": "\(reason)"])
            throw ETLError.failed("the run stopped before loading everything it received: \(reason); messages not committed stay in the queue and a later run will load them", summary)
        }
        await finish(stop.isRequested ? "interrupted" : "completed", error: nil)
        return summary
    }

    private func storeDataKey(_ key: SealedDataKey, connection: PostgresConnection) async throws -> Int {
        try await connection.query("""
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (\(key.keyID.description), \(key.sealed)) RETURNING id
            """).first!["id"].requiredInt()
    }

    private struct Collected: Sendable {
        var messages: [SourceMessage] = []
        var exhausted = false
    }

    /// Receives until the batch is full, old enough, the source is drained, or a stop is requested.
    private func collectBatch(summary: ETLSummary, stop: StopSignal, lastMessageAt: inout Date) async throws -> Collected {
        var collected = Collected()
        let started = Date()
        let perCall = source.endsWhenEmpty ? configuration.batchSize : 10
        while collected.messages.count < configuration.batchSize && !stop.isRequested {
            var remaining = configuration.batchSize - collected.messages.count
            if let max = configuration.maxMessages {
                remaining = min(remaining, max - summary.received - collected.messages.count)
            }
            if remaining <= 0 { break }
            let calls = source.endsWhenEmpty ? 1 : min(configuration.concurrency, (remaining + perCall - 1) / perCall)
            let source = self.source
            let round = try await withThrowingTaskGroup(of: [SourceMessage].self) { group in
                for call in 0..<calls {
                    let want = min(perCall, remaining - call * perCall)
                    group.addTask { try await source.receive(maxMessages: want) }
                }
                var all: [SourceMessage] = []
                for try await messages in group { all += messages }
                return all
            }
            if round.isEmpty {
                if source.endsWhenEmpty { collected.exhausted = true; break }
                if !collected.messages.isEmpty { break }
                if Date().timeIntervalSince(lastMessageAt) >= configuration.idleExit {
                    collected.exhausted = true
                    break
                }
                continue
            }
            lastMessageAt = Date()
            collected.messages += round
            if Date().timeIntervalSince(started) >= configuration.maxBatchAge { break }
        }
        return collected
    }
}
