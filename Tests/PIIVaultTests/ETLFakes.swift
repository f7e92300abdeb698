import Foundation
@testable import PIIVault
@testable import Postgres
import XCTest

// Fakes of what the ETL's batch logic talks to: the message source, the write session (`ETLWriteSession`, the
// database's side of a batch) and the read session (`ETLReadSession`). They record what was asked of them, so the
// tests can say what was received, committed and acknowledged, and fail on request, so they can say what happens then.

/// A login message body that passes every rule, for user `user`.
func validLoginBody(user: String = "u-1", ip: String = "192.0.2.1", device: String = "device-1") -> [UInt8] {
    Array(#"{"user_id": "\#(user)", "device_type": "android", "ip": "\#(ip)", "device_id": "\#(device)", "locale": null, "app_version": "2.3.0", "create_date": "2024-05-01"}"#.utf8)
}

/// Messages `m1`, `m2`, ... with valid bodies (a user and an ip of their own, so each seals two values).
func validMessages(_ count: Int, from first: Int = 1) -> [SourceMessage] {
    (first..<(first + count)).map { number in
        SourceMessage(messageID: "m\(number)",
                      body: validLoginBody(user: "u-\(number)", ip: "192.0.2.\(number % 250 + 1)", device: "device-\(number)"),
                      sentAt: nil, receiptHandle: "r\(number)")
    }
}

/// A message source holding `messages` in order. A file (`endsWhenEmpty`) or a queue: a queue's empty receive waits
/// `emptyWait` seconds first, as a long poll would.
final class FakeSource: MessageSource, @unchecked Sendable {
    // @unchecked: every stored property after init is read and written under `lock`.
    private let lock = NSLock()
    private var waiting: [SourceMessage]
    private var requests: [Int] = []
    private var acknowledgedIDs: [String] = []
    let endsWhenEmpty: Bool
    let label = "fake:source"
    private let emptyWait: Double
    /// Called at the start of every receive with its number (1, 2, ...): a test requests a stop from here.
    private let onReceive: @Sendable (Int) -> Void
    /// The acknowledge call (1, 2, ...) that throws instead of deleting, if any.
    private let failingAcknowledge: Int?
    private var acknowledgeCalls = 0

    init(_ messages: [SourceMessage], endsWhenEmpty: Bool, emptyWait: Double = 0.01, failingAcknowledge: Int? = nil,
         onReceive: @escaping @Sendable (Int) -> Void = { _ in }) {
        self.waiting = messages
        self.endsWhenEmpty = endsWhenEmpty
        self.emptyWait = emptyWait
        self.failingAcknowledge = failingAcknowledge
        self.onReceive = onReceive
    }

    /// The `maxMessages` of each receive call, in order.
    var receiveRequests: [Int] { lock.withLock { requests } }
    /// Message ids acknowledged (deleted), in order.
    var acknowledged: [String] { lock.withLock { acknowledgedIDs } }
    /// How many messages were never received.
    var remaining: Int { lock.withLock { waiting.count } }

    func receive(maxMessages: Int) async throws -> [SourceMessage] {
        // A collector that never stops polling fails its test instead of hanging it.
        guard receiveRequests.count < 2_000 else { throw FakeSourceError.pollingNeverEnded }
        let (number, taken): (Int, [SourceMessage]) = lock.withLock {
            requests.append(maxMessages)
            let taken = Array(waiting.prefix(maxMessages))
            waiting.removeFirst(taken.count)
            return (requests.count, taken)
        }
        onReceive(number)
        if taken.isEmpty && !endsWhenEmpty { try await Task.sleep(nanoseconds: UInt64(emptyWait * 1e9)) }
        return taken
    }

    func acknowledge(_ messages: [SourceMessage]) async throws -> Int {
        let fails = lock.withLock { () -> Bool in
            acknowledgeCalls += 1
            if acknowledgeCalls == failingAcknowledge { return true }
            acknowledgedIDs += messages.map(\.messageID)
            return false
        }
        if fails { throw FakeSourceError.acknowledgeRefused }
        return 0
    }

    func approximateDepth() async -> Int? { remaining }
}

enum FakeSourceError: Error { case pollingNeverEnded, acknowledgeRefused }

/// One `insert` asked of the fake write session: what the encoded batch held, read back from its COPY text.
struct InsertAttempt: Sendable, Equatable {
    /// Message ids of the logins, in batch order.
    var logins: [String]
    /// Message ids and reasons of the quarantine entries.
    var quarantined: [String: String]
    /// Tokens of the values sealed.
    var sealedTokens: [String]
    /// Whether the insert was told to check its tombstones and references whatever the erasure count says.
    var mustRecheck: Bool
    /// Whether the fake committed it.
    var committed = false

    init(_ batch: EncodedBatch) {
        mustRecheck = batch.mustRecheck
        logins = Self.rows(batch.logins).map { $0[0] }
        quarantined = Dictionary(uniqueKeysWithValues: Self.rows(batch.quarantine).map { ($0[0], $0[1]) })
        sealedTokens = Self.rows(batch.secrets).map { $0[0] }
    }

    /// COPY text rows as columns (the fakes' ids and reasons have nothing to unescape).
    private static func rows(_ writer: CopyTextWriter) -> [[String]] {
        String(decoding: writer.bytes, as: UTF8.self).split(separator: "\n")
            .map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
    }
}

/// A write session that commits in memory. `failure` decides, per attempt (numbered from 1), whether the insert
/// fails and with what; a failed insert commits nothing, as the real transaction rolls back.
actor FakeWriteSession: ETLWriteSession {
    private let failure: @Sendable (_ attempt: InsertAttempt, _ number: Int) -> (any Error)?
    private(set) var attempts: [InsertAttempt] = []
    private(set) var dataKeysStored = 0
    private(set) var finished: [ETLSummary] = []
    private(set) var runsBegun = 0

    init(failure: @escaping @Sendable (_ attempt: InsertAttempt, _ number: Int) -> (any Error)? = { _, _ in nil }) {
        self.failure = failure
    }

    /// The attempts that committed.
    var commits: [InsertAttempt] { attempts.filter(\.committed) }
    /// Message ids of every login committed, in commit order.
    var committedLogins: [String] { commits.flatMap(\.logins) }
    /// Every quarantine entry committed: message id to reason.
    var committedQuarantine: [String: String] {
        commits.reduce(into: [:]) { all, attempt in all.merge(attempt.quarantined) { first, _ in first } }
    }

    func beginRun(source: String, keys: RunKeys) async throws -> Int {
        runsBegun += 1
        return 41
    }

    func lastVaultKeyID() async throws -> String? { nil }

    var erasureCountIsKept: Bool { true }

    func checkTokenKey(version: Int, keyID: String) async throws {}

    func finishRun(_ id: Int, summary: ETLSummary) async {
        finished.append(summary)
    }

    func storeDataKey(_ key: SealedDataKey) async throws -> Int {
        dataKeysStored += 1
        return dataKeysStored
    }

    func insert(_ batch: EncodedBatch, dataKeyID: Int) async throws -> LoadOutcome {
        var attempt = InsertAttempt(batch)
        if let error = failure(attempt, attempts.count + 1) {
            attempts.append(attempt)
            throw error
        }
        attempt.committed = true
        attempts.append(attempt)
        var outcome = LoadOutcome()
        outcome.loaded = attempt.logins.count
        outcome.quarantined = attempt.quarantined.count
        outcome.valuesSealed = attempt.sealedTokens.count
        outcome.tokens = batch.tokens
        outcome.suppressed = batch.suppressed
        return outcome
    }
}

/// A read session over fixed answers: the forgotten users' hashes and the tokens the vault holds.
final class FakeReadSession: ETLReadSession, @unchecked Sendable {
    // @unchecked: `asked` is only read and written under `lock`; the rest is immutable.
    private let lock = NSLock()
    private let forgotten: Set<String>
    private let held: Set<String>
    private var asked: [[String]] = []

    init(forgotten: Set<String> = [], held: Set<String> = []) {
        self.forgotten = forgotten
        self.held = held
    }

    /// The token lists `vaultHolds` was asked about, in order.
    var vaultQueries: [[String]] { lock.withLock { asked } }

    func tombstoned(_ hashes: [String]) async throws -> Set<String> { forgotten.intersection(hashes) }

    func vaultHolds(_ tokens: [String]) async throws -> Set<String> {
        lock.withLock { asked.append(tokens) }
        return held.intersection(tokens)
    }
}

/// A server error with `sqlState`, as libpq would report it.
func serverError(_ sqlState: String, column: String? = nil) -> PostgresError {
    PostgresError(kind: .server, sqlState: sqlState, message: "fake server error", column: column)
}
