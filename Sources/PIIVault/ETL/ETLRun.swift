import Foundation
import Logging
import Postgres

/// The nightly run: receive, validate, tokenize, seal, load in batches, and delete from the source only what has
/// committed. At-least-once in, exactly-once effect (message ids are the idempotency key).
///
/// The parts, each with one job: ``BatchCollector`` receives batches, ``MessagePreparer`` validates, tokenizes and
/// seals, ``BatchLoader`` loads a batch (splitting it around a row the database refuses), ``ETLStore`` holds all the
/// run's SQL. This type only drives them: one batch is loaded while the next is received and prepared.
public struct ETLRun: Sendable {
    public let source: any MessageSource
    public let databaseURL: String
    public let tokenKey: TokenKey
    public let vaultPublicKey: VaultPublicKey
    public let configuration: ETLConfiguration
    public let logger: Logger
    /// Called after batch N (1, 2, ...) has committed and before its messages are deleted from the source. Tests
    /// use it to simulate a crash between commit and delete; it does nothing by default.
    public var afterCommit: @Sendable (_ batchNumber: Int) async throws -> Void = { _ in }
    /// The vault key id `vault.pub` must have (`--vault-key-id`); nil to compare with earlier runs and only warn.
    public var expectedVaultKeyID: String?
    /// Where the run records its metrics; nil for none.
    public var metrics: ETLMetrics?
    /// The live counts, for a progress report while the run works.
    public var tracker = ETLProgressTracker()

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
        tracker.begin(at: started)
        // Both sessions connect at once: each connection is several round trips (TCP, TLS, authentication, settings).
        async let connectingStore = ETLStore.connect(databaseURL)
        async let connectingLookup = VaultLookup.connect(databaseURL)
        let store: ETLStore
        do { store = try await connectingStore } catch {
            if let lookup = try? await connectingLookup { await lookup.close() }
            throw error
        }
        let lookup: VaultLookup
        do { lookup = try await connectingLookup } catch {
            await store.close()
            throw error
        }
        // Closed before returning, not by a task left running: the process exits right after, and libpq must not be
        // tearing a connection down on another thread while exit handlers run.
        do {
            let summary = try await run(store: store, lookup: lookup, started: started, stop: stop, progress: progress)
            await store.close()
            await lookup.close()
            return summary
        } catch {
            await store.close()
            await lookup.close()
            throw error
        }
    }

    /// The run over open sessions (the unit tests pass fakes); the caller closes them.
    func run(
        store: any ETLWriteSession, lookup: any ETLReadSession, started: Date = Date(), stop: StopSignal,
        progress: @Sendable (ETLProgress) -> Void = { _ in }
    ) async throws -> ETLSummary {
        try await checkVaultKey(store: store)
        let tokenizer = Tokenizer(key: tokenKey)
        try await store.checkTokenKey(version: tokenizer.version, keyID: tokenKey.keyID.description)
        // Before the run's lock session opens its transaction, which would keep each round's old index entries.
        await recordMissingSubjectHashes(store: store, stop: stop)
        await mergeFinishedRunPartitions(store: store)
        let runID = try await store.beginRun(source: source.label, keys: RunKeys(
            vaultKeyID: vaultPublicKey.keyID.description, tokenKeyID: tokenKey.keyID.description,
            tokenKeyVersion: tokenizer.version))

        if await !store.erasureCountIsKept {
            logger.warning("the vault's erasure count is not being kept: a trigger on vault.secrets or vault.tombstones that counts erasures is switched off or missing, so every batch checks again that its users were not forgotten and its values not erased meanwhile (slower, still correct); switch them back on (ALTER TABLE vault.secrets ENABLE TRIGGER secrets_count_erasure, ENABLE TRIGGER secrets_count_truncate; ALTER TABLE vault.tombstones ENABLE TRIGGER tombstones_count_erasure), or run piivault migrate if one is missing")
        }
        metrics?.recordQueueDepthAtStart(await source.approximateDepth())
        // --max-duration: a queue that keeps receiving never stays empty long enough to end the run; past the limit
        // the run stops as on SIGTERM. A stop of its own, so that a SIGTERM after it still counts as the first
        // signal (which finishes the batch in hand; only a second exits at once).
        let runStop = StopSignal(parent: stop)
        let deadline = configuration.maxDuration.map { seconds in
            Task { [logger] in
                try await Task.sleep(for: .seconds(seconds))
                if !runStop.isRequested {
                    logger.notice("--max-duration reached: stopping after the batch in hand; what was not received is left for the next run")
                }
                runStop.request()
            }
        }
        defer { deadline?.cancel() }
        var summary = ETLSummary()
        do {
            try await drain(runID: runID, store: store, lookup: lookup, tokenizer: tokenizer, stop: runStop, summary: &summary) {
                summary in
                var summary = summary
                summary.updateRate(since: started)
                progress(ETLProgress(summary: summary, queueDepth: await source.approximateDepth()))
            }
        } catch {
            let reason = (error as? any PIIVaultReportableError)?.message ?? String(describing: error)
            summary.outcome = "failed"
            summary.error = reason
            summary.updateRate(since: started, workEnded: tracker.workEndedAt)
            await store.finishRun(runID, summary: summary)
            await recordEnd(summary)
            logger.debug("run failed", metadata: ["reason": "\(reason)"])
            let rest = source.endsWhenEmpty
                ? "a later run of the file loads the lines not committed"
                : "messages not committed stay in the queue and a later run will load them"
            throw ETLError.failed("the run stopped before loading everything it received: \(reason); \(rest)", summary)
        }
        summary.outcome = runStop.isRequested ? "interrupted" : "completed"
        // Nothing received and nothing committed: the whole run was the wait for messages, none of it work.
        summary.updateRate(since: started, workEnded: tracker.workEndedAt ?? started)
        await store.finishRun(runID, summary: summary)
        await recordEnd(summary)
        return summary
    }

    /// Housekeeping before the run: older runs' partitions of user_logins merged into one, so that their number (which
    /// every look-up plans over) stays small. A failure costs nothing but the next run's attempt.
    private func mergeFinishedRunPartitions(store: any ETLWriteSession) async {
        do {
            let merged = try await store.mergeFinishedRunPartitions()
            if merged > 0 {
                logger.notice("merged the user_logins partitions of \(merged) finished runs from before this month into one")
            } else if merged < 0 {
                logger.warning("could not merge older runs' partitions of user_logins: user_logins was busy (a write or a long query held it for 5 s); the next run tries again")
            }
        } catch {
            let state = (error as? PostgresError)?.sqlState.map { " (SQLSTATE \($0))" } ?? ""
            logger.warning("could not merge older runs' partitions of user_logins\(state); the next run tries again")
        }
    }

    /// Rows loaded before piivault recorded subject hashes get them (the token key's keyed hash of their user id),
    /// so that forget can tie its subject to them: for a minute at most each run (a large legacy table takes several
    /// runs), and not once a stop is requested. A failure is a warning: the run's own work does not need it.
    private func recordMissingSubjectHashes(store: any ETLWriteSession, stop: StopSignal) async {
        let hasher = TombstoneHasher(key: tokenKey)
        let deadline = Date().addingTimeInterval(Self.subjectHashSeconds)
        do {
            let (recorded, finished) = try await store.recordMissingSubjectHashes({ hasher.hash(userID: $0) }) {
                !stop.isRequested && Date() < deadline
            }
            if recorded > 0 || !finished {
                logger.notice("recorded the subject hash of \(recorded) rows loaded before piivault recorded one (forget ties its subject to it)\(finished ? "" : "; more are left, for the next run")")
            }
        } catch {
            let reason = (error as? any PIIVaultReportableError)?.message ?? String(describing: error)
            logger.warning("could not record the subject hashes of rows loaded without one: \(reason); the next run tries again")
        }
    }

    /// How long a run spends recording missing subject hashes before its own work.
    static let subjectHashSeconds: TimeInterval = 60

    private func recordEnd(_ summary: ETLSummary) async {
        guard let metrics else { return }
        metrics.recordEnd(summary, queueDepth: await source.approximateDepth())
    }

    /// Whoever can write `vault.pub` decides whose key the night's values are sealed to: with `--vault-key-id` a
    /// different key is refused; without it, a key that differs from the last run's is reported.
    private func checkVaultKey(store: any ETLWriteSession) async throws {
        let actual = vaultPublicKey.keyID.description
        if let expected = expectedVaultKeyID {
            guard expected.lowercased() == actual else {
                throw ETLError.vaultKeyMismatch(expected: expected, actual: actual)
            }
            return
        }
        if let last = try await store.lastVaultKeyID(), last != actual {
            logger.warning("vault.pub has key id \(actual), but the last run sealed to \(last), and this run seals to \(actual): if the vault key was rotated on purpose, pass --vault-key-id \(actual) (or set PIIVAULT_VAULT_KEY_ID) to confirm it; if not, check which vault.pub this job was given, and pass --vault-key-id \(last) so that another key is refused")
        }
    }

    /// What a batch in flight did once committed and deleted.
    private struct Settled: Sendable {
        /// The batch's number in the run (1, 2, ...).
        let number: Int
        let outcome: LoadOutcome
        let deleteFailures: Int
        /// The tokens the batch was prepared to seal.
        let sealing: [String]
    }

    /// A batch committed, and then removing its messages from the source failed: its counts still go into the
    /// summary (its rows are in the tables) before the run ends with `error`.
    private struct AcknowledgeFailed: Error {
        let committed: Settled
        let error: any Error
    }

    /// A batch's messages, rows and COPY data. From a file, the run frees them once the next batch's load has begun:
    /// freeing 10,000 messages' strings takes milliseconds (6 ms a batch, measured), which the database would spend
    /// waiting if they were freed between the batch's commit and the next batch's first statement, or on another
    /// thread meanwhile (measured slower still: both cores are busy then). From a queue, whose deletes take far longer
    /// than that, the rows are freed before the deletes and the messages after them, as the batch's tasks end.
    private final class HeldBatch: @unchecked Sendable {  // `rows` is guarded by `lock`
        let messages: [SourceMessage]
        private let lock = NSLock()
        private var rows: (prepared: [PreparedMessage], encoded: EncodedBatch)?

        init(messages: [SourceMessage], prepared: [PreparedMessage], encoded: EncodedBatch) {
            self.messages = messages
            rows = (prepared, encoded)
        }

        /// The rows and their COPY data, for the load.
        var loadRows: (prepared: [PreparedMessage], encoded: EncodedBatch) {
            lock.withLock {
                guard let rows else { preconditionFailure("a batch's rows were read after they were freed") }
                return rows
            }
        }

        /// Frees the rows now (those of a batch whose load is over).
        func freeRows() {
            let taken = lock.withLock { () -> (prepared: [PreparedMessage], encoded: EncodedBatch)? in
                defer { rows = nil }
                return rows
            }
            withExtendedLifetime(taken) {}
        }
    }

    /// Receives, prepares and loads batches until the collector ends; counts into `summary`.
    private func drain(
        runID: Int, store: any ETLWriteSession, lookup: any ETLReadSession, tokenizer: Tokenizer, stop: StopSignal,
        summary: inout ETLSummary, progress: (ETLSummary) async -> Void
    ) async throws {
        let collector = BatchCollector(source: CountingMessageSource(base: source, tracker: tracker),
                                       configuration: configuration)
        let preparer = MessagePreparer(tokenizer: tokenizer, tombstoneHasher: TombstoneHasher(key: tokenKey))
        let loader = BatchLoader(store: store, etlRunID: runID)
        // The batch being loaded and then deleted from the source, while the next one is received and prepared: the
        // database and this process work at the same time. At most one batch is in flight, so batches commit and
        // leave the queue in order, each only after its own commit.
        var inFlight: Task<Settled, any Error>?
        // The next batch is prepared while one is in flight, taking the values that one seals as in the vault (else it
        // would seal them again, and its insert would meet them). When the batch in flight committed without some (a
        // message the database refused was quarantined with its values), the next batch is prepared again.
        var inFlightDroppedValues = false
        var held: HeldBatch?
        // A file's acknowledge does nothing; a queue's deletes take longer than freeing a batch (HeldBatch).
        let acknowledgingIsInstant = source.endsWhenEmpty
        // From a queue: the messages received and not yet committed, by batch number. A run that fails hands them
        // back, so the next run need not wait out their visibility timeout. (A file has nothing to hand back, and its
        // batches are freed early: see HeldBatch.)
        var unsettled: [Int: [SourceMessage]] = [:]
        var batchesReceived = 0

        func settle() async throws {
            guard let task = inFlight else { return }
            inFlight = nil
            let settled: Settled
            do {
                settled = try await task.value
            } catch let failure as AcknowledgeFailed {
                unsettled[failure.committed.number] = nil  // committed: a rerun sees them as duplicates
                summary.add(failure.committed.outcome, deleteFailures: 0)
                throw failure.error
            }
            unsettled[settled.number] = nil
            if settled.outcome.tokens.count < settled.sealing.count {
                preparer.forget(Set(settled.sealing).subtracting(settled.outcome.tokens))
                inFlightDroppedValues = true
            }
            if settled.outcome.valuesSealed < settled.sealing.count { preparer.vaultHeldValuesABatchSealed() }
            summary.add(settled.outcome, deleteFailures: settled.deleteFailures)
            await progress(summary)
        }

        func prepare(_ batch: [SourceMessage]) async throws -> [PreparedMessage] {
            try await preparer.prepare(batch, tombstoned: { try await lookup.tombstoned($0) }) {
                try await lookup.vaultHolds($0)
            }
        }

        // The next batch is received while this one is prepared (and the one before it loads): the pollers never
        // wait on this process's CPU. At most one batch ahead, so memory stays bounded; it is loaded, committed and
        // deleted in order like any other.
        // Receiving stops on the run's stop, and when the run fails (then what was received is handed back).
        let receiving = StopSignal(parent: stop)
        func receiveAhead(_ collector: BatchCollector, received: Int) -> Task<(batch: [SourceMessage]?, collector: BatchCollector), any Error> {
            Task {
                var collector = collector
                let batch = try await collector.next(received: received, stop: receiving)
                return (batch, collector)
            }
        }
        var ahead = receiveAhead(collector, received: 0)
        defer { ahead.cancel() }

        do {
            while true {
                let next = try await ahead.value
                guard let batch = next.batch else { break }
                batchesReceived += 1
                if !acknowledgingIsInstant { unsettled[batchesReceived] = batch }
                summary.received += batch.count
                ahead = receiveAhead(next.collector, received: summary.received)
                if preparer.needsDataKey {
                    // The batch in flight names the current data key; let it finish before the key changes.
                    try await settle()
                    let sealer = try DataKeySealer(vaultPublicKey: vaultPublicKey)
                    preparer.use(sealer, dataKeyID: try await store.storeDataKey(sealer.sealedDataKey))
                }
                // Prepared and encoded for COPY while the batch in flight loads: the write session then goes from one
                // batch's commit to the next one's COPY without waiting for this process.
                let quarantiner = preparer.quarantiner
                var prepared = try await prepare(batch)
                var encoded = EncodedBatch(prepared, dataKeyID: quarantiner.dataKeyID, etlRunID: runID)
                try await settle()
                if inFlightDroppedValues {
                    inFlightDroppedValues = false
                    held = nil  // the committed batch's rows, not kept beside two preparations of this one
                    prepared = try await prepare(batch)
                    encoded = EncodedBatch(prepared, dataKeyID: quarantiner.dataKeyID, etlRunID: runID)
                }
                let sealing = encoded.tokens
                // Every batch before this one has settled (committed) by now: this is batch N of the run.
                let batchNumber = batchesReceived
                let source = self.source, logger = self.logger, afterCommit = self.afterCommit
                let metrics = self.metrics, tracker = self.tracker
                let current = HeldBatch(messages: batch, prepared: prepared, encoded: encoded)
                // High priority: the write session's steps run ahead of the next batch's preparation, which would
                // otherwise hold both of a two-core machine's threads while the database waits.
                let loading = Task(priority: .high) {
                    let clock = ContinuousClock()
                    let loadStarted = clock.now
                    let rows = current.loadRows
                    let outcome = try await loader.load(rows.prepared, encoded: rows.encoded, quarantiner: quarantiner)
                    metrics?.recordBatchCommit(clock.now - loadStarted)
                    return outcome
                }
                inFlight = Task(priority: .high) {
                    let outcome = try await loading.value
                    try await afterCommit(batchNumber)
                    if !acknowledgingIsInstant { current.freeRows() }
                    // Only now, with the batch committed, may the messages leave the queue.
                    let deleteFailures: Int
                    do {
                        deleteFailures = try await source.acknowledge(current.messages)
                    } catch {
                        tracker.committed(outcome)
                        throw AcknowledgeFailed(
                            committed: Settled(number: batchNumber, outcome: outcome, deleteFailures: 0,
                                               sealing: sealing),
                            error: error)
                    }
                    tracker.committed(outcome)
                    logger.debug("batch committed", metadata: [
                        "messages": "\(current.messages.count)", "loaded": "\(outcome.loaded)",
                        "quarantined": "\(outcome.quarantined)", "sealed": "\(outcome.valuesSealed)",
                    ])
                    return Settled(number: batchNumber, outcome: outcome, deleteFailures: deleteFailures,
                                   sealing: sealing)
                }
                preparer.remember(sealing)
                // From a file, replacing `held` frees the batch before this one here, while this one loads.
                held = acknowledgingIsInstant ? current : nil
            }
            try await settle()
        } catch {
            // No more receiving: the batch received ahead stops after the call in progress (at most one long poll).
            // It is not cancelled, which would lose what that call takes from the queue.
            receiving.request()
            // A batch still in flight either commits and is deleted, or deletes nothing; wait for it either way.
            try? await settle()
            if !acknowledgingIsInstant {
                // What was received and not committed goes back to the queue, with the batch received ahead.
                if let next = try? await ahead.value, let batch = next.batch { unsettled[batchesReceived + 1] = batch }
                let messages = unsettled.keys.sorted().flatMap { unsettled[$0] ?? [] }
                if !messages.isEmpty {
                    await source.release(messages)
                    logger.debug("messages handed back", metadata: ["messages": "\(messages.count)"])
                }
            }
            throw error
        }
    }
}
