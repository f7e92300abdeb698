import Foundation

/// Something that hands out AWS credentials: the environment, a profile, STS, the container endpoint, IMDS.
///
/// A provider whose settings are absent throws ``AWSCredentialsNotFound`` (a chain then tries the next one); a
/// provider that is configured but fails throws ``AWSError``, which stops a chain.
public protocol AWSCredentialsProvider: Sendable {
    /// A short name for messages, e.g. `environment`, `web identity`, `container`.
    var name: String { get }
    /// Current credentials. Called before every signed request, so a provider that calls a service should cache.
    func credentials() async throws -> AWSCredentials
    /// Forgets cached credentials, so that the next ``credentials()`` asks the source again (after the service
    /// answered `ExpiredToken`).
    func invalidate() async
}

extension AWSCredentialsProvider {
    /// Nothing cached, nothing to forget.
    public func invalidate() async {}
}

/// Fixed credentials (tests, or keys handed over by a caller).
public struct StaticCredentialsProvider: AWSCredentialsProvider {
    public let name: String
    private let value: AWSCredentials

    /// Creates a provider that always answers `credentials`.
    public init(_ credentials: AWSCredentials, name: String = "static") {
        self.value = credentials
        self.name = name
    }

    public func credentials() async throws -> AWSCredentials { value }
}

/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN` (or `AWS_SECURITY_TOKEN`).
public struct EnvironmentCredentialsProvider: AWSCredentialsProvider {
    public let name = "environment"
    private let environment: AWSEnvironment

    /// Creates the provider over an environment.
    public init(environment: AWSEnvironment) { self.environment = environment }

    public func credentials() async throws -> AWSCredentials {
        let accessKey = environment["AWS_ACCESS_KEY_ID"], secretKey = environment["AWS_SECRET_ACCESS_KEY"]
        guard accessKey != nil || secretKey != nil else {
            throw AWSCredentialsNotFound("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set")
        }
        guard let accessKey, let secretKey else {
            let missing = accessKey == nil ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"
            throw AWSError(kind: .configuration,
                           message: "incomplete AWS credentials: \(missing) is not set; set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or unset both and use AWS_PROFILE or a role")
        }
        return AWSCredentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                              sessionToken: environment["AWS_SESSION_TOKEN"] ?? environment["AWS_SECURITY_TOKEN"],
                              source: name)
    }
}
