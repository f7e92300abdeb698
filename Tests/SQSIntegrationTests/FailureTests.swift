import Foundation
@testable import SQS
import SigV4
import TestSupport
import XCTest

/// Acceptance 4: unreachable endpoints and server errors are retried within the configured limits.
final class FailureTests: XCTestCase {
    private func client(endpoint: String, attempts: Int, deadline: Duration, callTimeout: Duration = .seconds(2),
                        store: CapturingLogStore) -> SQSClient {
        let configuration = SQSConfiguration(
            credentials: SigV4.Credentials(accessKeyId: "AK", secretAccessKey: SQSTestEnvironment.secretKey,
                                           sessionToken: "SESSIONTOKEN-never-logged"),
            region: "us-east-1", endpoint: URL(string: endpoint)!,
            retry: SQSRetryPolicy(maxAttempts: attempts, baseDelay: .milliseconds(50), maxDelay: .milliseconds(400),
                                  totalDeadline: deadline),
            callTimeout: callTimeout)
        return SQSClient(configuration: configuration, logger: SQSTestEnvironment.logger(store))
    }

    func testUnreachableEndpointIsRetriedThenFailsInTime() async throws {
        let port = try SQSTestEnvironment.closedPort()
        let logs = CapturingLogStore()
        let client = client(endpoint: "http://127.0.0.1:\(port)", attempts: 3, deadline: .seconds(6),
                            callTimeout: .seconds(1), store: logs)
        let started = ContinuousClock.now
        do {
            _ = try await client.getQueueAttributes(queueURL: "http://127.0.0.1:\(port)/000000000000/q")
            XCTFail("expected an error")
        } catch let error as SQSError {
            let elapsed = ContinuousClock.now - started
            print("unreachable endpoint: \(error.message) [\(elapsed)]")
            XCTAssertTrue([.connection, .timeout].contains(error.kind), "\(error)")
            XCTAssertTrue(error.message.contains("127.0.0.1:\(port)"), error.message)
            XCTAssertTrue(error.message.contains("gave up after"), error.message)
            XCTAssertLessThan(elapsed, .seconds(7), "took \(elapsed)")
            XCTAssertFalse(error.message.contains(SQSTestEnvironment.secretKey))
        }
        XCTAssertGreaterThanOrEqual(logs.lines.filter { $0.contains("retrying") }.count, 1, "\(logs.lines)")
        XCTAssertFalse(logs.lines.contains { $0.contains(SQSTestEnvironment.secretKey) || $0.contains("SESSIONTOKEN") })
    }

    func testServerErrorThenSuccess() async throws {
        let ok = """
        <?xml version="1.0"?><GetQueueAttributesResponse><GetQueueAttributesResult><Attribute><Name>ApproximateNumberOfMessages</Name><Value>7</Value></Attribute></GetQueueAttributesResult></GetQueueAttributesResponse>
        """
        let server = try CannedServer(responses: [
            ["status": 500, "body": "<ErrorResponse><Error><Code>InternalError</Code><Message>boom</Message></Error></ErrorResponse>"],
            ["status": 200, "body": ok],
        ])
        defer { server.stop() }
        let logs = CapturingLogStore()
        let client = client(endpoint: "http://127.0.0.1:\(server.port)", attempts: 3, deadline: .seconds(10), store: logs)
        let attributes = try await client.getQueueAttributes(queueURL: "http://127.0.0.1:\(server.port)/000000000000/q")
        XCTAssertEqual(attributes["ApproximateNumberOfMessages"], "7")
        XCTAssertEqual(logs.lines.filter { $0.contains("retrying") }.count, 1)
    }

    func testThrottlingIsRetriedAndPersistentFailureReported() async throws {
        let server = try CannedServer(responses: [
            ["status": 400, "body": "{\"__type\": \"com.amazonaws.sqs#RequestThrottled\", \"message\": \"slow down\"}",
             "headers": ["x-amzn-query-error": "RequestThrottled;Sender"]],
        ])
        defer { server.stop() }
        let logs = CapturingLogStore()
        var configuration = client(endpoint: "http://127.0.0.1:\(server.port)", attempts: 3, deadline: .seconds(10),
                                   store: logs).configuration
        configuration.wireProtocol = .json
        let client = SQSClient(configuration: configuration, logger: SQSTestEnvironment.logger(logs))
        do {
            _ = try await client.getQueueURL(queueName: "q")
            XCTFail("expected an error")
        } catch let error as SQSError {
            XCTAssertEqual(error.kind, .throttled, "\(error)")
            XCTAssertTrue(error.message.contains("gave up after 3 attempts"), error.message)
        }
    }

    func testBadSignatureMessageIsClearAndLeaksNothing() async throws {
        let server = try CannedServer(responses: [
            ["status": 403, "body": "<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code><Message>The canonical string was POST\nx-amz-security-token:SESSIONTOKEN-never-logged</Message></Error></ErrorResponse>"],
        ])
        defer { server.stop() }
        let client = client(endpoint: "http://127.0.0.1:\(server.port)", attempts: 3, deadline: .seconds(10),
                            store: CapturingLogStore())
        do {
            _ = try await client.getQueueURL(queueName: "q")
            XCTFail("expected an error")
        } catch let error as SQSError {
            XCTAssertEqual(error.kind, .badCredentials)
            XCTAssertFalse(error.message.contains("SESSIONTOKEN"))
            XCTAssertTrue(error.message.contains("AWS_SECRET_ACCESS_KEY"), error.message)
        }
    }
}
