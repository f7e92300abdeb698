import Foundation
import AWS
import Logging
import SQS

/// An SQS queue as a message source: long-polling receives, deletion in batches of ten after commit.
public struct SQSMessageSource: MessageSource {
    public let client: SQSClient
    public let queueURL: String
    /// Long-polling wait of each receive, in seconds (0-20).
    public let waitTimeSeconds: Int
    /// Visibility timeout asked for on receive; nil keeps the queue's.
    public let visibilityTimeout: Int?

    public init(client: SQSClient, queueURL: String, waitTimeSeconds: Int, visibilityTimeout: Int?) {
        self.client = client
        self.queueURL = queueURL
        self.waitTimeSeconds = waitTimeSeconds
        self.visibilityTimeout = visibilityTimeout
    }

    public var label: String { "sqs:" + (URL(string: queueURL)?.lastPathComponent ?? "queue") }
    public var endsWhenEmpty: Bool { false }

    public func receive(maxMessages: Int) async throws -> [SourceMessage] {
        let options = SQSReceiveOptions(
            maxMessages: maxMessages, waitTimeSeconds: waitTimeSeconds, visibilityTimeout: visibilityTimeout)
        return try await client.receiveMessages(queueURL: queueURL, options: options).map { message in
            let sentAt = message.attributes["SentTimestamp"].flatMap(Double.init).map {
                Date(timeIntervalSince1970: $0 / 1000)
            }
            return SourceMessage(
                messageID: message.messageId, body: Array(message.body.utf8), sentAt: sentAt,
                receiptHandle: message.receiptHandle)
        }
    }

    public func acknowledge(_ messages: [SourceMessage]) async throws -> Int {
        var failures = 0
        for entries in Self.receiptBatches(messages) {
            failures += try await client.deleteMessageBatch(queueURL: queueURL, entries: entries).failed.count
        }
        return failures
    }

    /// The receipt handles of `messages`, ten to a batch call (the most SQS takes), each entry named by its place.
    static func receiptBatches(_ messages: [SourceMessage]) -> [[SQSReceiptEntry]] {
        let handles = messages.compactMap(\.receiptHandle)
        return stride(from: 0, to: handles.count, by: 10).map { start in
            handles[start..<min(start + 10, handles.count)].enumerated().map {
                SQSReceiptEntry(id: "m\($0.offset)", receiptHandle: $0.element)
            }
        }
    }

    /// Makes `messages` visible again at once (ChangeMessageVisibilityBatch with a timeout of 0), ten to a call,
    /// four calls at a time, for at most `releaseDeadline` in all; it stops at the first call that fails. What it does
    /// not hand back comes back after its visibility timeout: a run that fails because SQS is unreachable must not
    /// spend hours retrying here before it records its failure.
    public func release(_ messages: [SourceMessage]) async {
        let batches = Self.receiptBatches(messages)
        let client = self.client, queueURL = self.queueURL
        let work = Task {
            await withTaskGroup(of: Bool.self) { group in
                var failed = false
                for (index, batch) in batches.enumerated() {
                    if index >= 4, let succeeded = await group.next(), !succeeded { failed = true }
                    if failed || Task.isCancelled { break }
                    group.addTask {
                        (try? await client.changeMessageVisibilityBatch(
                            queueURL: queueURL, entries: batch, visibilityTimeout: 0)) != nil
                    }
                }
            }
        }
        let deadline = Task {
            try? await Task.sleep(for: Self.releaseDeadline)
            work.cancel()
        }
        await work.value
        deadline.cancel()
    }

    /// How long a failed run may spend handing messages back.
    static let releaseDeadline: Duration = .seconds(30)

    public func approximateDepth() async -> Int? {
        guard let attributes = try? await client.getQueueAttributes(
            queueURL: queueURL, names: ["ApproximateNumberOfMessages"]) else { return nil }
        return attributes["ApproximateNumberOfMessages"].flatMap(Int.init)
    }
}

extension SQSMessageSource {
    /// Builds the source the AWS way (credentials from the default chain, region and endpoint from the environment
    /// and `~/.aws`), finds the queue's URL by name when no URL is given, and checks before the run starts that the
    /// queue answers with these credentials, so that an unreachable endpoint (69), refused credentials (77) or a
    /// missing queue (1) is reported as such rather than as a failed run.
    ///
    /// - Parameters:
    ///   - credentialsProvider: overrides the default chain (tests).
    ///   - environment: the process environment; `PIIVAULT_AWS_REFRESH_LEAD_SECONDS` sets how long before expiry
    ///     temporary credentials are refreshed (default 300).
    public static func resolve(
        queueURL: String?, queueName: String?, endpointURL: String?, wireProtocol: SQSWireProtocol = .query,
        waitTimeSeconds: Int, visibilityTimeout: Int?, logger: Logging.Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        credentialsProvider: (any AWSCredentialsProvider)? = nil
    ) async throws -> SQSMessageSource {
        guard queueURL != nil || queueName != nil else {
            throw SettingsError(
                "no queue given; pass --queue-url URL or --queue-name NAME (or set PIIVAULT_QUEUE_URL), or --from-file FILE")
        }
        let aws = AWSEnvironment(variables: environment,
                                 homeDirectory: environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory())
        let refreshLead = aws["PIIVAULT_AWS_REFRESH_LEAD_SECONDS"]
            .flatMap { TimeInterval($0.trimmingCharacters(in: .whitespaces)) }
            ?? CachingCredentialsProvider.defaultRefreshLeadTime
        let configuration = try SQSConfiguration.resolve(
            environment: aws, queueURL: queueURL, endpointURL: endpointURL, wireProtocol: wireProtocol,
            credentialsProvider: credentialsProvider, refreshLeadTime: refreshLead, logger: logger)
        let client = SQSClient(configuration: configuration, logger: logger)
        let url: String
        if let queueURL {
            url = queueURL
            // The same call the progress line makes; it proves endpoint, credentials and queue before the run.
            _ = try await client.getQueueAttributes(queueURL: url, names: ["ApproximateNumberOfMessages"])
        } else {
            url = try await client.getQueueURL(queueName: queueName!)
        }
        return SQSMessageSource(
            client: client, queueURL: url, waitTimeSeconds: waitTimeSeconds, visibilityTimeout: visibilityTimeout)
    }
}
