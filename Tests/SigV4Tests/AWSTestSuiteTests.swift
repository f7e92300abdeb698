import Foundation
import SigV4
import TestSupport
import XCTest

/// Runs the AWS Signature Version 4 test suite (`Tests/Fixtures/aws-sigv4`) stage by stage.
final class AWSTestSuiteTests: XCTestCase {
    static let credentials = SigV4.Credentials(
        accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    static let date = SigV4.parseAmzDate("20150830T123600Z")!
    static let region = "us-east-1"
    static let service = "service"

    /// Cases whose raw request lines cannot be sent by an ordinary HTTP client (duplicate query keys in an order the
    /// suite expects sorted by value, a raw space in the path); every SigV4 implementation skips them.
    static let skippedCases: Set<String> = [
        "get-vanilla-query-order-key",
        "get-vanilla-query-order-value",
        "normalize-path/get-space",
    ]

    /// A parsed `.req` file.
    struct RawRequest {
        var method: String
        var path: String
        var query: String
        var headers: [(name: String, value: String)]
        var body: [UInt8]
    }

    /// Parses a `.req` file: request line, headers (a line starting with whitespace continues the previous value),
    /// an empty line, then the body.
    static func parseRequest(_ text: String) throws -> RawRequest {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        // The path may contain spaces (get-space), so take the method up to the first space and the version from the
        // last one.
        guard let firstSpace = requestLine.firstIndex(of: " "), let lastSpace = requestLine.lastIndex(of: " "),
              firstSpace < lastSpace
        else { throw TestSetupError("bad request line: \(requestLine)") }
        let method = String(requestLine[..<firstSpace])
        let target = String(requestLine[requestLine.index(after: firstSpace)..<lastSpace])
        let path: String, query: String
        if let question = target.firstIndex(of: "?") {
            path = String(target[..<question])
            query = String(target[target.index(after: question)...])
        } else {
            path = target
            query = ""
        }
        var headers: [(name: String, value: String)] = []
        var bodyLines: [String] = []
        var inBody = false
        for line in lines {
            if inBody { bodyLines.append(line); continue }
            if line.isEmpty { inBody = true; continue }
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw TestSetupError("bad header line: \(line)") }
            headers.append((String(line[..<colon]), String(line[line.index(after: colon)...])))
        }
        return RawRequest(method: method, path: path, query: query, headers: headers,
                          body: Array(bodyLines.joined(separator: "\n").utf8))
    }

    /// Every case folder (one holding a `.req` named after it), relative to the suite.
    static func caseNames(in suite: URL) throws -> [String] {
        let enumerator = FileManager.default.enumerator(at: suite, includingPropertiesForKeys: nil)!
        var names: [String] = []
        for case let url as URL in enumerator where url.pathExtension == "req" {
            let relative = url.deletingLastPathComponent().path.dropFirst(suite.path.count + 1)
            names.append(String(relative))
        }
        return names.sorted()
    }

    func testSuiteStageByStage() throws {
        let suite = try TestServices.fixture("aws-sigv4")
        let cases = try Self.caseNames(in: suite)
        XCTAssertGreaterThanOrEqual(cases.count, 30, "the suite looks incomplete")
        for skipped in Self.skippedCases {
            XCTAssertTrue(cases.contains(skipped), "skipped case \(skipped) no longer exists in the suite")
        }
        var checked = 0
        for name in cases where !Self.skippedCases.contains(name) {
            let base = suite.appendingPathComponent(name).appendingPathComponent(URL(fileURLWithPath: name).lastPathComponent)
            func read(_ ext: String) throws -> String {
                try String(contentsOf: base.appendingPathExtension(ext), encoding: .utf8)
            }
            var request = try Self.parseRequest(try read("req"))
            let expectedCreq = try read("creq"), expectedSts = try read("sts"), expectedAuthz = try read("authz")

            // get-vanilla-with-session-token: the token is not in the .req but is signed (it comes with the
            // credentials); post-sts-header-after: the token is added after signing, so it is not signed at all.
            if name == "get-vanilla-with-session-token" {
                let signedRequest = try Self.parseRequest(try read("sreq"))
                let token = try XCTUnwrap(signedRequest.headers.first { $0.name == "X-Amz-Security-Token" }?.value)
                request.headers.append((name: "X-Amz-Security-Token", value: token))
            }

            let payloadHash = SigV4.hexSHA256(request.body)
            let canonical = SigV4.canonicalRequest(
                method: request.method, path: request.path, query: request.query, headers: request.headers,
                payloadHash: payloadHash)
            XCTAssertEqual(canonical.text, expectedCreq, "\(name): canonical request")
            let sts = SigV4.stringToSign(canonicalRequest: canonical.text, date: Self.date, region: Self.region,
                                         service: Self.service)
            XCTAssertEqual(sts, expectedSts, "\(name): string to sign")
            let key = SigV4.signingKey(secretAccessKey: Self.credentials.secretAccessKey, date: Self.date,
                                       region: Self.region, service: Self.service)
            let authz = SigV4.authorizationHeader(
                accessKeyId: Self.credentials.accessKeyId, date: Self.date, region: Self.region,
                service: Self.service, signedHeaders: canonical.signedHeaders,
                signature: SigV4.signature(signingKey: key, stringToSign: sts))
            XCTAssertEqual(authz, expectedAuthz, "\(name): Authorization header")
            checked += 1
        }
        XCTAssertEqual(checked, cases.count - Self.skippedCases.count)
    }

    /// The one-call `sign` agrees with the stages and signs the session token of temporary credentials.
    func testSignAddsHostDateAndSessionToken() throws {
        let url = URL(string: "https://example.amazonaws.com/")!
        let credentials = SigV4.Credentials(
            accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            sessionToken: "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267")
        let headers = SigV4.sign(method: "GET", url: url, headers: [], payloadHash: SigV4.emptyPayloadHash,
                                 credentials: credentials, region: "us-east-1", service: "service", date: Self.date)
        let suite = try TestServices.fixture("aws-sigv4/get-vanilla-with-session-token")
        let expected = try String(contentsOf: suite.appendingPathComponent("get-vanilla-with-session-token.authz"),
                                  encoding: .utf8)
        XCTAssertEqual(headers.first { $0.name == "authorization" }?.value, expected)
        XCTAssertEqual(headers.first { $0.name == "host" }?.value, "example.amazonaws.com")
        XCTAssertEqual(headers.first { $0.name == "x-amz-date" }?.value, "20150830T123600Z")
    }

    func testCredentialsDescriptionIsRedacted() {
        let credentials = SigV4.Credentials(accessKeyId: "AKID", secretAccessKey: "SECRETKEY", sessionToken: "TOKEN")
        XCTAssertFalse("\(credentials)".contains("SECRETKEY"))
        XCTAssertFalse(String(reflecting: credentials).contains("TOKEN"))
    }

    func testHostHeaderPorts() {
        XCTAssertEqual(SigV4.hostHeader(URL(string: "http://127.0.0.1:5123/x")!), "127.0.0.1:5123")
        XCTAssertEqual(SigV4.hostHeader(URL(string: "https://sqs.us-east-1.amazonaws.com:443/")!),
                       "sqs.us-east-1.amazonaws.com")
    }

    func testAmzDateRoundTrip() {
        XCTAssertEqual(SigV4.amzDate(Self.date), "20150830T123600Z")
        XCTAssertEqual(SigV4.amzDate(Date(timeIntervalSince1970: 951_782_400)), "20000229T000000Z")
    }
}
