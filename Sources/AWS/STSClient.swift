import Foundation
import Logging
import SigV4

/// The two STS calls the credentials chain needs: `AssumeRoleWithWebIdentity` (unsigned) and `AssumeRole` (signed
/// with the source credentials). Query protocol, XML answers.
public struct STSClient: Sendable {
    /// Where requests go.
    public let endpoint: URL
    /// The region in the signature scope.
    public let region: String
    private let transport: any HTTPTransport
    private let logger: Logger
    /// The time one attempt may take.
    static let timeout: Duration = .seconds(10)
    /// Attempts per call (a retry only after no answer or a 5xx or throttling answer).
    static let attempts = 3

    /// Creates a client for an explicit endpoint.
    public init(endpoint: URL, region: String, transport: any HTTPTransport, logger: Logger) {
        self.endpoint = endpoint
        self.region = region
        self.transport = transport
        self.logger = logger
    }

    /// The endpoint the way the SDKs find it: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`, the profile's
    /// `endpoint_url`, else `https://sts.REGION.amazonaws.com` (`.amazonaws.com.cn` in China; regional; the global `https://sts.amazonaws.com`
    /// with `us-east-1` when no region is known). `fallbackRegion` (e.g. from the queue URL) is used when the
    /// variables and the profile name none.
    public static func resolve(environment: AWSEnvironment, profile: AWSProfile?, fallbackRegion: String? = nil,
                               transport: any HTTPTransport, logger: Logger) throws -> STSClient {
        let region = AWSResolution.region(environment: environment, profile: profile) ?? fallbackRegion
        let explicit = try AWSResolution.explicitEndpoint(serviceVariable: "STS", environment: environment,
                                                          profile: profile)
        let endpoint = try explicit ?? region.map { try AWSResolution.defaultEndpoint(service: "sts", region: $0) }
            ?? URL(string: "https://sts.amazonaws.com")!
        return STSClient(endpoint: endpoint, region: region ?? "us-east-1", transport: transport, logger: logger)
    }

    /// `AssumeRoleWithWebIdentity`: exchanges an OIDC token (Kubernetes service-account token) for role credentials.
    public func assumeRoleWithWebIdentity(roleArn: String, sessionName: String, webIdentityToken: String,
                                          durationSeconds: Int? = nil, source: String) async throws -> AWSCredentials {
        var parameters = [("RoleArn", roleArn), ("RoleSessionName", sessionName),
                          ("WebIdentityToken", webIdentityToken)]
        if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
        return try await call("AssumeRoleWithWebIdentity", parameters, signWith: nil, roleArn: roleArn,
                              source: source)
    }

    /// `AssumeRole`: role credentials for the source credentials.
    public func assumeRole(roleArn: String, sessionName: String, externalID: String?, durationSeconds: Int?,
                           sourceCredentials: AWSCredentials, source: String) async throws -> AWSCredentials {
        var parameters = [("RoleArn", roleArn), ("RoleSessionName", sessionName)]
        if let externalID { parameters.append(("ExternalId", externalID)) }
        if let durationSeconds { parameters.append(("DurationSeconds", String(durationSeconds))) }
        return try await call("AssumeRole", parameters, signWith: sourceCredentials, roleArn: roleArn, source: source)
    }

    private func call(_ action: String, _ parameters: [(String, String)], signWith credentials: AWSCredentials?,
                      roleArn: String, source: String) async throws -> AWSCredentials {
        let form = ([("Action", action), ("Version", "2011-06-15")] + parameters)
            .map { SigV4.uriEncode($0.0) + "=" + SigV4.uriEncode($0.1) }.joined(separator: "&")
        let body = Array(form.utf8)
        let context = "STS \(action) for \(roleArn) at \(endpoint.absoluteString)"
        var lastError: AWSError?
        for attempt in 1...Self.attempts {
            var headers = [(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")]
            if let credentials {
                headers = SigV4.sign(method: "POST", url: endpoint, headers: headers,
                                     payloadHash: SigV4.hexSHA256(body), credentials: credentials.signing,
                                     region: region, service: "sts", date: Date())
            }
            let response: HTTPResponse
            do {
                response = try await transport.send(HTTPRequest(method: "POST", url: endpoint, headers: headers,
                                                                body: body, maxResponseBytes: 1024 * 1024),
                                                    timeout: Self.timeout)
            } catch let error as HTTPTransportError where error.kind == .tlsFailed {
                // The same certificate would fail again: no retry.
                throw AWSError(kind: .unavailable,
                               message: "\(context): TLS verification of STS failed (\(error.detail)); \(error.tlsAdvice)")
            } catch let error as HTTPTransportError {
                lastError = AWSError(kind: .unavailable,
                                     message: "\(context): cannot reach STS (\(error.detail)); check AWS_ENDPOINT_URL_STS, the region and the network")
                logger.debug("STS call failed", metadata: ["action": "\(action)", "attempt": "\(attempt)"])
                if attempt < Self.attempts { try await Task.sleep(for: .milliseconds(200 * attempt)) }
                continue
            }
            logger.debug("STS call", metadata: ["action": "\(action)", "status": "\(response.status)"])
            let tree = XMLElementNode.parse(response.body)
            if (200..<300).contains(response.status) {
                guard let node = tree?.descendants("Credentials").first,
                      let accessKey = node.childText("AccessKeyId"), let secretKey = node.childText("SecretAccessKey"),
                      let token = node.childText("SessionToken"),
                      let expiration = node.childText("Expiration").flatMap(parseISO8601)
                else {
                    throw AWSError(kind: .invalidResponse,
                                   message: "\(context): the answer holds no credentials; check that the endpoint is STS")
                }
                return AWSCredentials(accessKeyId: accessKey.trimmed, secretAccessKey: secretKey.trimmed,
                                      sessionToken: token.trimmed, expiration: expiration, source: source)
            }
            let code = tree?.descendants("Code").first?.text.trimmed ?? "HTTP \(response.status)"
            let retryable = response.status >= 500 || response.status == 429
                || ["Throttling", "IDPCommunicationError", "RequestLimitExceeded"].contains(code)
            // STS's own text can echo parts of the request; only the code is kept.
            lastError = AWSError(
                kind: retryable ? .unavailable : .credentialsRefused,
                message: "\(context) was refused with \(code); check the role's trust policy, the role ARN, the token or source credentials of \(source), and the system clock")
            if !retryable { break }
            if attempt < Self.attempts { try await Task.sleep(for: .milliseconds(200 * attempt)) }
        }
        throw lastError!
    }
}

extension String {
    var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// Parses `2026-11-25T07:35:10Z`, with or without fractional seconds.
func parseISO8601(_ text: String) -> Date? {
    let text = text.trimmed
    let plain = ISO8601DateFormatter()
    if let date = plain.date(from: text) { return date }
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return fractional.date(from: text)
}
