import AWS
import Foundation

/// An HTTP transport that records every request and answers from a closure: SQS and credentials-provider tests
/// without a server. Mutable state guarded by an NSLock.
final class FakeTransport: HTTPTransport, @unchecked Sendable {
    typealias Handler = @Sendable (HTTPRequest, Int) throws -> HTTPResponse
    private let lock = NSLock()
    private var captured: [HTTPRequest] = []
    private let handler: Handler

    /// `handler` gets each request and its 0-based index.
    init(_ handler: @escaping Handler) { self.handler = handler }

    var requests: [HTTPRequest] { lock.withLock { captured } }

    func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        let index = lock.withLock { () -> Int in
            captured.append(request)
            return captured.count - 1
        }
        return try handler(request, index)
    }
}

extension HTTPRequest {
    /// A header's value (case-insensitive).
    func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name.lowercased() }?.value }

    /// The access key id in the `Authorization` header's `Credential=AKID/...`.
    var signingAccessKey: String? {
        guard let authorization = header("Authorization"), let range = authorization.range(of: "Credential=") else {
            return nil
        }
        return String(authorization[range.upperBound...].prefix { $0 != "/" })
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// An XML answer with status 200.
func xmlAnswer(_ body: String) -> HTTPResponse {
    HTTPResponse(status: 200, headers: [(name: "Content-Type", value: "text/xml")], body: Array(body.utf8))
}

/// A query-protocol error answer.
func xmlError(_ status: Int, code: String, message: String = "") -> HTTPResponse {
    HTTPResponse(status: status, body: Array(
        "<ErrorResponse><Error><Type>Sender</Type><Code>\(code)</Code><Message>\(message)</Message></Error></ErrorResponse>".utf8))
}

/// A provider that hands out numbered credentials (`AKID1`, `AKID2`, ...) valid for `lifetime`, counting calls.
/// An actor: the counter is its isolated state.
actor CountingProvider: AWSCredentialsProvider {
    nonisolated let name = "counting"
    private let lifetime: TimeInterval?
    private let now: @Sendable () -> Date
    private(set) var calls = 0

    init(lifetime: TimeInterval?, now: @escaping @Sendable () -> Date = { Date() }) {
        self.lifetime = lifetime
        self.now = now
    }

    func credentials() async throws -> AWSCredentials {
        calls += 1
        return AWSCredentials(accessKeyId: "AKID\(calls)", secretAccessKey: "SECRET\(calls)-never-shown",
                              sessionToken: "TOKEN\(calls)-never-shown",
                              expiration: lifetime.map { now().addingTimeInterval($0) }, source: name)
    }
}

/// A settable clock. Guarded by an NSLock.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current = Date(timeIntervalSince1970: 1_800_000_000)
    var now: Date { lock.withLock { current } }
    func advance(_ seconds: TimeInterval) { lock.withLock { current = current.addingTimeInterval(seconds) } }
}
