import Foundation
import Logging
@testable import PIIVault
import Postgres
import XCTest

// The ETL's batch logic over fakes (ETLFakes.swift): no database, no queue. The integration tests (ETLTests,
// ETLCrashTests) run the same logic against PostgreSQL and the SQS emulator.

private func configuration(
    batchSize: Int, concurrency: Int = 4, maxMessages: Int? = nil, idleExit: Double = 5, maxBatchAge: Double = 60
) -> ETLConfiguration {
    var configuration = ETLConfiguration()
    configuration.batchSize = batchSize
    configuration.concurrency = concurrency
    configuration.maxMessages = maxMessages
    configuration.idleExit = idleExit
    configuration.maxBatchAge = maxBatchAge
    return configuration
}

/// Collecting: when a batch ends, and when the run does.
final class BatchCollectorTests: XCTestCase {
    /// Every batch the collector gives, asked for as `ETLRun` asks (with the count received so far).
    private func collectAll(
        _ source: FakeSource, _ configuration: ETLConfiguration, stop: StopSignal = StopSignal()
    ) async throws -> [[String]] {
        var collector = BatchCollector(source: source, configuration: configuration)
        var batches: [[String]] = []
        var received = 0
        while let batch = try await collector.next(received: received, stop: stop) {
            received += batch.count
            batches.append(batch.map(\.messageID))
        }
        return batches
    }

    func testAFileIsCutIntoFullBatchesUntilItEnds() async throws {
        let source = FakeSource(validMessages(25), endsWhenEmpty: true)
        let batches = try await collectAll(source, configuration(batchSize: 10))
        XCTAssertEqual(batches.map(\.count), [10, 10, 5])
        XCTAssertEqual(batches.flatMap { $0 }, validMessages(25).map(\.messageID))
        // A file is read one call per round; its first empty answer ends the run.
        XCTAssertEqual(source.receiveRequests, [10, 10, 10, 5])
    }

    func testAQueueBatchFillsFromConcurrentReceivesOfTenAtMost() async throws {
        let source = FakeSource(validMessages(100), endsWhenEmpty: false)
        var collector = BatchCollector(source: source, configuration: configuration(batchSize: 25, concurrency: 4))
        let batch = try await collector.next(received: 0, stop: StopSignal())
        XCTAssertEqual(batch?.count, 25)
        XCTAssertEqual(source.receiveRequests.sorted(), [5, 10, 10], "three pollers, 25 messages asked for in all")
        XCTAssertEqual(source.remaining, 75)
    }

    func testABatchOldEnoughIsLoadedThoughNotFull() async throws {
        let fresh = FakeSource(validMessages(100), endsWhenEmpty: false)
        var patient = BatchCollector(source: fresh, configuration: configuration(batchSize: 40, concurrency: 1))
        let full = try await patient.next(received: 0, stop: StopSignal())
        XCTAssertEqual(full?.count, 40, "under its age limit a batch fills up")

        let aging = FakeSource(validMessages(100), endsWhenEmpty: false)
        var hasty = BatchCollector(source: aging, configuration: configuration(batchSize: 40, concurrency: 1, maxBatchAge: 0))
        let old = try await hasty.next(received: 0, stop: StopSignal())
        XCTAssertEqual(old?.count, 10, "a batch at its age limit goes with the one round received")
        XCTAssertEqual(aging.receiveRequests, [10])
    }

    func testAQueueThatStaysEmptyForIdleExitIsDrained() async throws {
        let source = FakeSource(validMessages(3), endsWhenEmpty: false, emptyWait: 0.01)
        var collector = BatchCollector(
            source: source, configuration: configuration(batchSize: 10, concurrency: 1, idleExit: 0.3))
        // Before the messages arrive, so that the time measured is never shorter than the collector's own (which
        // starts at the last message, inside the first call).
        let lastMessage = Date()
        let first = try await collector.next(received: 0, stop: StopSignal())
        XCTAssertEqual(first?.count, 3, "an empty receive after some messages ends the batch, not the run")
        let next = try await collector.next(received: 3, stop: StopSignal())
        XCTAssertNil(next)
        XCTAssertTrue(collector.isExhausted)
        let idle = Date().timeIntervalSince(lastMessage)
        XCTAssertGreaterThanOrEqual(idle, 0.3, "an empty queue counts as drained only after idleExit")
        XCTAssertLessThan(idle, 5)
        XCTAssertGreaterThan(source.receiveRequests.count, 3, "it kept polling while the queue was idle")
    }

    func testMaxMessagesStopsReceivingAtTheLimit() async throws {
        for endsWhenEmpty in [true, false] {
            let source = FakeSource(validMessages(100), endsWhenEmpty: endsWhenEmpty)
            let batches = try await collectAll(source, configuration(batchSize: 10, maxMessages: 25))
            XCTAssertEqual(batches.map(\.count), [10, 10, 5], endsWhenEmpty ? "file" : "queue")
            XCTAssertEqual(source.receiveRequests.reduce(0, +), 25, "never asks for more than the limit")
            XCTAssertEqual(source.remaining, 75)
        }
    }

    func testAStopBeforeTheFirstBatchReceivesNothing() async throws {
        let source = FakeSource(validMessages(10), endsWhenEmpty: false)
        let stop = StopSignal()
        stop.request()
        let batches = try await collectAll(source, configuration(batchSize: 10), stop: stop)
        XCTAssertEqual(batches, [])
        XCTAssertEqual(source.receiveRequests, [])
    }

    func testAStopDuringCollectionEndsWithTheBatchInHand() async throws {
        let stop = StopSignal()
        let source = FakeSource(validMessages(100), endsWhenEmpty: false) { number in
            if number == 2 { stop.request() }
        }
        let batches = try await collectAll(source, configuration(batchSize: 50, concurrency: 1), stop: stop)
        XCTAssertEqual(batches, [validMessages(20).map(\.messageID)], "the two rounds in hand, then nothing more")
        XCTAssertEqual(source.receiveRequests, [10, 10])
    }
}

/// Preparing: a valid message becomes tokens and sealed values; any other is quarantined, its body sealed.
final class MessagePreparerTests: XCTestCase {
    private var tokenKey: TokenKey!
    private var vaultKey: VaultSecretKey!
    private var sealer: DataKeySealer!

    override func setUpWithError() throws {
        tokenKey = try fixedTokenKey()
        vaultKey = try fixedVaultKey()
        sealer = try DataKeySealer(vaultPublicKey: vaultKey.publicKey)
    }

    private func makePreparer() -> MessagePreparer {
        let preparer = MessagePreparer(tokenizer: Tokenizer(key: tokenKey), tombstoneHasher: TombstoneHasher(key: tokenKey))
        preparer.use(sealer, dataKeyID: 7)
        return preparer
    }

    private func prepare(
        _ messages: [SourceMessage], with preparer: MessagePreparer, lookup: FakeReadSession = FakeReadSession()
    ) async throws -> [PreparedMessage] {
        try await preparer.prepare(messages, tombstoned: { try await lookup.tombstoned($0) }) {
            try await lookup.vaultHolds($0)
        }
    }

    private func opened(_ secret: PreparedSecret) throws -> String {
        try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vaultKey).openString(secret.sealed, token: secret.token)
    }

    func testAValidMessageBecomesALoginOfTokensWithItsValuesSealed() async throws {
        let message = SourceMessage(messageID: "m1", body: validLoginBody(user: "u-1", ip: "2001:DB8::1", device: " device-1 "),
                                    sentAt: nil, receiptHandle: nil)
        let prepared = try await prepare([message], with: makePreparer())
        guard prepared.count == 1, case .login(let login, let secrets) = prepared[0].content else {
            return XCTFail("expected one login, got \(prepared.map(\.content))")
        }
        let tokenizer = Tokenizer(key: tokenKey)
        let ip = try tokenizer.tokenize("2001:DB8::1", as: .ip), device = try tokenizer.tokenize(" device-1 ", as: .deviceID)
        XCTAssertEqual(login.messageID, "m1")
        XCTAssertEqual(login.userID, "u-1")
        XCTAssertEqual(login.ipToken, ip.token)
        XCTAssertEqual(login.deviceToken, device.token)
        XCTAssertEqual(login.createDate, "2024-05-01")
        XCTAssertEqual(login.subjectHash, TombstoneHasher(key: tokenKey).hash(userID: "u-1"))
        XCTAssertEqual(secrets.map(\.token).sorted(), [ip.token, device.token].sorted())
        for secret in secrets {
            XCTAssertEqual(try opened(secret), secret.field == .ip ? ip.canonical : device.canonical)
        }
    }

    func testValuesTheVaultHoldsOrTheRunKnowsAreNotSealedAgain() async throws {
        let tokenizer = Tokenizer(key: tokenKey)
        let ipToken = try tokenizer.tokenize("192.0.2.9", as: .ip).token
        let deviceToken = try tokenizer.tokenize("device-9", as: .deviceID).token
        let lookup = FakeReadSession(held: [ipToken])
        let preparer = makePreparer()
        // Two messages with the same values: the device id is sealed once, the ip (in the vault) not at all.
        let twins = ["a", "b"].map {
            SourceMessage(messageID: $0, body: validLoginBody(ip: "192.0.2.9", device: "device-9"), sentAt: nil,
                          receiptHandle: nil)
        }
        let first = try await prepare(twins, with: preparer, lookup: lookup)
        let sealed = first.flatMap { message -> [PreparedSecret] in
            if case .login(_, let secrets) = message.content { return secrets } else { return [] }
        }
        XCTAssertEqual(sealed.map(\.token), [deviceToken])
        XCTAssertEqual(lookup.vaultQueries.map { $0.sorted() }, [[ipToken, deviceToken].sorted()])

        // Once the batch committed, the run knows both: the vault is not asked again, nothing is sealed.
        preparer.remember([deviceToken])
        let again = SourceMessage(messageID: "c", body: validLoginBody(ip: "192.0.2.9", device: "device-9"), sentAt: nil,
                                  receiptHandle: nil)
        let second = try await prepare([again], with: preparer, lookup: lookup)
        guard case .login(_, let secrets) = second[0].content else { return XCTFail("expected a login") }
        XCTAssertEqual(secrets.count, 0)
        XCTAssertEqual(lookup.vaultQueries.count, 1)
    }

    /// After a batch whose new tokens the vault did not hold, the vault is asked again only every
    /// `vaultProbeInterval`th batch (the batches between seal their new values; the insert keeps a copy the vault had);
    /// a batch that finds values there has the next one ask too.
    func testTheVaultIsAskedEveryEighthBatchWhileItHoldsNoneOfTheNewValues() async throws {
        let tokenizer = Tokenizer(key: tokenKey)
        let heldIP = try tokenizer.tokenize("198.51.100.77", as: .ip).token
        let lookup = FakeReadSession(held: [heldIP])
        let preparer = makePreparer()
        func batch(_ n: Int, ip: String? = nil) async throws -> [PreparedSecret] {
            let message = SourceMessage(messageID: "m\(n)", body: validLoginBody(ip: ip ?? "192.0.2.\(n)", device: "device-\(n)"),
                                        sentAt: nil, receiptHandle: nil)
            return try await prepare([message], with: preparer, lookup: lookup).flatMap { message -> [PreparedSecret] in
                if case .login(_, let secrets) = message.content { return secrets } else { return [] }
            }
        }
        for n in 1...9 { _ = try await batch(n) }
        XCTAssertEqual(lookup.vaultQueries.count, 2, "batches 1 and 9 asked; 2 to 8 sealed without asking")
        XCTAssertEqual(MessagePreparer.vaultProbeInterval, 8)
        // Between probes a value the vault holds is sealed again (its primary key then keeps the vault's copy).
        let unasked = try await batch(10, ip: "198.51.100.77")
        XCTAssertEqual(lookup.vaultQueries.count, 2)
        XCTAssertTrue(unasked.contains { $0.token == heldIP })
        for n in 11...16 { _ = try await batch(n) }
        // Batch 17 probes and finds a held value: from then on every batch asks.
        let probed = try await batch(17, ip: "198.51.100.77")
        XCTAssertEqual(lookup.vaultQueries.count, 3)
        XCTAssertFalse(probed.contains { $0.token == heldIP }, "found in the vault: not sealed")
        _ = try await batch(18)
        XCTAssertEqual(lookup.vaultQueries.count, 4, "the batch after one that found values asks too")
        _ = try await batch(19)
        XCTAssertEqual(lookup.vaultQueries.count, 4, "18 found none: the next seven do not ask")
        // A committed batch that inserted fewer values than it sealed (the vault held some): the next batch asks.
        preparer.vaultHeldValuesABatchSealed()
        _ = try await batch(20)
        XCTAssertEqual(lookup.vaultQueries.count, 5)
    }

    func testAMessageThatBreaksTheRulesIsQuarantinedWithItsBodySealed() async throws {
        let notJSON = Array("not json at all".utf8)
        let badIP = validLoginBody(user: "u-2", ip: "999.0.2.1")
        let messages = [
            SourceMessage(messageID: "bad-json", body: notJSON, sentAt: nil, receiptHandle: nil),
            SourceMessage(messageID: "good", body: validLoginBody(), sentAt: nil, receiptHandle: nil),
            SourceMessage(messageID: "bad-ip", body: badIP, sentAt: nil, receiptHandle: nil),
        ]
        let prepared = try await prepare(messages, with: makePreparer())
        XCTAssertEqual(prepared.map(\.source.messageID), ["bad-json", "good", "bad-ip"], "in the batch's order")
        guard case .login = prepared[1].content else { return XCTFail("the valid message must stay a login") }
        let opener = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vaultKey)
        for (index, body) in [(0, notJSON), (2, badIP)] {
            guard case .quarantine(let entry) = prepared[index].content else {
                XCTFail("\(prepared[index].source.messageID) should be quarantined")
                continue
            }
            XCTAssertEqual(entry.messageID, prepared[index].source.messageID)
            XCTAssertEqual(try opener.openQuarantined(entry.sealedBody, messageID: entry.messageID), body)
            XCTAssertFalse(entry.sealedBody.starts(with: body.prefix(8)), "the body is stored sealed")
        }
        guard case .quarantine(let ipEntry) = prepared[2].content else { return }
        XCTAssertEqual(ipEntry.reason, "field ip: not a valid IPv4 or IPv6 address")
        XCTAssertFalse(ipEntry.reason.contains("999"), "a reason never quotes the value")
    }

    func testALoginOfAForgottenUserIsSuppressedAndNothingOfItSealed() async throws {
        let forgotten = TombstoneHasher(key: tokenKey).hash(userID: "u-gone")
        let lookup = FakeReadSession(forgotten: [forgotten])
        let messages = [
            SourceMessage(messageID: "gone", body: validLoginBody(user: "u-gone", ip: "192.0.2.50", device: "d-gone"),
                          sentAt: nil, receiptHandle: nil),
            SourceMessage(messageID: "kept", body: validLoginBody(user: "u-kept"), sentAt: nil, receiptHandle: nil),
        ]
        let prepared = try await prepare(messages, with: makePreparer(), lookup: lookup)
        guard case .suppressed = prepared[0].content else { return XCTFail("a forgotten user's login is suppressed") }
        guard case .login = prepared[1].content else { return XCTFail("another user's login is kept") }
        let goneIP = try Tokenizer(key: tokenKey).tokenize("192.0.2.50", as: .ip).token
        XCTAssertFalse(lookup.vaultQueries.joined().contains(goneIP), "nothing of a forgotten user is looked up or sealed")
    }
}

/// Loading: one transaction per batch; a row the database refuses is isolated by halving and quarantined; a
/// deadlock or serialization failure is tried again, twice at most.
final class BatchLoaderTests: XCTestCase {
    /// `messages` prepared with a fresh data key, and the quarantiner of that key.
    private func prepared(_ messages: [SourceMessage]) async throws -> ([PreparedMessage], Quarantiner) {
        let tokenKey = try fixedTokenKey()
        let preparer = MessagePreparer(tokenizer: Tokenizer(key: tokenKey), tombstoneHasher: TombstoneHasher(key: tokenKey))
        preparer.use(try DataKeySealer(vaultPublicKey: try fixedVaultKey().publicKey), dataKeyID: 3)
        let batch = try await preparer.prepare(messages) { _ in [] }
        return (batch, preparer.quarantiner)
    }

    private func ids(_ range: ClosedRange<Int>) -> [String] { range.map { "m\($0)" } }

    func testARowTheDatabaseRefusesIsIsolatedByHalvingAndQuarantined() async throws {
        let store = FakeWriteSession { attempt, _ in
            attempt.logins.contains("m5") ? serverError("22P02", column: "create_date") : nil
        }
        let (batch, quarantiner) = try await prepared(validMessages(8))
        let outcome = try await BatchLoader(store: store, etlRunID: 7).load(batch, quarantiner: quarantiner)
        XCTAssertEqual(outcome.loaded, 7)
        XCTAssertEqual(outcome.quarantined, 1)
        let attempts = await store.attempts
        XCTAssertEqual(attempts.map(\.logins), [
            ids(1...8), ids(1...4), ids(5...8), ids(5...6), ["m5"], [], ["m6"], ids(7...8),
        ], "halves until the offending message is alone")
        let committed = await store.committedLogins
        XCTAssertEqual(committed.sorted(), (ids(1...4) + ids(6...8)).sorted())
        let quarantine = await store.committedQuarantine
        XCTAssertEqual(quarantine, ["m5": "rejected by the database: 22P02 in column create_date"])
    }

    func testTwoRefusedRowsAreEachQuarantinedAndTheRestLoads() async throws {
        let store = FakeWriteSession { attempt, _ in
            attempt.logins.contains("m2") || attempt.logins.contains("m7") ? serverError("23514") : nil
        }
        let (batch, quarantiner) = try await prepared(validMessages(8))
        let outcome = try await BatchLoader(store: store, etlRunID: 7).load(batch, quarantiner: quarantiner)
        XCTAssertEqual(outcome.loaded, 6)
        XCTAssertEqual(outcome.quarantined, 2)
        let quarantine = await store.committedQuarantine
        XCTAssertEqual(quarantine.keys.sorted(), ["m2", "m7"])
        XCTAssertEqual(quarantine["m2"], "rejected by the database: 23514")
    }

    func testAnErrorNotCausedByARowFailsTheBatchUnsplit() async throws {
        let store = FakeWriteSession { _, _ in serverError("53100") }  // disk full: any batch would fail
        let (batch, quarantiner) = try await prepared(validMessages(8))
        do {
            _ = try await BatchLoader(store: store, etlRunID: 7).load(batch, quarantiner: quarantiner)
            XCTFail("expected the error")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "53100")
        }
        let attempts = await store.attempts
        XCTAssertEqual(attempts.count, 1)
    }

    func testAQuarantineEntryTheDatabaseRefusesFailsTheBatch() async throws {
        let store = FakeWriteSession { _, _ in serverError("23514") }
        let (batch, quarantiner) = try await prepared(validMessages(1))
        do {
            _ = try await BatchLoader(store: store, etlRunID: 7).load(batch, quarantiner: quarantiner)
            XCTFail("expected the error")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23514")
        }
        let attempts = await store.attempts
        XCTAssertEqual(attempts.map(\.logins), [["m1"], []], "the login, then its quarantine entry; no more")
        let committed = await store.commits
        XCTAssertEqual(committed, [])
    }

    func testADeadlockIsTriedAgain() async throws {
        let store = FakeWriteSession { _, number in number == 1 ? serverError("40P01") : nil }
        let (batch, quarantiner) = try await prepared(validMessages(4))
        let outcome = try await BatchLoader(store: store, etlRunID: 7).load(batch, quarantiner: quarantiner)
        XCTAssertEqual(outcome.loaded, 4)
        let attempts = await store.attempts
        XCTAssertEqual(attempts.map(\.logins), [ids(1...4), ids(1...4)], "the same batch again, whole")
        XCTAssertEqual(attempts.map(\.committed), [false, true])
    }

    func testASerializationFailureIsTriedTwiceAtMost() async throws {
        let twice = FakeWriteSession { _, number in number <= 2 ? serverError("40001") : nil }
        let (batch, quarantiner) = try await prepared(validMessages(4))
        let outcome = try await BatchLoader(store: twice, etlRunID: 7).load(batch, quarantiner: quarantiner)
        XCTAssertEqual(outcome.loaded, 4)
        let twiceAttempts = await twice.attempts.count
        XCTAssertEqual(twiceAttempts, 3)

        let always = FakeWriteSession { _, _ in serverError("40P01") }
        do {
            _ = try await BatchLoader(store: always, etlRunID: 7).load(batch, quarantiner: quarantiner)
            XCTFail("a third conflict in a row must fail the batch")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "40P01")
        }
        let alwaysAttempts = await always.attempts.count
        XCTAssertEqual(alwaysAttempts, 3, "the first try and two more")
    }
}

/// The run's loop: what it acknowledges, counts and records, and how it stops.
final class ETLRunLoopTests: XCTestCase {
    private func makeRun(_ source: FakeSource, _ configuration: ETLConfiguration) throws -> ETLRun {
        ETLRun(source: source, databaseURL: "unused: the sessions are fakes", tokenKey: try fixedTokenKey(),
               vaultPublicKey: try fixedVaultKey().publicKey, configuration: configuration,
               logger: Logger(label: "piivault.etl.test"))
    }

    func testEveryCommittedMessageIsAcknowledgedAndCounted() async throws {
        let bad = SourceMessage(messageID: "m26", body: Array("{".utf8), sentAt: nil, receiptHandle: nil)
        let source = FakeSource(validMessages(25) + [bad], endsWhenEmpty: true)
        let store = FakeWriteSession()
        let summary = try await makeRun(source, configuration(batchSize: 10))
            .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
        XCTAssertEqual(summary.outcome, "completed")
        XCTAssertEqual(summary.received, 26)
        XCTAssertEqual(summary.loaded, 25)
        XCTAssertEqual(summary.quarantined, 1)
        XCTAssertEqual(summary.valuesSealed, 50)
        XCTAssertEqual(source.acknowledged, validMessages(25).map(\.messageID) + ["m26"], "in batch order")
        let finished = await store.finished, runs = await store.runsBegun, keys = await store.dataKeysStored
        XCTAssertEqual(finished.map(\.outcome), ["completed"])
        XCTAssertEqual(runs, 1)
        XCTAssertEqual(keys, 1)
    }

    func testOnlyCommittedBatchesAreAcknowledgedWhenALoadFails() async throws {
        let source = FakeSource(validMessages(30), endsWhenEmpty: true)
        let store = FakeWriteSession { attempt, _ in attempt.logins.contains("m15") ? serverError("53100") : nil }
        do {
            _ = try await makeRun(source, configuration(batchSize: 10))
                .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
            XCTFail("expected the run to fail")
        } catch let error as ETLError {
            // A source that ends when empty is a file's: a later run of the file, not the queue, brings the rest.
            XCTAssertTrue(error.message.contains("a later run of the file loads the lines not committed"), error.message)
            XCTAssertEqual(error.partialSummary?.loaded, 10)
        }
        XCTAssertEqual(source.acknowledged, validMessages(10).map(\.messageID))
        let committed = await store.committedLogins, finished = await store.finished
        XCTAssertEqual(committed, validMessages(10).map(\.messageID))
        XCTAssertEqual(finished.map(\.outcome), ["failed"])
    }

    func testAFailureBetweenCommitAndDeleteAcknowledgesNothingOfThatBatch() async throws {
        struct Crash: Error {}
        let source = FakeSource(validMessages(30), endsWhenEmpty: true)
        let store = FakeWriteSession()
        var run = try makeRun(source, configuration(batchSize: 10))
        run.afterCommit = { number in if number == 2 { throw Crash() } }
        do {
            _ = try await run.run(store: store, lookup: FakeReadSession(), stop: StopSignal())
            XCTFail("expected the run to fail")
        } catch is ETLError {}
        let committed = await store.committedLogins
        XCTAssertEqual(committed, validMessages(20).map(\.messageID), "batch 2 committed ...")
        XCTAssertEqual(source.acknowledged, validMessages(10).map(\.messageID), "... but stays in the queue")
    }

    /// A batch whose messages could not be deleted after its commit (access denied, retries spent): the run fails,
    /// and its summary still counts the batch, whose rows are in the tables.
    func testABatchCommittedBeforeItsDeleteFailedIsCountedInTheFailedRunsSummary() async throws {
        let source = FakeSource(validMessages(30), endsWhenEmpty: true, failingAcknowledge: 2)
        let store = FakeWriteSession()
        do {
            _ = try await makeRun(source, configuration(batchSize: 10))
                .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
            XCTFail("expected the run to fail")
        } catch let error as ETLError {
            XCTAssertEqual(error.partialSummary?.loaded, 20)
            XCTAssertEqual(error.partialSummary?.outcome, "failed")
        }
        let committed = await store.committedLogins
        XCTAssertEqual(committed, validMessages(20).map(\.messageID))
        XCTAssertEqual(source.acknowledged, validMessages(10).map(\.messageID))
    }

    func testADeadlockInTheRunIsTriedAgainAndEachMessageLoadsOnce() async throws {
        let source = FakeSource(validMessages(30), endsWhenEmpty: true)
        let store = FakeWriteSession { _, number in number == 2 ? serverError("40P01") : nil }
        let summary = try await makeRun(source, configuration(batchSize: 10))
            .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
        XCTAssertEqual(summary.outcome, "completed")
        XCTAssertEqual(summary.loaded, 30)
        let committed = await store.committedLogins
        XCTAssertEqual(committed, validMessages(30).map(\.messageID))
        XCTAssertEqual(source.acknowledged, validMessages(30).map(\.messageID))
    }

    func testARowTheDatabaseRefusesIsQuarantinedAndAcknowledgedWithItsBatch() async throws {
        let source = FakeSource(validMessages(10), endsWhenEmpty: true)
        let store = FakeWriteSession { attempt, _ in attempt.logins.contains("m7") ? serverError("23502") : nil }
        let summary = try await makeRun(source, configuration(batchSize: 10))
            .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
        XCTAssertEqual(summary.outcome, "completed")
        XCTAssertEqual(summary.loaded, 9)
        XCTAssertEqual(summary.quarantined, 1)
        XCTAssertEqual(source.acknowledged.sorted(), validMessages(10).map(\.messageID).sorted())
    }

    /// Issue 25: the next batch is prepared while one is in flight, and takes the values that one seals as in the
    /// vault, so a value shared by both is sealed once (and the next insert does not meet it).
    func testAValueTheBatchInFlightSealsIsNotSealedAgainByTheNext() async throws {
        let messages = (1...4).map {
            SourceMessage(messageID: "m\($0)", body: validLoginBody(user: "u-\($0)", ip: "192.0.2.\($0)", device: "shared"),
                          sentAt: nil, receiptHandle: nil)
        }
        let store = FakeWriteSession()
        let summary = try await makeRun(FakeSource(messages, endsWhenEmpty: true), configuration(batchSize: 2))
            .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
        XCTAssertEqual(summary.loaded, 4)
        let device = try Tokenizer(key: try fixedTokenKey()).tokenize("shared", as: .deviceID).token
        let commits = await store.commits
        XCTAssertEqual(commits.map(\.logins), [["m1", "m2"], ["m3", "m4"]])
        XCTAssertEqual(commits.map { $0.sealedTokens.filter { $0 == device }.count }, [1, 0])
        XCTAssertEqual(commits.map(\.mustRecheck), [false, false])
    }

    /// Four messages in batches of two, each with device id "shared" but those in `notSharing`, of which m1 is refused
    /// by the database (and quarantined): how many times each commit the fake store saw sealed "shared".
    private func runWithTheFirstRefused(notSharing: Set<Int> = []) async throws -> [Int] {
        let messages = (1...4).map {
            SourceMessage(messageID: "m\($0)", body: validLoginBody(user: "u-\($0)", ip: "192.0.2.\($0)",
                                                                   device: notSharing.contains($0) ? "not-shared" : "shared"),
                          sentAt: nil, receiptHandle: nil)
        }
        let store = FakeWriteSession { attempt, _ in attempt.logins.contains("m1") ? serverError("23514") : nil }
        let summary = try await makeRun(FakeSource(messages, endsWhenEmpty: true), configuration(batchSize: 2))
            .run(store: store, lookup: FakeReadSession(), stop: StopSignal())
        XCTAssertEqual(summary.loaded, 3)
        XCTAssertEqual(summary.quarantined, 1)
        let device = try Tokenizer(key: try fixedTokenKey()).tokenize("shared", as: .deviceID).token
        let commits = await store.commits
        XCTAssertEqual(commits.map(\.logins), [[], ["m2"], ["m3", "m4"]])
        // m2, loaded without m1 (its half of the split), is checked against the vault under the lock; the entry has no
        // login.
        XCTAssertEqual(commits.map(\.mustRecheck), [false, true, false])
        return commits.map { $0.sealedTokens.filter { $0 == device }.count }
    }

    /// ... and when the batch in flight commits without that value (the message that sealed it was refused by the
    /// database and quarantined, and no other message of its batch has it), the next batch is prepared again and seals
    /// it itself.
    func testWhenTheBatchInFlightCommitsWithoutAValueTheNextSealsIt() async throws {
        let sharedSealed = try await runWithTheFirstRefused(notSharing: [2])
        XCTAssertEqual(sharedSealed, [0, 0, 1])
    }

    /// A batch split around a refused row: the half that keeps a message sharing the refused message's value carries
    /// that value (sealed once a batch, with its first message) and seals it, so the half loads.
    func testAHalfCarriesTheValueItSharesWithAQuarantinedMessage() async throws {
        let sharedSealed = try await runWithTheFirstRefused()
        XCTAssertEqual(sharedSealed, [0, 1, 0])
    }

    func testAStopLoadsTheBatchInHandThenEnds() async throws {
        let stop = StopSignal()
        let source = FakeSource(validMessages(200), endsWhenEmpty: false) { number in
            if number == 2 { stop.request() }
        }
        let store = FakeWriteSession()
        let summary = try await makeRun(source, configuration(batchSize: 50, concurrency: 1))
            .run(store: store, lookup: FakeReadSession(), stop: stop)
        XCTAssertEqual(summary.outcome, "interrupted")
        XCTAssertEqual(summary.received, 20)
        XCTAssertEqual(summary.loaded, 20)
        XCTAssertEqual(source.acknowledged, validMessages(20).map(\.messageID), "the batch in hand, committed, deleted")
        XCTAssertEqual(source.receiveRequests.count, 2, "nothing received after the stop")
        XCTAssertEqual(source.remaining, 180)
        let finished = await store.finished
        XCTAssertEqual(finished.map(\.outcome), ["interrupted"])
    }
}
