import AWS
import Foundation
import Logging
@testable import SQS
import SigV4
import XCTest

/// The SQS client over a capturing fake transport: signing with the provider's current credentials, refresh,
/// retries, the receive that must not be retried, the answer limit; plus the pure helpers (moved from SQSTests).
final class SQSClientTests: XCTestCase {
    private let endpoint = URL(string: "http://127.0.0.1:9/")!
    private let queue = "http://127.0.0.1:9/000000000000/q"

    private func client(_ provider: any AWSCredentialsProvider, _ transport: FakeTransport,
                        attempts: Int = 3) -> SQSClient {
        let configuration = SQSConfiguration(
            credentialsProvider: provider, region: "us-east-1", endpoint: endpoint,
            retry: SQSRetryPolicy(maxAttempts: attempts, baseDelay: .milliseconds(1), maxDelay: .milliseconds(2),
                                  totalDeadline: .seconds(10)),
            callTimeout: .seconds(5))
        return SQSClient(configuration: configuration, transport: transport, logger: Logger(label: "test"))
    }

    private static let attributes = xmlAnswer("""
        <GetQueueAttributesResponse><GetQueueAttributesResult><Attribute><Name>ApproximateNumberOfMessages</Name><Value>3</Value></Attribute></GetQueueAttributesResult></GetQueueAttributesResponse>
        """)

    /// Each request is signed with the credentials the provider has at that moment: after the cached credentials
    /// come due, the next request carries the new key.
    func testEachRequestIsSignedWithTheCurrentCredentials() async throws {
        let clock = TestClock()
        let base = CountingProvider(lifetime: 2, now: { clock.now })
        let provider = CachingCredentialsProvider(base, refreshLeadTime: 1, now: { clock.now })
        let transport = FakeTransport { _, _ in Self.attributes }
        let client = client(provider, transport)
        _ = try await client.getQueueAttributes(queueURL: queue)
        _ = try await client.getQueueAttributes(queueURL: queue)
        clock.advance(1.5)
        _ = try await client.getQueueAttributes(queueURL: queue)
        let keys = transport.requests.map(\.signingAccessKey)
        XCTAssertEqual(keys, ["AKID1", "AKID1", "AKID2"])
        XCTAssertEqual(transport.requests[2].header("X-Amz-Security-Token"), "TOKEN2-never-shown")
        let calls = await base.calls
        XCTAssertEqual(calls, 2)
    }

    /// `ExpiredToken`: the client refreshes at once and retries once with the new credentials.
    func testExpiredTokenRefreshesAndRetriesOnce() async throws {
        let base = CountingProvider(lifetime: 3600)
        let provider = CachingCredentialsProvider(base)
        let transport = FakeTransport { request, _ in
            request.signingAccessKey == "AKID1" ? xmlError(403, code: "ExpiredToken", message: "expired")
                : Self.attributes
        }
        let attributes = try await client(provider, transport).getQueueAttributes(queueURL: queue)
        XCTAssertEqual(attributes["ApproximateNumberOfMessages"], "3")
        XCTAssertEqual(transport.requests.map(\.signingAccessKey), ["AKID1", "AKID2"])

        // Expired again after the refresh: reported, not looped.
        let always = FakeTransport { _, _ in xmlError(403, code: "ExpiredToken") }
        do {
            _ = try await client(CachingCredentialsProvider(CountingProvider(lifetime: 3600)), always)
                .getQueueAttributes(queueURL: queue)
            XCTFail("expected an error")
        } catch let error as SQSError {
            XCTAssertEqual(error.kind, .badCredentials)
            XCTAssertTrue(error.message.contains("credentials from counting"), error.message)
        }
        XCTAssertEqual(always.requests.count, 2)
    }

    /// A receive whose answer is lost after it may have reached SQS is not retried (the messages are hidden);
    /// one that never connected is.
    func testLostReceiveIsNotRetried() async throws {
        for kind in [HTTPTransportError.Kind.failed, .timedOut, .responseTooLarge] {
            let transport = FakeTransport { _, _ in throw HTTPTransportError(kind: kind, detail: "lost") }
            do {
                _ = try await client(StaticCredentialsProvider(.init(accessKeyId: "A", secretAccessKey: "S",
                                                                     source: "t")), transport)
                    .receiveMessages(queueURL: queue)
                XCTFail("expected an error for \(kind)")
            } catch let error as SQSError {
                XCTAssertEqual(error.kind, .lostReceive)
                XCTAssertTrue(error.message.contains("visibility timeout"), error.message)
            }
            XCTAssertEqual(transport.requests.count, 1, "\(kind) was retried")
        }
        let refused = FakeTransport { _, index in
            if index == 0 { throw HTTPTransportError(kind: .connectFailed, detail: "refused") }
            return xmlAnswer("<ReceiveMessageResponse><ReceiveMessageResult/></ReceiveMessageResponse>")
        }
        let messages = try await client(StaticCredentialsProvider(.init(accessKeyId: "A", secretAccessKey: "S",
                                                                        source: "t")), refused)
            .receiveMessages(queueURL: queue)
        XCTAssertEqual(messages.count, 0)
        XCTAssertEqual(refused.requests.count, 2)
        // Other calls are still retried after a lost answer.
        let lostOnce = FakeTransport { _, index in
            if index == 0 { throw HTTPTransportError(kind: .failed, detail: "reset") }
            return Self.attributes
        }
        _ = try await client(StaticCredentialsProvider(.init(accessKeyId: "A", secretAccessKey: "S", source: "t")),
                             lostOnce).getQueueAttributes(queueURL: queue)
        XCTAssertEqual(lostOnce.requests.count, 2)
    }

    /// The answer limit covers ten 1 MiB messages whose every byte escapes to six, and every request carries it.
    func testResponseLimitCoversTheLargestLegalAnswer() async throws {
        let largestBodies = 10 * 1024 * 1024 * 6
        XCTAssertGreaterThan(SQSClient.maxResponseBytes, largestBodies + 10 * 2048)
        XCTAssertLessThan(SQSClient.maxResponseBytes, 64 * 1024 * 1024)
        XCTAssertEqual(SQSClient.maxResponseBytes(messages: 1, maxMessageBytes: 100), 600 + 16 * 1024 + 16 * 1024)
        // The escaping really is six bytes for `"` in XML.
        XCTAssertEqual("&quot;".utf8.count, 6)
        let transport = FakeTransport { _, _ in
            xmlAnswer("<ReceiveMessageResponse><ReceiveMessageResult/></ReceiveMessageResponse>")
        }
        _ = try await client(StaticCredentialsProvider(.init(accessKeyId: "A", secretAccessKey: "S", source: "t")),
                             transport).receiveMessages(queueURL: queue)
        XCTAssertEqual(transport.requests.first?.maxResponseBytes, SQSClient.maxResponseBytes)
    }

    /// Credentials that cannot be found stop the call with the provider's error, before anything is sent.
    func testProviderErrorStopsTheCall() async throws {
        let transport = FakeTransport { _, _ in Self.attributes }
        let chain = DefaultCredentialsChain(providers: [
            EnvironmentCredentialsProvider(environment: AWSEnvironment(variables: [:], homeDirectory: "/x")),
        ])
        do {
            _ = try await client(chain, transport).getQueueAttributes(queueURL: queue)
            XCTFail("expected an error")
        } catch let error as AWSError {
            XCTAssertEqual(error.kind, .noCredentials)
        }
        XCTAssertEqual(transport.requests.count, 0)
    }

    // MARK: Pure helpers (moved from SQSTests/UnitTests.swift)

    func testMD5KnownValues() {
        XCTAssertEqual(MD5.hex(Array("".utf8)), "d41d8cd98f00b204e9800998ecf8427e")
        XCTAssertEqual(MD5.hex(Array("The quick brown fox jumps over the lazy dog".utf8)),
                       "9e107d9d372bb6826bd81d3542a419d6")
        XCTAssertEqual(MD5.hex(Array(String(repeating: "a", count: 1000).utf8)), "cabe45dcc9ae5b66ba86600cca6b8ba8")
    }

    func testXMLEntitiesAndUnicodeDecode() throws {
        let xml = "<ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\"><ReceiveMessageResult><Message><Body>{&quot;a&quot;:&quot;x &amp; y &lt;z&gt; &apos;q&apos; &#233;&#x1F600;&quot;}</Body></Message></ReceiveMessageResult></ReceiveMessageResponse>"
        let tree = try XCTUnwrap(XMLElementNode.parse(Array(xml.utf8)))
        XCTAssertEqual(tree.descendants("Body").first?.text, "{\"a\":\"x & y <z> 'q' é😀\"}")
    }

    func testErrorCodeMapping() {
        XCTAssertEqual(SQSError.fromAWS(code: "AWS.SimpleQueueService.NonExistentQueue", serverMessage: nil,
                                        status: 400, context: "x").kind, .noSuchQueue)
        XCTAssertEqual(SQSError.fromAWS(code: "QueueDoesNotExist", serverMessage: nil, status: 400, context: "x").kind,
                       .noSuchQueue)
        XCTAssertEqual(SQSError.fromAWS(code: "AccessDenied", serverMessage: nil, status: 403, context: "x").kind,
                       .accessDenied)
        let signature = SQSError.fromAWS(code: "SignatureDoesNotMatch", serverMessage: "canonical: secret",
                                         status: 403, context: "x")
        XCTAssertEqual(signature.kind, .badCredentials)
        XCTAssertFalse(signature.message.contains("secret"))
        XCTAssertEqual(SQSError.fromAWS(code: "InvalidClientTokenId", serverMessage: nil, status: 403,
                                        context: "x").kind, .badCredentials)
        let throttled = SQSError.fromAWS(code: "RequestThrottled", serverMessage: nil, status: 403, context: "x")
        XCTAssertEqual(throttled.kind, .throttled)
        XCTAssertTrue(throttled.isRetryable)
        XCTAssertTrue(SQSError.fromAWS(code: nil, serverMessage: nil, status: 503, context: "x").isRetryable)
        XCTAssertFalse(SQSError.fromAWS(code: "InvalidParameterValue", serverMessage: nil, status: 400,
                                        context: "x").isRetryable)
    }

    func testRedactionRemovesSecrets() throws {
        let configuration = SQSConfiguration(
            credentials: SigV4.Credentials(accessKeyId: "AK", secretAccessKey: "SUPERSECRET", sessionToken: "TOKEN123"),
            region: "us-east-1", endpoint: URL(string: "http://127.0.0.1:1")!)
        let client = SQSClient(configuration: configuration, logger: .init(label: "t"))
        let credentials = AWSCredentials(accessKeyId: "AK", secretAccessKey: "SUPERSECRET", sessionToken: "TOKEN123",
                                         source: "t")
        let redacted = client.redact("bad SUPERSECRET and TOKEN123, Signature=abcdef\nsecond line",
                                     credentials: credentials)
        XCTAssertFalse(redacted.contains("SUPERSECRET"))
        XCTAssertFalse(redacted.contains("TOKEN123"))
        XCTAssertFalse(redacted.contains("abcdef"))
        XCTAssertFalse(redacted.contains("second line"))
    }
}

/// The XML reader copes with the largest legal ReceiveMessage answer: ten 1 MiB bodies of `"`, each escaped to
/// 6 MiB (libxml2, which read these answers before, refused anything over 10 MB given at once).
final class LargestAnswerTests: XCTestCase {
    func testLargestLegalAnswerParses() throws {
        let escaped = Array(String(repeating: "&quot;", count: 1024 * 1024).utf8)
        var xml = Array("<ReceiveMessageResponse><ReceiveMessageResult>".utf8)
        xml.reserveCapacity(62 * 1024 * 1024)
        for index in 0..<10 {
            xml += Array("<Message><MessageId>m\(index)</MessageId><ReceiptHandle>r\(index)</ReceiptHandle><Body>".utf8)
            xml += escaped
            xml += Array("</Body></Message>".utf8)
        }
        xml += Array("</ReceiveMessageResult></ReceiveMessageResponse>".utf8)
        XCTAssertGreaterThan(xml.count, 60 * 1024 * 1024)
        XCTAssertLessThan(xml.count, SQSClient.maxResponseBytes)
        let tree = try XCTUnwrap(XMLElementNode.parse(xml))
        let bodies = tree.descendants("Body")
        XCTAssertEqual(bodies.count, 10)
        XCTAssertEqual(bodies.first?.text.utf8.count, 1024 * 1024)
        XCTAssertTrue(bodies.first?.text.utf8.allSatisfy { $0 == UInt8(ascii: "\"") } ?? false)
    }
}
