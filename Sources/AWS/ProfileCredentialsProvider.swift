import Foundation
import Logging

/// The selected profile of the shared files, as the CLI reads it: `role_arn` with `source_profile` or
/// `credential_source` (STS `AssumeRole`, with `external_id`, `duration_seconds`, `role_session_name`), else static
/// keys (`aws_access_key_id`, `aws_secret_access_key`, `aws_session_token`), else `credential_process`.
/// (`role_arn` with `web_identity_token_file` belongs to ``WebIdentityCredentialsProvider``.)
public struct ProfileCredentialsProvider: AWSCredentialsProvider {
    public let name = "shared files"
    private let environment: AWSEnvironment
    private let config: AWSSharedConfig
    private let transport: any HTTPTransport
    private let logger: Logger
    private let fallbackRegion: String?

    /// Creates the provider over the loaded shared files; `fallbackRegion` picks the regional STS endpoint when no
    /// setting names a region.
    public init(environment: AWSEnvironment, config: AWSSharedConfig, fallbackRegion: String? = nil,
                transport: any HTTPTransport = AsyncHTTPClientTransport(),
                logger: Logger = Logger(label: "piivault.aws")) {
        self.fallbackRegion = fallbackRegion
        self.environment = environment
        self.config = config
        self.transport = transport
        self.logger = logger
    }

    public func credentials() async throws -> AWSCredentials {
        guard let profile = config.selectedProfile else {
            throw AWSCredentialsNotFound("no profile \"\(config.profileName)\" in \(config.filesDescription)")
        }
        if profile["role_arn"] != nil && profile["web_identity_token_file"] != nil {
            throw AWSCredentialsNotFound("profile \"\(profile.name)\" uses web identity")
        }
        if let credentials = try await resolve(profile, visited: []) { return credentials }
        throw AWSCredentialsNotFound(
            "profile \"\(profile.name)\" has no keys, credential_process or role_arn")
    }

    /// A profile's credentials, nil when it has no source of any kind. `visited` stops `source_profile` loops.
    private func resolve(_ profile: AWSProfile, visited: [String]) async throws -> AWSCredentials? {
        let source = "profile \(profile.name)"
        if let roleArn = profile["role_arn"] {
            let sourceCredentials: AWSCredentials
            if let sourceName = profile["source_profile"] {
                if visited.contains(sourceName) && sourceName != profile.name {
                    throw AWSError(kind: .configuration,
                                   message: "profile \"\(profile.name)\": source_profile loop through \(visited.joined(separator: " -> ")); fix the profiles in \(config.configPath)")
                }
                guard let sourceProfile = config.profile(named: sourceName) else {
                    throw AWSError(kind: .configuration,
                                   message: "profile \"\(profile.name)\" names source_profile \"\(sourceName)\", which is not in \(config.filesDescription); create it or fix the name")
                }
                // A source profile that is the profile itself supplies its own static keys (as the CLI allows).
                let found = sourceName == profile.name
                    ? try Self.staticKeys(profile, source: source)
                    : try await resolve(sourceProfile, visited: visited + [profile.name])
                guard let found else {
                    throw AWSError(kind: .configuration,
                                   message: "source_profile \"\(sourceName)\" of profile \"\(profile.name)\" has no credentials; add keys or a credential_process to it")
                }
                sourceCredentials = found
            } else if let credentialSource = profile["credential_source"] {
                sourceCredentials = try await credentialsFrom(credentialSource, profile: profile)
            } else {
                throw AWSError(kind: .configuration,
                               message: "profile \"\(profile.name)\" has role_arn but neither source_profile nor credential_source; add one")
            }
            let sts = try STSClient.resolve(environment: environment, profile: config.selectedProfile,
                                            fallbackRegion: fallbackRegion, transport: transport, logger: logger)
            let duration = try profile["duration_seconds"].map { text -> Int in
                guard let seconds = Int(text), (900...43_200).contains(seconds) else {
                    throw AWSError(kind: .configuration,
                                   message: "profile \"\(profile.name)\": duration_seconds must be 900 to 43200; fix it")
                }
                return seconds
            }
            return try await sts.assumeRole(
                roleArn: roleArn, sessionName: profile["role_session_name"] ?? defaultSessionName(),
                externalID: profile["external_id"], durationSeconds: duration, sourceCredentials: sourceCredentials,
                source: "\(source) (role)")
        }
        if let keys = try Self.staticKeys(profile, source: source) { return keys }
        if let command = profile["credential_process"] {
            return try await CredentialProcess.run(command, profile: profile.name)
        }
        return nil
    }

    /// `credential_source`: `Environment`, `EcsContainer` or `Ec2InstanceMetadata`.
    private func credentialsFrom(_ credentialSource: String, profile: AWSProfile) async throws -> AWSCredentials {
        let provider: any AWSCredentialsProvider
        switch credentialSource {
        case "Environment": provider = EnvironmentCredentialsProvider(environment: environment)
        case "EcsContainer":
            provider = ContainerCredentialsProvider(environment: environment, transport: transport, logger: logger)
        case "Ec2InstanceMetadata":
            provider = InstanceMetadataCredentialsProvider(environment: environment, profile: profile,
                                                           transport: transport, logger: logger)
        default:
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile.name)\": credential_source \"\(credentialSource)\" is not Environment, EcsContainer or Ec2InstanceMetadata; fix it")
        }
        do {
            return try await provider.credentials()
        } catch let notFound as AWSCredentialsNotFound {
            throw AWSError(kind: .noCredentials,
                           message: "profile \"\(profile.name)\": credential_source \(credentialSource) has no credentials (\(notFound.reason))")
        }
    }

    /// The profile's static keys, nil when it has none; an error when only one of the pair is there.
    static func staticKeys(_ profile: AWSProfile, source: String) throws -> AWSCredentials? {
        let accessKey = profile["aws_access_key_id"], secretKey = profile["aws_secret_access_key"]
        guard accessKey != nil || secretKey != nil else { return nil }
        guard let accessKey, let secretKey else {
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile.name)\" has only one of aws_access_key_id and aws_secret_access_key; add the other")
        }
        return AWSCredentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                              sessionToken: profile["aws_session_token"], source: source)
    }
}
