import Foundation

/// Collects received messages into batches: until a batch is full, old enough to load, the source is drained, the
/// run's message limit is reached, or a stop is requested. Several receive calls run at once (the pollers).
struct BatchCollector {
    let source: any MessageSource
    let configuration: ETLConfiguration
    /// When the last message arrived; a queue empty for `idleExit` seconds since then counts as drained.
    private var lastMessageAt = Date()
    /// Whether the source has nothing more to give.
    private(set) var isExhausted = false

    init(source: any MessageSource, configuration: ETLConfiguration) {
        self.source = source
        self.configuration = configuration
    }

    /// The next batch, or nil when the run should end (drained, limit reached, stop requested).
    /// `received` is how many messages the run has received so far.
    mutating func next(received: Int, stop: StopSignal) async throws -> [SourceMessage]? {
        while !isExhausted && !stop.isRequested {
            if let max = configuration.maxMessages, received >= max { return nil }
            let batch = try await collect(received: received, stop: stop)
            if !batch.isEmpty { return batch }
        }
        return nil
    }

    private mutating func collect(received: Int, stop: StopSignal) async throws -> [SourceMessage] {
        var messages: [SourceMessage] = []
        let started = Date()
        let perCall = source.endsWhenEmpty ? configuration.batchSize : 10
        while messages.count < configuration.batchSize && !stop.isRequested {
            var remaining = configuration.batchSize - messages.count
            if let max = configuration.maxMessages { remaining = min(remaining, max - received - messages.count) }
            if remaining <= 0 { break }
            let calls = source.endsWhenEmpty ? 1 : min(configuration.concurrency, (remaining + perCall - 1) / perCall)
            let round = try await receive(calls: calls, perCall: perCall, remaining: remaining)
            if round.isEmpty {
                if source.endsWhenEmpty { isExhausted = true; break }
                if !messages.isEmpty { break }
                if Date().timeIntervalSince(lastMessageAt) >= configuration.idleExit { isExhausted = true; break }
                continue
            }
            lastMessageAt = Date()
            messages += round
            if Date().timeIntervalSince(started) >= configuration.maxBatchAge { break }
        }
        return messages
    }

    /// `calls` concurrent receives of up to `perCall` messages each, `remaining` in all.
    private func receive(calls: Int, perCall: Int, remaining: Int) async throws -> [SourceMessage] {
        let source = self.source
        return try await withThrowingTaskGroup(of: [SourceMessage].self) { group in
            for call in 0..<calls {
                let want = min(perCall, remaining - call * perCall)
                group.addTask { try await source.receive(maxMessages: want) }
            }
            var all: [SourceMessage] = []
            for try await messages in group { all += messages }
            return all
        }
    }
}
