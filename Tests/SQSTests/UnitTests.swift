import Foundation
@testable import SQS
import SigV4
import XCTest

final class SQSUnitTests: XCTestCase {
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

    func testCredentialsFromEnvironment() throws {
        let configuration = try SQSConfiguration.resolve(
            environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "TK",
                          "AWS_DEFAULT_REGION": "eu-west-1"],
            homeDirectory: "/nonexistent")
        XCTAssertEqual(configuration.credentials.accessKeyId, "AK")
        XCTAssertEqual(configuration.credentials.sessionToken, "TK")
        XCTAssertEqual(configuration.region, "eu-west-1")
        XCTAssertEqual(configuration.endpoint.absoluteString, "https://sqs.eu-west-1.amazonaws.com")
    }

    func testProfileFromSharedFiles() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sqs-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home.appendingPathComponent(".aws"),
                                                withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        try """
        [default]
        aws_access_key_id = DEFAULTKEY
        aws_secret_access_key = DEFAULTSECRET

        # a comment
        [work]
        aws_access_key_id = WORKKEY
        aws_secret_access_key = WORKSECRET
        aws_session_token = WORKTOKEN
        """.write(to: home.appendingPathComponent(".aws/credentials"), atomically: true, encoding: .utf8)
        try """
        [default]
        region = us-west-2
        [profile work]
        region = ap-southeast-2
        s3 =
          addressing_style = path
        """.write(to: home.appendingPathComponent(".aws/config"), atomically: true, encoding: .utf8)

        let defaults = try SQSConfiguration.resolve(environment: [:], homeDirectory: home.path)
        XCTAssertEqual(defaults.credentials.accessKeyId, "DEFAULTKEY")
        XCTAssertEqual(defaults.region, "us-west-2")

        let work = try SQSConfiguration.resolve(
            environment: ["AWS_PROFILE": "work"], homeDirectory: home.path,
            queueURL: "https://sqs.ap-southeast-2.amazonaws.com/123456789012/logins")
        XCTAssertEqual(work.credentials.accessKeyId, "WORKKEY")
        XCTAssertEqual(work.credentials.sessionToken, "WORKTOKEN")
        XCTAssertEqual(work.region, "ap-southeast-2")
        XCTAssertEqual(work.endpoint.absoluteString, "https://sqs.ap-southeast-2.amazonaws.com/")

        // The file overrides are honoured and the region env var wins over the profile.
        let moved = home.appendingPathComponent("elsewhere")
        try FileManager.default.moveItem(at: home.appendingPathComponent(".aws"), to: moved)
        let overridden = try SQSConfiguration.resolve(
            environment: ["AWS_SHARED_CREDENTIALS_FILE": moved.appendingPathComponent("credentials").path,
                          "AWS_CONFIG_FILE": moved.appendingPathComponent("config").path,
                          "AWS_PROFILE": "work", "AWS_REGION": "eu-central-1"],
            homeDirectory: home.path)
        XCTAssertEqual(overridden.credentials.accessKeyId, "WORKKEY")
        XCTAssertEqual(overridden.region, "eu-central-1")

        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: ["AWS_PROFILE": "nope"],
                                                          homeDirectory: home.path)) { error in
            XCTAssertEqual((error as? SQSError)?.kind, .configuration)
            XCTAssertTrue("\(error)".contains("\"nope\""), "\(error)")
        }
    }

    func testEndpointPrecedence() throws {
        let base = ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"]
        let queue = "http://localhost:4566/000000000000/q"
        var env = base
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1111"
        env["AWS_ENDPOINT_URL_SQS"] = "http://127.0.0.1:2222"
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue,
                                                    endpointURL: "http://127.0.0.1:3333").endpoint.port, 3333)
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue)
            .endpoint.port, 2222)
        env["AWS_ENDPOINT_URL_SQS"] = nil
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue)
            .endpoint.port, 1111)
        // The queue URL's host, with an emulator's default region.
        let fromQueue = try SQSConfiguration.resolve(environment: base, homeDirectory: "/x", queueURL: queue)
        XCTAssertEqual(fromQueue.endpoint.absoluteString, "http://localhost:4566/")
        XCTAssertEqual(fromQueue.region, "us-east-1")
        // Real AWS without a region anywhere is an error.
        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: base, homeDirectory: "/x")) { error in
            XCTAssertTrue("\(error)".contains("AWS_REGION"), "\(error)")
        }
    }

    /// Acceptance 4: no credentials gives a clear error naming the variables.
    func testMissingCredentialsNamesTheVariables() {
        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: ["AWS_REGION": "us-east-1"],
                                                          homeDirectory: "/nonexistent")) { error in
            let sqsError = error as? SQSError
            XCTAssertEqual(sqsError?.kind, .missingCredentials)
            for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"] {
                XCTAssertTrue("\(error)".contains(name), "\(error) does not name \(name)")
            }
        }
        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: ["AWS_ACCESS_KEY_ID": "AK"],
                                                          homeDirectory: "/nonexistent")) { error in
            XCTAssertTrue("\(error)".contains("AWS_SECRET_ACCESS_KEY"), "\(error)")
        }
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
        let redacted = client.redact("bad SUPERSECRET and TOKEN123, Signature=abcdef\nsecond line")
        XCTAssertFalse(redacted.contains("SUPERSECRET"))
        XCTAssertFalse(redacted.contains("TOKEN123"))
        XCTAssertFalse(redacted.contains("abcdef"))
        XCTAssertFalse(redacted.contains("second line"))
    }
}
