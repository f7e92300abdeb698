import AWS
import Foundation
import Logging
import SigV4

/// Amazon SQS client: the operations the ETL needs, in the query/XML protocol (default) or the JSON protocol,
/// signed with SigV4 using the credentials provider's current credentials, with retries, timeouts and per-entry
/// batch results.
///
/// Works with real AWS, current LocalStack, old LocalStack 0.14 (query protocol only) and moto.
public struct SQSClient: Sendable {
    /// The resolved settings.
    public let configuration: SQSConfiguration
    private let transport: any HTTPTransport
    private let logger: Logger
    private let now: @Sendable () -> Date

    /// The API version of the query protocol.
    static let apiVersion = "2012-11-05"

    /// The largest ReceiveMessage answer SQS may legally send, with room to spare: every one of the 10 messages at
    /// the 1 MiB maximum (body and message attributes together), each byte escaping to at most 6 bytes (`&quot;` in
    /// XML, `\u001f` in JSON), plus each message's id, receipt handle, checksums and system attributes, plus the
    /// envelope. About 60 MiB: a run needs it only while a batch is read.
    static let maxResponseBytes = maxResponseBytes(messages: 10, maxMessageBytes: 1024 * 1024)

    /// The answer limit for `messages` messages of at most `maxMessageBytes` each (see ``maxResponseBytes``).
    static func maxResponseBytes(messages: Int, maxMessageBytes: Int) -> Int {
        let worstEscapeExpansion = 6
        let perMessageMarkup = 16 * 1024  // id, receipt handle (about 1 KiB), MD5s, system attributes, tags
        let envelope = 16 * 1024
        return messages * (maxMessageBytes * worstEscapeExpansion + perMessageMarkup) + envelope
    }

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - transport: how requests are sent (default: the configuration's transport; a fake in unit tests).
    ///   - logger: where calls and retries are logged (debug and warning); never with credentials or bodies.
    ///   - now: the clock used for signatures (injectable for tests).
    public init(configuration: SQSConfiguration, transport: (any HTTPTransport)? = nil,
                logger: Logger, now: @escaping @Sendable () -> Date = { Date() }) {
        self.configuration = configuration
        self.transport = transport ?? configuration.transport
        self.logger = logger
        self.now = now
    }

    // MARK: Operations

    /// `GetQueueUrl`: the URL of a queue by name.
    public func getQueueURL(queueName: String) async throws -> String {
        let answer = try await call("GetQueueUrl", context: "GetQueueUrl for queue \"\(queueName)\"",
                                    query: [("QueueName", queueName)], json: ["QueueName": queueName])
        guard let url = answer.xml?.descendants("QueueUrl").first?.text ?? answer.json?["QueueUrl"] as? String else {
            throw invalidResponse("GetQueueUrl", "no QueueUrl")
        }
        return url.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `CreateQueue`: creates a queue (or returns the URL of an existing one with the same attributes).
    public func createQueue(name: String, attributes: [String: String] = [:]) async throws -> String {
        var query: [(String, String)] = [("QueueName", name)]
        for (index, key) in attributes.keys.sorted().enumerated() {
            query.append(("Attribute.\(index + 1).Name", key))
            query.append(("Attribute.\(index + 1).Value", attributes[key]!))
        }
        var json: [String: Any] = ["QueueName": name]
        if !attributes.isEmpty { json["Attributes"] = attributes }
        let answer = try await call("CreateQueue", context: "CreateQueue \"\(name)\"", query: query, json: json)
        guard let url = answer.xml?.descendants("QueueUrl").first?.text ?? answer.json?["QueueUrl"] as? String else {
            throw invalidResponse("CreateQueue", "no QueueUrl")
        }
        return url.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// `SendMessageBatch`: up to 10 messages; each sent body's MD5 is checked against SQS's answer.
    public func sendMessageBatch(queueURL: String, entries: [SQSSendEntry]) async throws -> SQSSendBatchResult {
        var query: [(String, String)] = [("QueueUrl", queueURL)]
        var jsonEntries: [[String: Any]] = []
        for (index, entry) in entries.enumerated() {
            let prefix = "SendMessageBatchRequestEntry.\(index + 1)."
            query.append((prefix + "Id", entry.id))
            query.append((prefix + "MessageBody", entry.body))
            var jsonEntry: [String: Any] = ["Id": entry.id, "MessageBody": entry.body]
            if let delay = entry.delaySeconds {
                query.append((prefix + "DelaySeconds", String(delay)))
                jsonEntry["DelaySeconds"] = delay
            }
            jsonEntries.append(jsonEntry)
        }
        let answer = try await call("SendMessageBatch", context: "SendMessageBatch to \(queueURL)", query: query,
                                    json: ["QueueUrl": queueURL, "Entries": jsonEntries])
        var successful: [(id: String, messageId: String, md5: String?)] = []
        if let xml = answer.xml {
            for entry in xml.descendants("SendMessageBatchResultEntry") {
                successful.append((entry.childText("Id") ?? "", entry.childText("MessageId") ?? "",
                                   entry.childText("MD5OfMessageBody")))
            }
        } else if let json = answer.json {
            for entry in json["Successful"] as? [[String: Any]] ?? [] {
                successful.append((entry["Id"] as? String ?? "", entry["MessageId"] as? String ?? "",
                                   entry["MD5OfMessageBody"] as? String))
            }
        }
        let bodies = Dictionary(entries.map { ($0.id, $0.body) }, uniquingKeysWith: { first, _ in first })
        var messageIds: [String: String] = [:]
        for entry in successful {
            if let md5 = entry.md5, let body = bodies[entry.id], md5.lowercased() != MD5.hex(Array(body.utf8)) {
                throw SQSError(kind: .checksumMismatch,
                               message: "SendMessageBatch to \(queueURL): SQS reported a different MD5 for entry \(entry.id) than the body sent; the message may be corrupted in transit, check proxies between here and SQS")
            }
            messageIds[entry.id] = entry.messageId
        }
        return SQSSendBatchResult(messageIds: messageIds, failed: batchFailures(answer))
    }

    /// `ReceiveMessage`: up to 10 messages, long polling, with the attributes asked for; every body's
    /// `MD5OfBody` is verified.
    public func receiveMessages(queueURL: String, options: SQSReceiveOptions = SQSReceiveOptions()) async throws
        -> [SQSMessage] {
        var query: [(String, String)] = [
            ("QueueUrl", queueURL), ("MaxNumberOfMessages", String(options.maxMessages)),
            ("WaitTimeSeconds", String(options.waitTimeSeconds)),
        ]
        var json: [String: Any] = [
            "QueueUrl": queueURL, "MaxNumberOfMessages": options.maxMessages,
            "WaitTimeSeconds": options.waitTimeSeconds,
        ]
        if let visibility = options.visibilityTimeout {
            query.append(("VisibilityTimeout", String(visibility)))
            json["VisibilityTimeout"] = visibility
        }
        // `AttributeName.N` is what every implementation (LocalStack 0.14 included) understands.
        for (index, name) in options.attributeNames.enumerated() {
            query.append(("AttributeName.\(index + 1)", name))
        }
        if !options.attributeNames.isEmpty { json["AttributeNames"] = options.attributeNames }
        // SQS hides what it hands out: once the request may have arrived, a lost answer must not be retried (the
        // retry would find those messages hidden and report an empty queue).
        let answer = try await call("ReceiveMessage", context: "ReceiveMessage from \(queueURL)", query: query,
                                    json: json, extraTimeout: .seconds(options.waitTimeSeconds),
                                    retryOnceDelivered: false)
        var messages: [SQSMessage] = []
        var checksums: [String?] = []
        if let xml = answer.xml {
            for node in xml.descendants("Message") {
                var attributes: [String: String] = [:]
                for attribute in node.children("Attribute") {
                    if let name = attribute.childText("Name") { attributes[name] = attribute.childText("Value") ?? "" }
                }
                messages.append(SQSMessage(messageId: node.childText("MessageId") ?? "",
                                           receiptHandle: node.childText("ReceiptHandle") ?? "",
                                           body: node.childText("Body") ?? "", attributes: attributes))
                checksums.append(node.childText("MD5OfBody"))
            }
        } else if let json = answer.json {
            for item in json["Messages"] as? [[String: Any]] ?? [] {
                var attributes: [String: String] = [:]
                for (key, value) in item["Attributes"] as? [String: Any] ?? [:] { attributes[key] = "\(value)" }
                messages.append(SQSMessage(messageId: item["MessageId"] as? String ?? "",
                                           receiptHandle: item["ReceiptHandle"] as? String ?? "",
                                           body: item["Body"] as? String ?? "", attributes: attributes))
                checksums.append(item["MD5OfBody"] as? String)
            }
        }
        for (message, checksum) in zip(messages, checksums) {
            guard !message.messageId.isEmpty, !message.receiptHandle.isEmpty else {
                throw invalidResponse("ReceiveMessage", "a message without MessageId or ReceiptHandle")
            }
            if let checksum, checksum.lowercased() != MD5.hex(Array(message.body.utf8)) {
                throw SQSError(kind: .checksumMismatch,
                               message: "ReceiveMessage from \(queueURL): message \(message.messageId) does not match its MD5OfBody; it will be redelivered after its visibility timeout, check proxies between here and SQS")
            }
        }
        return messages
    }

    /// `DeleteMessageBatch`: deletes up to 10 messages; refused entries (e.g. an expired receipt handle) are
    /// reported per entry, the others are deleted.
    public func deleteMessageBatch(queueURL: String, entries: [SQSReceiptEntry]) async throws -> SQSBatchResult {
        var query: [(String, String)] = [("QueueUrl", queueURL)]
        for (index, entry) in entries.enumerated() {
            query.append(("DeleteMessageBatchRequestEntry.\(index + 1).Id", entry.id))
            query.append(("DeleteMessageBatchRequestEntry.\(index + 1).ReceiptHandle", entry.receiptHandle))
        }
        let json: [String: Any] = [
            "QueueUrl": queueURL,
            "Entries": entries.map { ["Id": $0.id, "ReceiptHandle": $0.receiptHandle] },
        ]
        let answer = try await call("DeleteMessageBatch", context: "DeleteMessageBatch on \(queueURL)", query: query,
                                    json: json)
        return SQSBatchResult(successfulIds: successfulIds(answer, entryName: "DeleteMessageBatchResultEntry"),
                              failed: batchFailures(answer))
    }

    /// `ChangeMessageVisibilityBatch`: sets the visibility timeout of up to 10 received messages (0 makes them
    /// visible again at once); refused entries are reported per entry.
    public func changeMessageVisibilityBatch(queueURL: String, entries: [SQSReceiptEntry], visibilityTimeout: Int)
        async throws -> SQSBatchResult {
        var query: [(String, String)] = [("QueueUrl", queueURL)]
        for (index, entry) in entries.enumerated() {
            let prefix = "ChangeMessageVisibilityBatchRequestEntry.\(index + 1)."
            query.append((prefix + "Id", entry.id))
            query.append((prefix + "ReceiptHandle", entry.receiptHandle))
            query.append((prefix + "VisibilityTimeout", String(visibilityTimeout)))
        }
        let json: [String: Any] = [
            "QueueUrl": queueURL,
            "Entries": entries.map {
                ["Id": $0.id, "ReceiptHandle": $0.receiptHandle, "VisibilityTimeout": visibilityTimeout] as [String: Any]
            },
        ]
        let answer = try await call("ChangeMessageVisibilityBatch",
                                    context: "ChangeMessageVisibilityBatch on \(queueURL)", query: query, json: json)
        return SQSBatchResult(
            successfulIds: successfulIds(answer, entryName: "ChangeMessageVisibilityBatchResultEntry"),
            failed: batchFailures(answer))
    }

    /// `GetQueueAttributes`, e.g. `ApproximateNumberOfMessages` and `ApproximateNumberOfMessagesNotVisible` for
    /// progress. `All` returns every attribute.
    public func getQueueAttributes(
        queueURL: String,
        names: [String] = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                           "ApproximateNumberOfMessagesDelayed"]
    ) async throws -> [String: String] {
        var query: [(String, String)] = [("QueueUrl", queueURL)]
        for (index, name) in names.enumerated() { query.append(("AttributeName.\(index + 1)", name)) }
        let answer = try await call("GetQueueAttributes", context: "GetQueueAttributes of \(queueURL)", query: query,
                                    json: ["QueueUrl": queueURL, "AttributeNames": names])
        var attributes: [String: String] = [:]
        if let xml = answer.xml {
            for attribute in xml.descendants("Attribute") {
                if let name = attribute.childText("Name") { attributes[name] = attribute.childText("Value") ?? "" }
            }
        } else if let json = answer.json {
            for (key, value) in json["Attributes"] as? [String: Any] ?? [:] { attributes[key] = "\(value)" }
        }
        return attributes
    }

    // MARK: Answers

    /// A decoded successful answer: an XML tree (query protocol) or a JSON object (JSON protocol).
    struct Answer {
        var xml: XMLElementNode?
        var json: [String: Any]?
        /// The credentials the request was signed with (to scrub them from server text).
        var credentials: AWSCredentials?
    }

    private func successfulIds(_ answer: Answer, entryName: String) -> [String] {
        if let xml = answer.xml { return xml.descendants(entryName).compactMap { $0.childText("Id") } }
        return (answer.json?["Successful"] as? [[String: Any]] ?? []).compactMap { $0["Id"] as? String }
    }

    private func batchFailures(_ answer: Answer) -> [SQSBatchFailure] {
        if let xml = answer.xml {
            return xml.descendants("BatchResultErrorEntry").map { entry in
                SQSBatchFailure(id: entry.childText("Id") ?? "", code: entry.childText("Code") ?? "",
                                message: redact(entry.childText("Message") ?? "", credentials: answer.credentials),
                                senderFault: (entry.childText("SenderFault") ?? "").lowercased() == "true")
            }
        }
        return (answer.json?["Failed"] as? [[String: Any]] ?? []).map { entry in
            let senderFault = entry["SenderFault"] as? Bool ?? ((entry["SenderFault"] as? String) == "true")
            return SQSBatchFailure(id: entry["Id"] as? String ?? "", code: entry["Code"] as? String ?? "",
                                   message: redact(entry["Message"] as? String ?? "", credentials: answer.credentials),
                                   senderFault: senderFault)
        }
    }

    private func invalidResponse(_ action: String, _ what: String) -> SQSError {
        SQSError(kind: .invalidResponse,
                 message: "\(action) at \(configuration.endpoint.absoluteString): unexpected answer (\(what)); check that the endpoint is SQS and that the protocol (\(configuration.wireProtocol.rawValue)) is supported")
    }

    // MARK: Requests

    /// An HTTP request ready to send: the signed headers and the body.
    struct PreparedRequest {
        var url: URL
        var headers: [(name: String, value: String)]
        var body: [UInt8]
    }

    /// Builds and signs the request for an action in the configured protocol.
    func prepare(action: String, query: [(String, String)], json: [String: Any], date: Date,
                 credentials: SigV4.Credentials) throws -> PreparedRequest {
        var headers: [(name: String, value: String)]
        let body: [UInt8]
        switch configuration.wireProtocol {
        case .query:
            let parameters = [("Action", action), ("Version", Self.apiVersion)] + query
            body = Array(parameters.map { SigV4.uriEncode($0.0) + "=" + SigV4.uriEncode($0.1) }
                .joined(separator: "&").utf8)
            headers = [(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")]
        case .json:
            body = Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))
            headers = [
                (name: "Content-Type", value: "application/x-amz-json-1.0"),
                (name: "X-Amz-Target", value: "AmazonSQS.\(action)"),
            ]
        }
        let signed = SigV4.sign(method: "POST", url: configuration.endpoint, headers: headers,
                                payloadHash: SigV4.hexSHA256(body), credentials: credentials,
                                region: configuration.region, service: "sqs", date: date)
        return PreparedRequest(url: configuration.endpoint, headers: signed, body: body)
    }

    /// Sends one action with retries; returns the decoded answer or throws an ``SQSError`` (or the credentials
    /// provider's ``AWSError``).
    ///
    /// - Parameter retryOnceDelivered: whether a call whose answer was lost after the request may have reached SQS
    ///   may be sent again (false for ReceiveMessage, which hides what it hands out).
    private func call(_ action: String, context: String, query: [(String, String)], json: [String: Any],
                      extraTimeout: Duration = .zero, retryOnceDelivered: Bool = true) async throws -> Answer {
        let policy = configuration.retry
        let clock = ContinuousClock()
        let started = clock.now
        // A long poll's own wait does not eat into the retry budget.
        let deadline = started + policy.totalDeadline + extraTimeout
        var attempt = 0
        var refreshedAfterExpiry = false
        while true {
            attempt += 1
            let remaining = deadline - clock.now
            // Each attempt asks for the current credentials and is signed afresh: a retry after minutes must carry
            // neither a stale date nor keys that have since been replaced.
            let credentials = try await configuration.credentialsProvider.credentials()
            let request = try prepare(action: action, query: query, json: json, date: now(),
                                      credentials: credentials.signing)
            let attemptTimeout = min(configuration.callTimeout + extraTimeout, remaining)
            let error: SQSError
            do {
                let response = try await transport.send(
                    HTTPRequest(method: "POST", url: request.url, headers: request.headers, body: request.body,
                                maxResponseBytes: Self.maxResponseBytes),
                    timeout: attemptTimeout)
                logger.debug("SQS call", metadata: ["action": "\(action)", "attempt": "\(attempt)",
                                                    "status": "\(response.status)"])
                if (200..<300).contains(response.status) {
                    var answer = try decode(action: action, bytes: response.body)
                    answer.credentials = credentials
                    return answer
                }
                error = errorFromAnswer(response, context: context, credentials: credentials)
            } catch let failure as SQSError {
                error = failure
            } catch is CancellationError {
                throw CancellationError()
            } catch let failure as HTTPTransportError {
                if !retryOnceDelivered && failure.requestMayHaveArrived {
                    throw lostAnswer(failure, context: context, credentials: credentials)
                }
                error = transportError(failure, context: context, credentials: credentials)
            }
            // Expired temporary credentials: refresh at once and try again, once.
            if error.isExpiredToken && !refreshedAfterExpiry {
                refreshedAfterExpiry = true
                logger.info("SQS refused expired credentials; refreshing them and retrying",
                            metadata: ["action": "\(action)", "provider": "\(credentials.source)"])
                await configuration.credentialsProvider.invalidate()
                continue
            }
            guard error.isRetryable else { throw error }
            let elapsed = clock.now - started
            // Full jitter: a random pause between zero and the capped exponential ceiling.
            let ceiling = min(policy.maxDelay, policy.baseDelay * (1 << min(attempt - 1, 20)))
            let pause = Duration.nanoseconds(Int64.random(in: 0...max(0, Self.nanoseconds(ceiling))))
            let timeLeft = deadline - clock.now
            if attempt >= policy.maxAttempts || timeLeft <= pause + .milliseconds(1) {
                throw SQSError(
                    kind: error.kind,
                    message: "\(error.message) (gave up after \(attempt) attempt\(attempt == 1 ? "" : "s") in \(Self.seconds(elapsed)))",
                    awsErrorCode: error.awsErrorCode, httpStatus: error.httpStatus)
            }
            logger.warning("SQS call failed, retrying", metadata: [
                "action": "\(action)", "attempt": "\(attempt)", "error": "\(error.message)",
                "pause_ms": "\(Self.nanoseconds(pause) / 1_000_000)",
            ])
            try await Task.sleep(for: pause)
        }
    }

    private func decode(action: String, bytes: [UInt8]) throws -> Answer {
        switch configuration.wireProtocol {
        case .query:
            guard let tree = XMLElementNode.parse(bytes) else { throw invalidResponse(action, "not well-formed XML") }
            return Answer(xml: tree, json: nil)
        case .json:
            if bytes.isEmpty { return Answer(xml: nil, json: [:]) }
            guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                throw invalidResponse(action, "not a JSON object")
            }
            return Answer(xml: nil, json: object)
        }
    }

    /// Reads the error code and message of an error answer, whatever its format (XML or JSON).
    private func errorFromAnswer(_ response: HTTPResponse, context: String, credentials: AWSCredentials) -> SQSError {
        let status = response.status, bytes = response.body
        var code: String?
        var text: String?
        if let tree = XMLElementNode.parse(bytes) {
            code = tree.descendants("Code").first?.text
            text = tree.descendants("Message").first?.text
        } else if let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] {
            if let type = object["__type"] as? String ?? object["code"] as? String {
                // `com.amazonaws.sqs#QueueDoesNotExist` -> `QueueDoesNotExist`.
                code = type.split(separator: "#").last.map(String.init)
            }
            text = object["message"] as? String ?? object["Message"] as? String
        }
        // `x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender` carries the query-protocol code.
        if let queryError = response.header("x-amzn-query-error"),
           let queryCode = queryError.split(separator: ";").first, !queryCode.isEmpty,
           code == nil || SQSError.noSuchQueueCodes.contains(String(queryCode)) {
            code = String(queryCode)
        }
        return SQSError.fromAWS(code: code?.trimmingCharacters(in: .whitespacesAndNewlines),
                                serverMessage: text.map { redact($0, credentials: credentials) }, status: status,
                                context: context, credentialsSource: credentials.source)
    }

    private func transportError(_ error: HTTPTransportError, context: String, credentials: AWSCredentials)
        -> SQSError {
        let endpoint = configuration.endpoint.absoluteString
        let detail = redact(error.detail, credentials: credentials)
        switch error.kind {
        case .timedOut:
            return SQSError(kind: .timeout,
                            message: "\(context): SQS at \(endpoint) did not answer in time (\(detail)); check the endpoint and the network, or raise the timeout")
        case .responseTooLarge:
            return SQSError(kind: .invalidResponse,
                            message: "\(context): the answer from \(endpoint) is larger than any SQS answer can be (\(detail)); check that the endpoint is SQS")
        case .tlsFailed:
            return SQSError(kind: .tlsVerification,
                            message: "\(context): TLS verification of SQS at \(endpoint) failed (\(detail)); \(error.tlsAdvice)")
        case .connectFailed where error.detail.contains("UnknownHost"):
            return SQSError(kind: .unknownHost,
                            message: "\(context): cannot reach SQS at \(endpoint): its host name does not resolve (\(detail)); give the endpoint of the SQS to use (AWS_ENDPOINT_URL_SQS or the queue URL; for AWS itself, the region in AWS_REGION) or check the network's DNS")
        case .connectFailed, .failed:
            return SQSError(kind: .connection,
                            message: "\(context): cannot reach SQS at \(endpoint) (\(detail)); check the endpoint (AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL or the queue URL) and the network")
        }
    }

    /// The error for a receive whose answer was lost after SQS may have handed out (and hidden) messages. Not
    /// retryable: a retry would find them hidden and report an empty queue.
    private func lostAnswer(_ error: HTTPTransportError, context: String, credentials: AWSCredentials) -> SQSError {
        let detail = redact(error.detail, credentials: credentials)
        let what = error.kind == .responseTooLarge ? "its answer was larger than any SQS answer can be"
            : error.kind == .timedOut ? "no answer came in time" : "the answer was lost"
        return SQSError(
            kind: .lostReceive,
            message: "\(context): \(what) (\(detail)) after SQS may have handed out messages; they stay hidden until their visibility timeout ends and a later run loads them; check the endpoint and the network")
    }

    /// One line of server or library text with every credential removed and the length bounded.
    func redact(_ text: String, credentials: AWSCredentials?) -> String {
        var line = text.split(whereSeparator: { $0.isNewline }).first.map(String.init) ?? ""
        for secret in credentials?.secrets ?? [] {
            line = line.replacingOccurrences(of: secret, with: "<redacted>")
        }
        if let range = line.range(of: "Signature=") {
            line = line[..<range.upperBound] + "<redacted>"
        }
        if line.count > 300 { line = String(line.prefix(300)) + "..." }
        return line.trimmingCharacters(in: .whitespaces)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 { duration.nanoseconds }

    static func seconds(_ duration: Duration) -> String {
        String(format: "%.1fs", Double(nanoseconds(duration)) / 1e9)
    }
}
