import Foundation

/// The live counts of a running ETL run, for whoever reports them while it works (the terminal's progress line, the
/// log's periodic line): messages count as received as they arrive, and as loaded as soon as their batch commits.
///
/// It also knows when the run last worked (a message arrived or a batch committed), so that the summary's rate counts
/// the time spent working and not the final wait for the queue to stay empty (`--idle-exit`).
public final class ETLProgressTracker: @unchecked Sendable {
    // @unchecked: every stored property is read and written under `lock`.
    private let lock = NSLock()
    private var started = Date()
    private var received = 0
    private var loaded = 0
    private var quarantined = 0
    private var queueDepth: Int?
    private var lastWorkedAt: Date?

    public init() {}

    /// Starts the clock (the run's start).
    func begin(at date: Date) {
        lock.withLock { started = date }
    }

    /// `count` messages arrived from the source.
    func received(_ count: Int) {
        guard count > 0 else { return }
        lock.withLock {
            received += count
            lastWorkedAt = Date()
        }
    }

    /// A batch committed.
    func committed(_ outcome: LoadOutcome) {
        lock.withLock {
            loaded += outcome.loaded
            quarantined += outcome.quarantined
            lastWorkedAt = Date()
        }
    }

    /// The source's latest estimate of the messages still queued (nil: unknown).
    public func noteQueueDepth(_ depth: Int?) {
        lock.withLock { queueDepth = depth }
    }

    /// When the run last received or committed something; nil before it did either.
    var workEndedAt: Date? { lock.withLock { lastWorkedAt } }

    /// The counts now.
    public var snapshot: ETLProgressSnapshot {
        lock.withLock {
            ETLProgressSnapshot(received: received, loaded: loaded, quarantined: quarantined,
                                seconds: Date().timeIntervalSince(started), queueDepth: queueDepth)
        }
    }
}

/// A running run's counts at one moment.
public struct ETLProgressSnapshot: Sendable, Equatable {
    public var received: Int
    public var loaded: Int
    public var quarantined: Int
    /// Seconds since the run started.
    public var seconds: Double
    /// Approximate messages still queued, when the source knows.
    public var queueDepth: Int?

    /// Messages received per second since the start.
    public var messagesPerSecond: Double { seconds > 0 ? Double(received) / seconds : 0 }

    /// `received 1200, loaded 1000, quarantined 2, 240 messages/s, ~8800 queued, 5 s`: the progress line's and the
    /// periodic log line's text.
    public var line: String {
        var line = String(format: "received %d, loaded %d, quarantined %d, %.0f messages/s", received, loaded,
                          quarantined, messagesPerSecond)
        if let queueDepth { line += ", ~\(queueDepth) queued" }
        return line + String(format: ", %.0f s", seconds)
    }
}

/// The progress report's rhythm: calls `report` with the tracker's counts every `interval` seconds until the task
/// running it is cancelled.
public enum ETLProgressReporter {
    /// The log's default interval between two progress lines, in seconds (`--progress-interval`).
    public static let defaultLogInterval: Double = 30
    /// A terminal's progress line is refreshed every second.
    public static let terminalInterval: Double = 1

    public static func run(every interval: Double, tracker: ETLProgressTracker,
                           report: @Sendable (ETLProgressSnapshot) -> Void) async {
        guard interval > 0 else { return }
        while true {
            do { try await Task.sleep(for: .milliseconds(Int(interval * 1000))) } catch { return }
            report(tracker.snapshot)
        }
    }
}

/// A message source that tells the tracker of every message as it arrives (the collector gathers a whole batch, up
/// to thousands of messages, before the run sees it).
struct CountingMessageSource: MessageSource {
    let base: any MessageSource
    let tracker: ETLProgressTracker

    var label: String { base.label }
    var endsWhenEmpty: Bool { base.endsWhenEmpty }

    func receive(maxMessages: Int) async throws -> [SourceMessage] {
        let messages = try await base.receive(maxMessages: maxMessages)
        tracker.received(messages.count)
        return messages
    }

    func acknowledge(_ messages: [SourceMessage]) async throws -> Int { try await base.acknowledge(messages) }
    func approximateDepth() async -> Int? { await base.approximateDepth() }
}
