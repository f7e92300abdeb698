import AWS
import Foundation
import KMS
import Logging
import SigV4
import XCTest

/// The KMS client over a fake transport: the request format (botocore's kms model: JSON 1.1, TrentService targets,
/// SigV4 for `kms`), the answers, and which failures are refused, retried or given up on.
final class KMSClientTests: XCTestCase {
    private func client(_ transport: FakeTransport, maxAttempts: Int = 3) -> KMSClient {
        let credentials = StaticCredentialsProvider(
            AWSCredentials(accessKeyId: "AKIDKMSTEST", secretAccessKey: "kms-secret-never-shown", sessionToken: nil,
                           source: "static"))
        let configuration = KMSConfiguration(
            credentialsProvider: credentials, region: "eu-west-1", endpoint: URL(string: "https://kms.eu-west-1.amazonaws.com")!,
            maxAttempts: maxAttempts, baseDelay: .milliseconds(1), totalDeadline: .seconds(5), transport: transport)
        return KMSClient(configuration: configuration, logger: Logger(label: "test"),
                         now: { Date(timeIntervalSince1970: 1_700_000_000) })
    }

    func testEncryptSendsTheJSON11RequestBotocoreSends() async throws {
        let transport = FakeTransport { _, _ in
            kmsAnswer(200, ["CiphertextBlob": Data([1, 2, 3]).base64EncodedString(),
                            "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc", "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"])
        }
        let result = try await client(transport).encrypt(
            keyID: "alias/piivault", plaintextBase64: Array("AAEC".utf8),
            context: ["piivault:key": "token", "piivault:key-id": "0011223344556677"])
        XCTAssertEqual(result.ciphertextBlob, [1, 2, 3])
        XCTAssertEqual(result.keyID, "arn:aws:kms:eu-west-1:111122223333:key/abc")
        let request = try XCTUnwrap(transport.requests.first)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.url.absoluteString, "https://kms.eu-west-1.amazonaws.com")
        XCTAssertEqual(request.header("X-Amz-Target"), "TrentService.Encrypt")
        XCTAssertEqual(request.header("Content-Type"), "application/x-amz-json-1.1")
        let authorization = try XCTUnwrap(request.header("Authorization"))
        XCTAssertTrue(authorization.hasPrefix("AWS4-HMAC-SHA256 Credential=AKIDKMSTEST/20231114/eu-west-1/kms/aws4_request"),
                      authorization)
        XCTAssertTrue(authorization.contains("x-amz-target"), "the target header is signed: \(authorization)")
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        XCTAssertEqual(body["KeyId"] as? String, "alias/piivault")
        XCTAssertEqual(body["Plaintext"] as? String, "AAEC")
        XCTAssertEqual(body["EncryptionContext"] as? [String: String],
                       ["piivault:key": "token", "piivault:key-id": "0011223344556677"])
        XCTAssertEqual(Set(body.keys), ["KeyId", "Plaintext", "EncryptionContext"])
    }

    func testDecryptSendsBlobContextAndKeyAndReturnsThePlaintextCharacters() async throws {
        let transport = FakeTransport { _, _ in
            kmsAnswer(200, ["Plaintext": "c2VjcmV0/w==", "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/abc",
                            "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"])
        }
        let result = try await client(transport).decrypt(ciphertextBlob: [9, 8, 7], keyID: "alias/piivault",
                                                         context: ["piivault:key": "vault"])
        XCTAssertEqual(String(decoding: result.plaintextBase64, as: UTF8.self), "c2VjcmV0/w==")
        XCTAssertEqual(result.keyID, "arn:aws:kms:eu-west-1:111122223333:key/abc")
        let request = try XCTUnwrap(transport.requests.first)
        XCTAssertEqual(request.header("X-Amz-Target"), "TrentService.Decrypt")
        let body = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any])
        XCTAssertEqual(body["CiphertextBlob"] as? String, Data([9, 8, 7]).base64EncodedString())
        XCTAssertEqual(body["KeyId"] as? String, "alias/piivault")
        XCTAssertEqual(body["EncryptionContext"] as? [String: String], ["piivault:key": "vault"])
    }

    func testDecryptReadsAnEscapedSlashInThePlaintext() async throws {
        let transport = FakeTransport { _, _ in
            HTTPResponse(status: 200, body: Array(#"{"KeyId":"k","Plaintext":"ab\/c="}"#.utf8))
        }
        let result = try await client(transport).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
        XCTAssertEqual(String(decoding: result.plaintextBase64, as: UTF8.self), "ab/c=")
    }

    func testRefusalsAreNotRetriedAndNameTheKey() async throws {
        for code in ["AccessDeniedException", "IncorrectKeyException", "InvalidCiphertextException", "DisabledException",
                     "KMSInvalidStateException", "NotFoundException"] {
            let transport = FakeTransport { _, _ in
                kmsAnswer(400, ["__type": code, "message": "no"])
            }
            do {
                _ = try await client(transport).decrypt(ciphertextBlob: [1], keyID: "alias/denied", context: [:])
                XCTFail("\(code) was accepted")
            } catch let error as KMSError {
                XCTAssertEqual(error.kind, .refused, code)
                XCTAssertEqual(error.awsErrorCode, code)
                XCTAssertTrue(error.message.contains("alias/denied"), error.message)
                XCTAssertFalse(error.message.contains("\n"))
            }
            XCTAssertEqual(transport.requests.count, 1, "\(code) must not be retried")
        }
    }

    func testFullyQualifiedErrorTypeIsShortened() async throws {
        let transport = FakeTransport { _, _ in
            kmsAnswer(400, ["__type": "com.amazonaws.kms#AccessDeniedException", "Message": "denied"])
        }
        do {
            _ = try await client(transport).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
            XCTFail("accepted")
        } catch let error as KMSError {
            XCTAssertEqual(error.kind, .refused)
            XCTAssertEqual(error.awsErrorCode, "AccessDeniedException")
        }
    }

    func testThrottlingAndServerErrorsAreRetriedThenGivenUp() async throws {
        for (status, code, kind) in [(400, "ThrottlingException", KMSError.Kind.throttled),
                                     (500, "KMSInternalException", .serverError), (503, "", .serverError)] {
            let transport = FakeTransport { _, _ in kmsAnswer(status, code.isEmpty ? [:] : ["__type": code]) }
            do {
                _ = try await client(transport, maxAttempts: 3).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
                XCTFail("accepted")
            } catch let error as KMSError {
                XCTAssertEqual(error.kind, kind)
                XCTAssertTrue(error.message.contains("gave up after 3 attempts"), error.message)
            }
            XCTAssertEqual(transport.requests.count, 3)
        }
    }

    func testAThrottledCallThatSucceedsOnRetryReturns() async throws {
        let transport = FakeTransport { _, index in
            index == 0 ? kmsAnswer(400, ["__type": "ThrottlingException"])
                : kmsAnswer(200, ["Plaintext": "AA==", "KeyId": "k"])
        }
        let result = try await client(transport).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
        XCTAssertEqual(String(decoding: result.plaintextBase64, as: UTF8.self), "AA==")
        XCTAssertEqual(transport.requests.count, 2)
    }

    func testUnreachableIsAConnectionError() async throws {
        let transport = FakeTransport { _, _ in throw HTTPTransportError(kind: .connectFailed, detail: "refused") }
        do {
            _ = try await client(transport, maxAttempts: 2).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
            XCTFail("accepted")
        } catch let error as KMSError {
            XCTAssertEqual(error.kind, .connection)
            XCTAssertTrue(error.message.contains("cannot reach KMS at https://kms.eu-west-1.amazonaws.com"), error.message)
        }
        XCTAssertEqual(transport.requests.count, 2)
    }

    func testServerTextIsRedacted() async throws {
        let transport = FakeTransport { _, _ in
            kmsAnswer(403, ["__type": "UnrecognizedClientException", "message": "bad kms-secret-never-shown\nsecond"])
        }
        do {
            _ = try await client(transport).decrypt(ciphertextBlob: [1], keyID: "k", context: [:])
            XCTFail("accepted")
        } catch let error as KMSError {
            XCTAssertEqual(error.kind, .badCredentials)
            XCTAssertFalse(error.message.contains("kms-secret-never-shown"), error.message)
            XCTAssertFalse(error.message.contains("second"))
        }
    }

    func testResolveReadsTheKMSEndpointVariablesAndTheRegion() throws {
        let home = NSTemporaryDirectory() + "kms-home-\(UUID().uuidString)"
        func resolve(_ variables: [String: String], keyID: String? = nil) throws -> KMSConfiguration {
            try KMSConfiguration.resolve(environment: AWSEnvironment(variables: variables, homeDirectory: home),
                                         keyID: keyID, transport: FakeTransport { _, _ in HTTPResponse(status: 500) })
        }
        let specific = try resolve(["AWS_ENDPOINT_URL_KMS": "http://127.0.0.1:1234", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"])
        XCTAssertEqual(specific.endpoint.absoluteString, "http://127.0.0.1:1234")
        XCTAssertEqual(specific.region, "us-east-1")
        let general = try resolve(["AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "eu-central-1"])
        XCTAssertEqual(general.endpoint.absoluteString, "http://127.0.0.1:9")
        XCTAssertEqual(general.region, "eu-central-1")
        let aws = try resolve([:], keyID: "arn:aws:kms:ap-south-1:111122223333:key/abc")
        XCTAssertEqual(aws.endpoint.absoluteString, "https://kms.ap-south-1.amazonaws.com")
        XCTAssertEqual(aws.region, "ap-south-1")
        XCTAssertThrowsError(try resolve([:], keyID: "alias/x")) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .configuration)
        }
    }
}

/// A KMS (JSON 1.1) answer.
private func kmsAnswer(_ status: Int, _ object: [String: Any]) -> HTTPResponse {
    HTTPResponse(status: status, headers: [(name: "Content-Type", value: "application/x-amz-json-1.1")],
                 body: Array(try! JSONSerialization.data(withJSONObject: object)))
}
