import Foundation
import Logging

/// Container credentials (ECS task roles, EKS Pod Identity): `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` on
/// `http://169.254.170.2`, or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with an optional `Authorization` header from
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` (read at every refresh) or `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
///
/// A full URI must be https, or http to a host the SDKs allow: loopback, 169.254.170.2 (ECS), 169.254.170.23 or
/// fd00:ec2::23 (EKS Pod Identity). `PIIVAULT_AWS_CONTAINER_ENDPOINT` replaces `http://169.254.170.2` for the
/// relative URI (for tests).
public struct ContainerCredentialsProvider: AWSCredentialsProvider {
    public let name = "container"
    private let environment: AWSEnvironment
    private let transport: any HTTPTransport
    private let logger: Logger
    static let timeout: Duration = .seconds(2)
    static let attempts = 2

    /// Creates the provider.
    public init(environment: AWSEnvironment, transport: any HTTPTransport, logger: Logger) {
        self.environment = environment
        self.transport = transport
        self.logger = logger
    }

    public func credentials() async throws -> AWSCredentials {
        let url: URL
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] {
            let base = environment["PIIVAULT_AWS_CONTAINER_ENDPOINT"] ?? "http://169.254.170.2"
            guard let full = URL(string: base + (relative.hasPrefix("/") ? "" : "/") + relative) else {
                throw AWSError(kind: .configuration,
                               message: "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI is not a valid path; check the task definition")
            }
            url = full
        } else if let fullText = environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"] {
            guard let full = URL(string: fullText), full.host != nil, Self.isAllowed(full) else {
                throw AWSError(kind: .configuration,
                               message: "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an https URL, or http to loopback, 169.254.170.2, 169.254.170.23 or fd00:ec2::23; fix the variable")
            }
            url = full
        } else {
            throw AWSCredentialsNotFound(
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set")
        }
        var headers: [(name: String, value: String)] = [(name: "Accept", value: "application/json")]
        if let token = try authorizationToken() { headers.append((name: "Authorization", value: token)) }
        let request = HTTPRequest(method: "GET", url: url, headers: headers, maxResponseBytes: 64 * 1024)
        let context = "container credentials from \(redactedURL(url.absoluteString))"
        var lastError: AWSError?
        for attempt in 1...Self.attempts {
            let response: HTTPResponse
            do {
                response = try await transport.send(request, timeout: Self.timeout)
            } catch let error as HTTPTransportError where error.kind == .tlsFailed {
                throw AWSError(kind: .unavailable,
                               message: "cannot get \(context): TLS verification failed (\(redactingURLs(in: error.detail))); \(error.tlsAdvice)")
            } catch let error as HTTPTransportError {
                lastError = AWSError(kind: .unavailable,
                                     message: "cannot get \(context) (\(redactingURLs(in: error.detail))); check that the task or pod has a role and the endpoint is reachable")
                logger.debug("container credentials request failed", metadata: ["attempt": "\(attempt)"])
                continue
            }
            logger.debug("container credentials request", metadata: ["status": "\(response.status)"])
            if (200..<300).contains(response.status) {
                return try Self.decode(response.body, context: context, source: name)
            }
            let refused = [401, 403].contains(response.status)
            lastError = AWSError(
                kind: refused ? .credentialsRefused : .unavailable,
                message: "\(context) answered HTTP \(response.status); \(refused ? "check AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (or AWS_CONTAINER_AUTHORIZATION_TOKEN) and the pod identity association" : "check the task or pod role")")
            if response.status < 500 { break }
        }
        throw lastError!
    }

    private func authorizationToken() throws -> String? {
        let token: String
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw AWSError(kind: .configuration,
                               message: "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(file); check that the token volume is mounted")
            }
            token = text.trimmed
        } else if let value = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"] {
            token = value
        } else {
            return nil
        }
        guard !token.contains("\r"), !token.contains("\n") else {
            throw AWSError(kind: .configuration,
                           message: "the container authorization token contains a line break; fix AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)")
        }
        return token
    }

    /// Whether a full URI may be used: https anywhere, http only to the hosts the SDKs allow.
    static func isAllowed(_ url: URL) -> Bool { ContainerCredentialsProviderHosts.isAllowed(url) }

    /// Reads `{"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}`, the form the container endpoint and IMDS
    /// both answer in.
    static func decode(_ body: [UInt8], context: String, source: String) throws -> AWSCredentials {
        try ContainerCredentialsProviderHosts.decode(body, context: context, source: source)
    }
}

/// The container provider's host rule and answer format, public for tests.
public enum ContainerCredentialsProviderHosts {
    /// Whether a full URI may be used: https anywhere, http only to loopback, 169.254.170.2, 169.254.170.23 and
    /// fd00:ec2::23.
    public static func isAllowed(_ url: URL) -> Bool {
        guard let scheme = url.scheme?.lowercased(), let rawHost = url.host?.lowercased() else { return false }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        let host = rawHost.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if ["localhost", "::1", "169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(host) { return true }
        let octets = host.split(separator: ".")
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    static func decode(_ body: [UInt8], context: String, source: String) throws -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
              let accessKey = object["AccessKeyId"] as? String, let secretKey = object["SecretAccessKey"] as? String
        else {
            throw AWSError(kind: .invalidResponse, message: "\(context): the answer holds no credentials")
        }
        let expiration = (object["Expiration"] as? String).flatMap(parseISO8601)
        return AWSCredentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                              sessionToken: object["Token"] as? String, expiration: expiration, source: source)
    }
}
