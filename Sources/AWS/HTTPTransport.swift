import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

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
        /// The TLS handshake failed: the server's certificate is not signed by a trusted CA, does not name the host,
        /// or the handshake broke off. The request never left.
        case tlsFailed
        /// Anything else (connection reset, a protocol error).
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
    public var requestMayHaveArrived: Bool { kind != .connectFailed && kind != .tlsFailed }

    /// What to do about a ``Kind/tlsFailed`` error, for the callers' messages.
    public var tlsAdvice: String {
        detail == Self.hostNameMismatch
            ? "use the host name the endpoint's certificate names in the endpoint URL"
            : "set AWS_CA_BUNDLE (or ca_bundle in the profile) to the PEM file of the CA that signed the endpoint's certificate"
    }

    /// The detail of a ``Kind/tlsFailed`` error whose certificate names another host.
    static let hostNameMismatch = "the server's certificate does not name this host"

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

/// The HTTP clients behind ``AsyncHTTPClientTransport``: one for the system trust store and one per CA bundle, each
/// made on first use and never shut down (like `HTTPClient.shared`; a process makes one or two). Unlike
/// `HTTPClient.shared`, a failed connection fails the attempt at once instead of being retried inside the client
/// until the deadline, so that the callers' own retry policies (and a fast "unreachable") decide.
private final class AWSHTTPClients: Sendable {
    static let shared = AWSHTTPClients()
    private let clients = NIOLockedValueBox<[String: HTTPClient]>([:])

    func client(caBundle: AWSCABundle?) -> HTTPClient {
        clients.withLockedValue { clients in Self.client(caBundle: caBundle, in: &clients) }
    }

    private static func client(caBundle: AWSCABundle?, in clients: inout [String: HTTPClient]) -> HTTPClient {
        let key = caBundle?.path ?? ""
        if let client = clients[key] { return client }
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        if let caBundle {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.trustRoots = .certificates(caBundle.certificates)
            configuration.tlsConfiguration = tls
        }
        let client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        clients[key] = client
        return client
    }
}

/// The production transport: AsyncHTTPClient (connection pooling, TLS verified against the system trust store or a
/// CA bundle).
public struct AsyncHTTPClientTransport: HTTPTransport {
    private let httpClient: HTTPClient
    private let logger: Logger

    /// Creates a transport on a client whose lifetime is the caller's (the default needs no shutdown).
    public init(httpClient: HTTPClient? = nil, logger: Logger = Logger(label: "piivault.http")) {
        self.httpClient = httpClient ?? AWSHTTPClients.shared.client(caBundle: nil)
        self.logger = logger
    }

    /// Creates a transport that verifies HTTPS endpoints against `caBundle` only (nil: the system trust store).
    public init(caBundle: AWSCABundle?, logger: Logger = Logger(label: "piivault.http")) {
        self.httpClient = AWSHTTPClients.shared.client(caBundle: caBundle)
        self.logger = logger
    }

    /// The transport the AWS settings ask for: verifying against `AWS_CA_BUNDLE` or the profile's `ca_bundle` when
    /// one is set, else against the system trust store.
    ///
    /// - Throws: ``AWSError`` (`invalidCABundle`) when the bundle cannot be read or holds no PEM certificate.
    public static func resolve(environment: AWSEnvironment, profile: AWSProfile?,
                               logger: Logger = Logger(label: "piivault.http")) throws -> AsyncHTTPClientTransport {
        let bundle = try AWSCABundle.resolve(environment: environment, profile: profile)
        if let bundle {
            logger.debug("verifying AWS endpoints against a CA bundle",
                         metadata: ["path": "\(bundle.path)", "from": "\(bundle.origin)",
                                    "certificates": "\(bundle.certificates.count)"])
        }
        return AsyncHTTPClientTransport(caBundle: bundle, logger: logger)
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
        if let tls = tlsFailure(error) { return HTTPTransportError(kind: .tlsFailed, detail: tls) }
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

    /// A short reason for a failed TLS handshake, instead of the library's text (BoringSSL's error stack); nil for
    /// any other error.
    static func tlsFailure(_ error: any Error) -> String? {
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            return HTTPTransportError.hostNameMismatch
        }
        if let sslError = error as? NIOSSLError, case .handshakeFailed(let underlying) = sslError {
            return String(describing: underlying).contains("CERTIFICATE_VERIFY_FAILED")
                ? "the server's certificate is not signed by a trusted CA" : "the TLS handshake failed"
        }
        return nil
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
