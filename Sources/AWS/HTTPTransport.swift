import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP request as AWS clients send it.
public struct HTTPRequest: Sendable {
    /// `GET`, `PUT`, `POST`.
    public var method: String
    /// The full URL.
    public var url: URL
    /// Headers in order (signed ones included).
    public var headers: [(name: String, value: String)]
    /// The body (empty for none).
    public var body: [UInt8]
    /// The largest answer body accepted; a larger one fails the call with ``HTTPTransportError/Kind/responseTooLarge``.
    public var maxResponseBytes: Int

    /// Creates a request.
    public init(method: String, url: URL, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
                maxResponseBytes: Int = 1024 * 1024) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.maxResponseBytes = maxResponseBytes
    }
}

/// One HTTP answer.
public struct HTTPResponse: Sendable {
    /// The status code.
    public var status: Int
    /// The headers in order.
    public var headers: [(name: String, value: String)]
    /// The whole body.
    public var body: [UInt8]

    /// Creates an answer.
    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header of that name (case-insensitive).
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// Why a request got no complete answer. `requestMayHaveArrived` tells a caller whether the server may have acted on
/// it: false only when no connection was ever made, so that a non-idempotent call (a receive that hides messages)
/// is never repeated blindly.
public struct HTTPTransportError: Error, CustomStringConvertible, Sendable {
    /// What failed.
    public enum Kind: String, Sendable {
        /// No connection could be made (refused, unreachable, DNS, connect timeout): the request never left.
        case connectFailed
        /// The answer did not come in time.
        case timedOut
        /// The answer was larger than the request's `maxResponseBytes`.
        case responseTooLarge
        /// Anything else (connection reset, TLS, a protocol error).
        case failed
    }

    /// What failed.
    public let kind: Kind
    /// A one-line description of the underlying failure (library text; no request content).
    public let detail: String

    /// Creates an error.
    public init(kind: Kind, detail: String) {
        self.kind = kind
        self.detail = detail
    }

    /// Whether the server may have received (and acted on) the request.
    public var requestMayHaveArrived: Bool { kind != .connectFailed }

    /// The kind and the detail.
    public var description: String { "\(kind.rawValue): \(detail)" }
}

/// The one thing AWS clients need from HTTP: send a request, get the whole answer. The seam lets unit tests run
/// clients against a fake that captures requests.
public protocol HTTPTransport: Sendable {
    /// Sends a request and returns the complete answer (any status), or throws ``HTTPTransportError`` (or
    /// `CancellationError`) when there is no complete answer.
    func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse
}

/// The process-wide client behind ``AsyncHTTPClientTransport``: like `HTTPClient.shared`, but a failed connection
/// fails the attempt at once instead of being retried inside the client until the deadline, so that the callers'
/// own retry policies (and a fast "unreachable") decide. Never shut down, like `HTTPClient.shared`.
private let awsHTTPClient: HTTPClient = {
    var configuration = HTTPClient.Configuration.singletonConfiguration
    configuration.connectionPool.retryConnectionEstablishment = false
    configuration.timeout.connect = .seconds(5)
    return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
}()

/// The production transport: AsyncHTTPClient (connection pooling, TLS against the system trust store).
public struct AsyncHTTPClientTransport: HTTPTransport {
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Creates a transport on a client whose lifetime is the caller's (the default needs no shutdown).
    public init(httpClient: HTTPClient? = nil, logger: Logger = Logger(label: "piivault.http")) {
        self.httpClient = httpClient ?? awsHTTPClient
        self.logger = logger
    }

    public func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        guard timeout > .zero else {
            throw HTTPTransportError(kind: .timedOut, detail: "no time left for the call within its deadline")
        }
        var outgoing = HTTPClientRequest(url: request.url.absoluteString)
        outgoing.method = HTTPMethod(rawValue: request.method)
        for header in request.headers { outgoing.headers.add(name: header.name, value: header.value) }
        if !request.body.isEmpty { outgoing.body = .bytes(ByteBuffer(bytes: request.body)) }
        do {
            let response = try await httpClient.execute(outgoing, timeout: .nanoseconds(timeout.nanoseconds),
                                                        logger: logger)
            var buffer = try await response.body.collect(upTo: request.maxResponseBytes)
            let bytes = buffer.readBytes(length: buffer.readableBytes) ?? []
            return HTTPResponse(status: Int(response.status.code),
                                headers: response.headers.map { (name: $0.name, value: $0.value) }, body: bytes)
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Self.classify(error, limit: request.maxResponseBytes)
        }
    }

    /// Sorts a library error into the transport's kinds.
    static func classify(_ error: any Error, limit: Int) -> HTTPTransportError {
        let detail = (String(describing: error).split(whereSeparator: \.isNewline).first.map(String.init) ?? "")
        if error is NIOTooManyBytesError {
            return HTTPTransportError(kind: .responseTooLarge, detail: "the answer is larger than \(limit) bytes")
        }
        if error is NIOConnectionError { return HTTPTransportError(kind: .connectFailed, detail: detail) }
        if let ioError = error as? IOError,
           [ECONNREFUSED, ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL].contains(ioError.errnoCode) {
            return HTTPTransportError(kind: .connectFailed, detail: detail)
        }
        if let channelError = error as? ChannelError, case .connectTimeout = channelError {
            return HTTPTransportError(kind: .connectFailed, detail: detail)
        }
        if let httpError = error as? HTTPClientError {
            if httpError == .connectTimeout { return HTTPTransportError(kind: .connectFailed, detail: detail) }
            if httpError == .deadlineExceeded || httpError == .readTimeout || httpError == .writeTimeout {
                return HTTPTransportError(kind: .timedOut, detail: detail)
            }
        }
        return HTTPTransportError(kind: .failed, detail: detail)
    }
}

extension Duration {
    /// The duration in whole nanoseconds.
    public var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// The duration in seconds, as a `TimeInterval`.
    public var timeInterval: TimeInterval { Double(nanoseconds) / 1e9 }
}
