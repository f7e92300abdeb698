import Foundation
@testable import SQS
import TestSupport
import XCTest

/// Acceptance 3: the whole message lifecycle against a real `moto_server`, in both protocols.
final class EmulatorTests: XCTestCase {
    func testLifecycleQueryProtocol() async throws { try await lifecycle(.query) }
    func testLifecycleJSONProtocol() async throws { try await lifecycle(.json) }

    private func lifecycle(_ wireProtocol: SQSWireProtocol) async throws {
        let logs = CapturingLogStore()
        let client = try SQSTestEnvironment.emulatorClient(wireProtocol, store: logs)
        let name = SQSTestEnvironment.uniqueQueueName("lifecycle-\(wireProtocol.rawValue)")
        let queueURL = try await client.createQueue(name: name, attributes: ["VisibilityTimeout": "30"])
        let lookedUp = try await client.getQueueURL(queueName: name)
        XCTAssertEqual(lookedUp, queueURL)

        // Bodies with quotes, markup characters, newlines and non-ASCII text must come back byte for byte.
        let bodies = (0..<5).map { index in
            "{\"user_id\": \"u\(index)\", \"note\": \"<a href='x'>&amp; \\\"quoted\\\" é ü 漢字 😀\", \"n\": \(index)}"
        }
        let sent = try await client.sendMessageBatch(
            queueURL: queueURL, entries: bodies.enumerated().map { SQSSendEntry(id: "m\($0.offset)", body: $0.element) })
        XCTAssertEqual(sent.messageIds.count, 5)
        XCTAssertEqual(sent.failed, [])

        let attributes = try await client.getQueueAttributes(queueURL: queueURL)
        XCTAssertEqual(attributes["ApproximateNumberOfMessages"], "5")

        var received: [SQSMessage] = []
        for _ in 0..<5 where received.count < 5 {
            received += try await client.receiveMessages(
                queueURL: queueURL, options: SQSReceiveOptions(maxMessages: 10, waitTimeSeconds: 1, visibilityTimeout: 30))
        }
        XCTAssertEqual(received.count, 5)
        XCTAssertEqual(Set(received.map(\.body)), Set(bodies))
        XCTAssertEqual(Set(received.map(\.messageId)), Set(sent.messageIds.values))
        for message in received {
            XCTAssertNotNil(message.sentTimestampMilliseconds, "SentTimestamp missing")
            XCTAssertEqual(message.approximateReceiveCount, 1)
        }

        // Make two of them visible again at once; one bogus handle is reported per entry.
        let changed = try await client.changeMessageVisibilityBatch(
            queueURL: queueURL,
            entries: [SQSReceiptEntry(id: "c0", receiptHandle: received[0].receiptHandle),
                      SQSReceiptEntry(id: "c1", receiptHandle: received[1].receiptHandle)],
            visibilityTimeout: 0)
        XCTAssertEqual(Set(changed.successfulIds), ["c0", "c1"])
        XCTAssertEqual(changed.failed, [])
        var again: [SQSMessage] = []
        for _ in 0..<5 where again.count < 2 {
            again += try await client.receiveMessages(
                queueURL: queueURL, options: SQSReceiveOptions(waitTimeSeconds: 1, visibilityTimeout: 30))
        }
        XCTAssertEqual(Set(again.map(\.messageId)), Set([received[0].messageId, received[1].messageId]))
        XCTAssertTrue(again.allSatisfy { $0.approximateReceiveCount == 2 })

        // Delete all five (the two re-received with their new handles) plus an invalid handle.
        var entries = [SQSReceiptEntry(id: "bad", receiptHandle: "not-a-real-receipt-handle")]
        entries += again.enumerated().map { SQSReceiptEntry(id: "a\($0.offset)", receiptHandle: $0.element.receiptHandle) }
        entries += received[2...].enumerated().map { SQSReceiptEntry(id: "r\($0.offset)", receiptHandle: $0.element.receiptHandle) }
        let deleted = try await client.deleteMessageBatch(queueURL: queueURL, entries: entries)
        XCTAssertEqual(Set(deleted.successfulIds), Set(entries.map(\.id)).subtracting(["bad"]))
        XCTAssertEqual(deleted.failed.map(\.id), ["bad"])
        XCTAssertEqual(deleted.failed.first?.code, "ReceiptHandleIsInvalid")
        XCTAssertEqual(deleted.failed.first?.senderFault, true)

        let empty = try await client.receiveMessages(queueURL: queueURL, options: SQSReceiveOptions(waitTimeSeconds: 1))
        XCTAssertEqual(empty, [])
        assertNoSecrets(logs)
    }

    /// A message sent by the AWS CLI arrives intact, unicode included.
    func testMessageFromAWSCLI() async throws {
        let logs = CapturingLogStore()
        let endpoint = try TestServices.sqsEndpoint()
        for wireProtocol in [SQSWireProtocol.query, .json] {
            let client = try SQSTestEnvironment.emulatorClient(wireProtocol, store: logs)
            let queueURL = try await client.createQueue(name: SQSTestEnvironment.uniqueQueueName("cli"))
            let body = "{\"user_id\": \"ü-42\", \"ip\": \"10.1.2.3\", \"locale\": \"日本語 \\\"q\\\" <&> 😀\"}"
            let result = try runProcess(
                "aws", ["--endpoint-url", endpoint, "sqs", "send-message", "--queue-url", queueURL,
                        "--message-body", body, "--output", "json"],
                environment: ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                              "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_PROFILE": nil,
                              "AWS_PAGER": ""])
            XCTAssertEqual(result.status, 0, "aws sqs send-message failed: \(result.stderr)")
            let sentId = (try? JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])?["MessageId"]
                as? String
            let messages = try await client.receiveMessages(queueURL: queueURL,
                                                            options: SQSReceiveOptions(waitTimeSeconds: 2))
            XCTAssertEqual(messages.count, 1)
            XCTAssertEqual(messages.first?.body, body)
            XCTAssertEqual(messages.first?.messageId, sentId)
        }
        assertNoSecrets(logs)
    }

    /// Acceptance 4: a queue that does not exist gives a clear error.
    func testNonexistentQueue() async throws {
        for wireProtocol in [SQSWireProtocol.query, .json] {
            let client = try SQSTestEnvironment.emulatorClient(wireProtocol, store: CapturingLogStore())
            do {
                _ = try await client.getQueueURL(queueName: "no-such-queue-\(UUID().uuidString.prefix(8))")
                XCTFail("expected an error")
            } catch let error as SQSError {
                XCTAssertEqual(error.kind, .noSuchQueue, "\(wireProtocol): \(error)")
                print("nonexistent queue (\(wireProtocol)): \(error.message)")
                XCTAssertTrue(error.message.hasPrefix("no such queue"), error.message)
                XCTAssertFalse(error.isRetryable)
            }
            let endpoint = try TestServices.sqsEndpoint()
            do {
                _ = try await client.receiveMessages(queueURL: "\(endpoint)/123456789012/missing-\(UUID().uuidString.prefix(8))",
                                                     options: SQSReceiveOptions(waitTimeSeconds: 0))
                XCTFail("expected an error")
            } catch let error as SQSError {
                XCTAssertEqual(error.kind, .noSuchQueue, "\(wireProtocol): \(error)")
            }
        }
    }

    private func assertNoSecrets(_ logs: CapturingLogStore, file: StaticString = #filePath, line: UInt = #line) {
        for entry in logs.lines {
            XCTAssertFalse(entry.contains(SQSTestEnvironment.secretKey), "secret in log: \(entry)", file: file, line: line)
            XCTAssertFalse(entry.contains("Signature="), "signature in log: \(entry)", file: file, line: line)
        }
    }
}
