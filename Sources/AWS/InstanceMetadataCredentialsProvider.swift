import Foundation
import Logging

/// EC2 instance-role credentials from the instance metadata service, IMDSv2 only: a `PUT /latest/api/token` for a
/// session token, then `GET /latest/meta-data/iam/security-credentials/` (the role's name) and
/// `GET .../security-credentials/ROLE`, each with the token. `AWS_EC2_METADATA_DISABLED=true` turns it off;
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` (or the profile's `ec2_metadata_service_endpoint`) moves it. Short timeouts
/// and one retry, so that a machine without IMDS is done in a few seconds.
public struct InstanceMetadataCredentialsProvider: AWSCredentialsProvider {
    public let name = "instance metadata"
    private let environment: AWSEnvironment
    private let profile: AWSProfile?
    private let transport: any HTTPTransport
    private let logger: Logger
    static let timeout: Duration = .seconds(1)
    static let attempts = 2

    /// Creates the provider.
    public init(environment: AWSEnvironment, profile: AWSProfile?, transport: any HTTPTransport, logger: Logger) {
        self.environment = environment
        self.profile = profile
        self.transport = transport
        self.logger = logger
    }

    public func credentials() async throws -> AWSCredentials {
        if environment.isTrue("AWS_EC2_METADATA_DISABLED") {
            throw AWSCredentialsNotFound("AWS_EC2_METADATA_DISABLED is true")
        }
        let endpointText = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
            ?? profile?["ec2_metadata_service_endpoint"]
            ?? (environment["AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE"]?.lowercased() == "ipv6"
                ? "http://[fd00:ec2::254]" : "http://169.254.169.254")
        guard let base = URL(string: endpointText.hasSuffix("/") ? String(endpointText.dropLast()) : endpointText),
              base.host != nil
        else {
            throw AWSError(kind: .configuration,
                           message: "AWS_EC2_METADATA_SERVICE_ENDPOINT \"\(endpointText)\" is not a URL; fix or unset it")
        }
        // No answer to the token request: no IMDS here (a laptop, a container without a role). The chain goes on.
        let token: String
        do {
            let answer = try await send(HTTPRequest(
                method: "PUT", url: base.appendingPathComponent("latest/api/token"),
                headers: [(name: "X-aws-ec2-metadata-token-ttl-seconds", value: "21600")], maxResponseBytes: 4096))
            guard answer.status == 200 else {
                throw AWSCredentialsNotFound("no IMDSv2 session token from \(base.absoluteString) (HTTP \(answer.status))")
            }
            token = String(decoding: answer.body, as: UTF8.self).trimmed
        } catch let error as HTTPTransportError {
            throw AWSCredentialsNotFound("no instance metadata service at \(base.absoluteString) (\(error.kind.rawValue))")
        }
        let tokenHeader = [(name: "X-aws-ec2-metadata-token", value: token)]
        let rolesURL = base.appendingPathComponent("latest/meta-data/iam/security-credentials/")
        let roles = try await get(rolesURL, headers: tokenHeader)
        guard roles.status == 200,
              let role = String(decoding: roles.body, as: UTF8.self).split(whereSeparator: \.isNewline).first
                .map({ String($0).trimmed }), !role.isEmpty
        else {
            throw AWSCredentialsNotFound("the instance has no IAM role (HTTP \(roles.status) from the metadata service)")
        }
        let credentials = try await get(rolesURL.appendingPathComponent(role), headers: tokenHeader)
        guard credentials.status == 200 else {
            throw AWSError(kind: .unavailable,
                           message: "the instance metadata service answered HTTP \(credentials.status) for the credentials of role \(role); check the instance profile")
        }
        return try ContainerCredentialsProvider.decode(credentials.body, context: "instance metadata role \(role)",
                                                       source: name)
    }

    private func get(_ url: URL, headers: [(name: String, value: String)]) async throws -> HTTPResponse {
        do {
            return try await send(HTTPRequest(method: "GET", url: url, headers: headers, maxResponseBytes: 64 * 1024))
        } catch let error as HTTPTransportError {
            throw AWSError(kind: .unavailable,
                           message: "the instance metadata service stopped answering (\(error.detail)); retry, or set AWS_EC2_METADATA_DISABLED=true and give credentials another way")
        }
    }

    /// One request with one retry after no answer.
    private func send(_ request: HTTPRequest) async throws -> HTTPResponse {
        var attempt = 1
        while true {
            do {
                return try await transport.send(request, timeout: Self.timeout)
            } catch let error as HTTPTransportError where attempt < Self.attempts {
                logger.debug("instance metadata request failed, retrying",
                             metadata: ["path": "\(request.url.path)", "error": "\(error.kind.rawValue)"])
                attempt += 1
            }
        }
    }
}
