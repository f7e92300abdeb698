import AWS
import Foundation
@testable import PIIVault
import XCTest

/// The Pushgateway push goes through the AWS module's HTTP transport seam: what it sends, and how a refusal reads.
final class MetricsPushTests: XCTestCase {
    /// Records the one request and answers with `status`.
    private final class OneAnswer: HTTPTransport, @unchecked Sendable {
        let status: Int
        let body: String
        private let lock = NSLock()
        private var captured: [HTTPRequest] = []  // guarded by lock
        init(status: Int, body: String = "") { self.status = status; self.body = body }
        var requests: [HTTPRequest] { lock.withLock { captured } }
        func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
            lock.withLock { captured.append(request) }
            return HTTPResponse(status: status, body: Array(body.utf8))
        }
    }

    func testThePushPOSTsTheTextFormatToTheJobsPath() async throws {
        let transport = OneAnswer(status: 200)
        try await MetricsPublisher.push("piivault_etl_run_success 1\n", to: "http://gateway:9091/", transport: transport)
        let request = try XCTUnwrap(transport.requests.first)
        XCTAssertEqual(transport.requests.count, 1)
        XCTAssertEqual(request.method, "POST")
        XCTAssertEqual(request.url.absoluteString, "http://gateway:9091/metrics/job/piivault_etl")
        XCTAssertEqual(request.headers.first { $0.name == "Content-Type" }?.value, "text/plain; version=0.0.4")
        XCTAssertEqual(String(decoding: request.body, as: UTF8.self), "piivault_etl_run_success 1\n")
    }

    func testARefusalNamesTheStatusAndTheFirstLineOfTheAnswer() async throws {
        let transport = OneAnswer(status: 400, body: "text format parsing error in line 1\nmore")
        do {
            try await MetricsPublisher.push("x", to: "http://gateway:9091", transport: transport)
            XCTFail("a 400 is not a push")
        } catch let error as MetricsError {
            XCTAssertEqual(error.message, "cannot push metrics to http://gateway:9091: HTTP 400 text format parsing error in line 1; check the Pushgateway URL and that it is up")
        }
    }

    func testANonHTTPURLIsRefusedBeforeAnythingIsSent() async throws {
        let transport = OneAnswer(status: 200)
        do {
            try await MetricsPublisher.push("x", to: "ftp://gateway", transport: transport)
            XCTFail("not an http URL")
        } catch let error as MetricsError {
            XCTAssertTrue(error.message.contains("not an http:// or https:// URL"), error.message)
        }
        XCTAssertTrue(transport.requests.isEmpty)
    }
}
