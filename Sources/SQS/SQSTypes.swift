/// A message received from a queue.
public struct SQSMessage: Sendable, Equatable {
    /// The SQS message id (the ETL's idempotency key).
    public let messageId: String
    /// The handle to delete the message or change its visibility; it changes with every receive.
    public let receiptHandle: String
    /// The body, exactly as sent (its MD5 has been checked).
    public let body: String
    /// System attributes asked for, e.g. `SentTimestamp`, `ApproximateReceiveCount`.
    public let attributes: [String: String]

    /// Creates a message.
    public init(messageId: String, receiptHandle: String, body: String, attributes: [String: String]) {
        self.messageId = messageId
        self.receiptHandle = receiptHandle
        self.body = body
        self.attributes = attributes
    }

    /// `SentTimestamp`: milliseconds since 1970 when SQS accepted the message.
    public var sentTimestampMilliseconds: Int64? { attributes["SentTimestamp"].flatMap { Int64($0) } }
    /// `ApproximateReceiveCount`: how often the message has been received, this time included.
    public var approximateReceiveCount: Int? { attributes["ApproximateReceiveCount"].flatMap { Int($0) } }
}

/// One message of a `SendMessageBatch`.
public struct SQSSendEntry: Sendable, Equatable {
    /// An id unique within the batch (letters, digits, `-`, `_`; at most 80).
    public let id: String
    /// The body.
    public let body: String
    /// Delay before the message becomes visible.
    public let delaySeconds: Int?

    /// Creates an entry.
    public init(id: String, body: String, delaySeconds: Int? = nil) {
        self.id = id
        self.body = body
        self.delaySeconds = delaySeconds
    }
}

/// One message of a `DeleteMessageBatch` or `ChangeMessageVisibilityBatch`.
public struct SQSReceiptEntry: Sendable, Equatable {
    /// An id unique within the batch.
    public let id: String
    /// The receipt handle from the receive.
    public let receiptHandle: String

    /// Creates an entry.
    public init(id: String, receiptHandle: String) {
        self.id = id
        self.receiptHandle = receiptHandle
    }
}

/// A batch entry that SQS refused.
public struct SQSBatchFailure: Sendable, Equatable {
    /// The entry's id in the request.
    public let id: String
    /// The AWS error code, e.g. `ReceiptHandleIsInvalid`.
    public let code: String
    /// The server's message (one line, may be empty).
    public let message: String
    /// Whether the caller's input was at fault (false: SQS's fault, so a retry may succeed).
    public let senderFault: Bool

    /// Creates a failure.
    public init(id: String, code: String, message: String, senderFault: Bool) {
        self.id = id
        self.code = code
        self.message = message
        self.senderFault = senderFault
    }
}

/// The result of a batch call: the ids that succeeded and the entries that failed.
public struct SQSBatchResult: Sendable, Equatable {
    /// Ids of the entries that succeeded.
    public let successfulIds: [String]
    /// Entries that failed, each with its code and message.
    public let failed: [SQSBatchFailure]

    /// Creates a result.
    public init(successfulIds: [String], failed: [SQSBatchFailure]) {
        self.successfulIds = successfulIds
        self.failed = failed
    }
}

/// The result of `SendMessageBatch`.
public struct SQSSendBatchResult: Sendable, Equatable {
    /// Entry id -> message id, for the entries that were sent.
    public let messageIds: [String: String]
    /// Entries that failed.
    public let failed: [SQSBatchFailure]

    /// Creates a result.
    public init(messageIds: [String: String], failed: [SQSBatchFailure]) {
        self.messageIds = messageIds
        self.failed = failed
    }
}

/// Options of `ReceiveMessage`.
public struct SQSReceiveOptions: Sendable {
    /// 1 to 10.
    public var maxMessages: Int
    /// Long polling: 0 to 20 seconds.
    public var waitTimeSeconds: Int
    /// Visibility timeout for the received messages; nil keeps the queue's default.
    public var visibilityTimeout: Int?
    /// System attributes to return.
    public var attributeNames: [String]

    /// Creates options; by default up to 10 messages, a 20-second long poll, `SentTimestamp` and
    /// `ApproximateReceiveCount`.
    public init(maxMessages: Int = 10, waitTimeSeconds: Int = 20, visibilityTimeout: Int? = nil,
                attributeNames: [String] = ["SentTimestamp", "ApproximateReceiveCount"]) {
        self.maxMessages = min(10, max(1, maxMessages))
        self.waitTimeSeconds = min(20, max(0, waitTimeSeconds))
        self.visibilityTimeout = visibilityTimeout
        self.attributeNames = attributeNames
    }
}
