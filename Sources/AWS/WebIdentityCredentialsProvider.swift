import Foundation
import Logging

/// Web identity (EKS IRSA and other OIDC federations): `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`
/// (+ `AWS_ROLE_SESSION_NAME`), or `web_identity_token_file` + `role_arn` (+ `role_session_name`) in the selected
/// profile, exchanged with STS `AssumeRoleWithWebIdentity`. The token file is read again at every refresh, because
/// Kubernetes rotates it.
public struct WebIdentityCredentialsProvider: AWSCredentialsProvider {
    public let name = "web identity"
    private let environment: AWSEnvironment
    private let config: AWSSharedConfig
    private let transport: any HTTPTransport
    private let logger: Logger
    private let fallbackRegion: String?

    /// Creates the provider; `fallbackRegion` picks the regional STS endpoint when no setting names a region.
    public init(environment: AWSEnvironment, config: AWSSharedConfig, fallbackRegion: String? = nil,
                transport: any HTTPTransport, logger: Logger) {
        self.fallbackRegion = fallbackRegion
        self.environment = environment
        self.config = config
        self.transport = transport
        self.logger = logger
    }

    public func credentials() async throws -> AWSCredentials {
        let profile = config.selectedProfile
        let tokenFile: String, roleArn: String, sessionName: String?
        if let file = environment["AWS_WEB_IDENTITY_TOKEN_FILE"] {
            guard let arn = environment["AWS_ROLE_ARN"] else {
                throw AWSError(kind: .configuration,
                               message: "AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not; set the role to assume (on EKS, annotate the service account with eks.amazonaws.com/role-arn)")
            }
            (tokenFile, roleArn, sessionName) = (file, arn, environment["AWS_ROLE_SESSION_NAME"])
        } else if let file = profile?["web_identity_token_file"], let arn = profile?["role_arn"] {
            (tokenFile, roleArn, sessionName) = (environment.expandingTilde(file), arn, profile?["role_session_name"])
        } else {
            throw AWSCredentialsNotFound("AWS_WEB_IDENTITY_TOKEN_FILE not set")
        }
        let token: String
        do {
            token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmed
        } catch {
            throw AWSError(kind: .configuration,
                           message: "cannot read the web identity token file \(tokenFile); check AWS_WEB_IDENTITY_TOKEN_FILE and that the token volume is mounted")
        }
        guard !token.isEmpty else {
            throw AWSError(kind: .configuration,
                           message: "the web identity token file \(tokenFile) is empty; check the token volume")
        }
        let sts = try STSClient.resolve(environment: environment, profile: profile, fallbackRegion: fallbackRegion,
                                        transport: transport, logger: logger)
        return try await sts.assumeRoleWithWebIdentity(
            roleArn: roleArn, sessionName: sessionName ?? defaultSessionName(), webIdentityToken: token,
            source: name)
    }
}

/// `piivault-<seconds since 1970>`, like botocore's `botocore-session-<seconds>`.
func defaultSessionName() -> String { "piivault-\(Int(Date().timeIntervalSince1970))" }
