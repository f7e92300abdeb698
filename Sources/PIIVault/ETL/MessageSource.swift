import Foundation

/// One message as received, before parsing.
public struct SourceMessage: Sendable {
    /// The idempotency key: the SQS MessageId, or an id derived from a file's line.
    public let messageID: String
    /// The body's bytes exactly as received.
    public let body: [UInt8]
    /// When it was sent (SQS `SentTimestamp`), which gives `create_date` when the message has none.
    public let sentAt: Date?
    /// The SQS receipt handle needed to delete it; nil for files.
    public let receiptHandle: String?

    public init(messageID: String, body: [UInt8], sentAt: Date?, receiptHandle: String?) {
        self.messageID = messageID
        self.body = body
        self.sentAt = sentAt
        self.receiptHandle = receiptHandle
    }
}

/// Where an ETL run reads messages from: an SQS queue or a newline-delimited JSON file.
public protocol MessageSource: Sendable {
    /// A short description for the run history (`sqs:login-queue`, `file:/path`). No credentials.
    var label: String { get }
    /// True when an empty receive means the source is exhausted (a file), false when it may just be idle (a queue).
    var endsWhenEmpty: Bool { get }
    /// Up to `maxMessages` messages; empty when none arrived within the source's wait.
    func receive(maxMessages: Int) async throws -> [SourceMessage]
    /// Removes messages whose batch has committed. Returns how many could not be removed (they will be
    /// redelivered and skipped as duplicates).
    func acknowledge(_ messages: [SourceMessage]) async throws -> Int
    /// Approximate number of messages still waiting, for progress; nil when unknown.
    func approximateDepth() async -> Int?
    /// Hands back messages received and not loaded (a run that fails), so that the next run can take them at once
    /// rather than after the visibility timeout. Best effort: what cannot be handed back comes back by itself then.
    func release(_ messages: [SourceMessage]) async
}

extension MessageSource {
    /// Nothing to hand back: a file is read again from the start by the next run.
    public func release(_ messages: [SourceMessage]) async {}
}
