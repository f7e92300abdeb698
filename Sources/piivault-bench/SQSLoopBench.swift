import Foundation
import Logging
import NIOConcurrencyHelpers
import SQS

/// The bare SQS loop the ETL is compared with (README, "Benchmarks"): concurrent pollers that receive up to 10 messages and delete
/// them at once, doing nothing else, until the queue stays empty. Its rate is the ceiling for `piivault etl` on the
/// same queue and endpoint (credentials and endpoint come from the environment, as for `etl`).
enum SQSLoopBench {
    /// `sqs-loop QUEUE_URL [CONCURRENCY=4] [IDLE_SECONDS=2]`.
    static func run(_ arguments: [String]) throws {
        guard let queueURL = arguments.first else {
            throw BenchUsage("usage: piivault-bench sqs-loop QUEUE_URL [CONCURRENCY] [IDLE_SECONDS]")
        }
        let concurrency = arguments.count > 1 ? Int(arguments[1]) ?? 4 : 4
        let idle = arguments.count > 2 ? Double(arguments[2]) ?? 2 : 2
        let semaphore = DispatchSemaphore(value: 0)
        let outcome = ResultBox()
        Task {
            do {
                outcome.set(.success(try await loop(queueURL: queueURL, concurrency: concurrency, idleSeconds: idle)))
            } catch {
                outcome.set(.failure(error))
            }
            semaphore.signal()
        }
        semaphore.wait()
        let (count, seconds) = try outcome.get()
        print("bare receive+delete loop: \(count) messages in \(String(format: "%.2f", seconds)) s, "
              + "\(Int((Double(count) / seconds).rounded())) messages/s (\(concurrency) pollers)")
    }

    private static func loop(queueURL: String, concurrency: Int, idleSeconds: Double) async throws -> (Int, Double) {
        let client = SQSClient(configuration: try SQSConfiguration.fromProcessEnvironment(queueURL: queueURL),
                               logger: Logger(label: "piivault-bench"))
        let clock = ContinuousClock()
        let started = clock.now
        let lastMessage = LastMessage(clock.now)
        let counts = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    var count = 0
                    while true {
                        let messages = try await client.receiveMessages(
                            queueURL: queueURL, options: SQSReceiveOptions(maxMessages: 10, waitTimeSeconds: 1))
                        if messages.isEmpty {
                            if clock.now - lastMessage.get() > .milliseconds(Int(idleSeconds * 1000)) { return count }
                            continue
                        }
                        lastMessage.set(clock.now)
                        _ = try await client.deleteMessageBatch(queueURL: queueURL, entries: messages.enumerated().map {
                            SQSReceiptEntry(id: String($0.offset), receiptHandle: $0.element.receiptHandle)
                        })
                        count += messages.count
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        // The time to the last message, not the idle wait after it.
        let elapsed = lastMessage.get() - started
        return (counts, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

private final class LastMessage: Sendable {
    private let instant: NIOLockedValueBox<ContinuousClock.Instant>
    init(_ instant: ContinuousClock.Instant) { self.instant = NIOLockedValueBox(instant) }
    func get() -> ContinuousClock.Instant { instant.withLockedValue { $0 } }
    func set(_ value: ContinuousClock.Instant) { instant.withLockedValue { $0 = max($0, value) } }
}

private final class ResultBox: Sendable {
    private let result = NIOLockedValueBox<Result<(Int, Double), any Error>>(.failure(BenchUsage("not run")))
    func set(_ value: Result<(Int, Double), any Error>) { result.withLockedValue { $0 = value } }
    func get() throws -> (Int, Double) { try result.withLockedValue { $0 }.get() }
}

struct BenchUsage: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
