import Foundation
import Logging

/// Tries providers in order; the first that has credentials wins and is used from then on (as the SDKs do), so a
/// refresh asks the same source again. When none has any, one line names each provider tried and why it had nothing.
///
/// An actor: the chosen provider is its isolated state.
public actor DefaultCredentialsChain: AWSCredentialsProvider {
    public nonisolated let name = "default chain"
    /// The providers, in the order they are tried.
    public nonisolated let providers: [any AWSCredentialsProvider]
    private let logger: Logger
    private var chosen: (any AWSCredentialsProvider)?

    /// Creates a chain over explicit providers.
    public init(providers: [any AWSCredentialsProvider], logger: Logger = Logger(label: "piivault.aws")) {
        self.providers = providers
        self.logger = logger
    }

    public func credentials() async throws -> AWSCredentials {
        if let chosen {
            do {
                return try await chosen.credentials()
            } catch let notFound as AWSCredentialsNotFound {
                // Its settings vanished mid-run (a token file removed): that is no longer "try the next one".
                throw AWSError(kind: .noCredentials,
                               message: "the AWS credentials provider in use (\(chosen.name)) has none any more: \(notFound.reason); check its settings")
            }
        }
        var reasons: [String] = []
        for provider in providers {
            do {
                let credentials = try await provider.credentials()
                logger.debug("AWS credentials provider chosen", metadata: ["provider": "\(provider.name)"])
                chosen = provider
                return credentials
            } catch let notFound as AWSCredentialsNotFound {
                logger.trace("AWS credentials provider has nothing", metadata: [
                    "provider": "\(provider.name)", "reason": "\(notFound.reason)",
                ])
                reasons.append("\(provider.name): \(notFound.reason)")
            }
        }
        throw AWSError(
            kind: .noCredentials,
            message: "no AWS credentials found (tried \(reasons.joined(separator: "; "))); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE naming a profile with keys, a credential_process or a role_arn, or run with a web identity token, a container role or an instance role")
    }

    public func invalidate() async {
        await chosen?.invalidate()
    }
}

extension DefaultCredentialsChain {
    /// The chain in the SDKs' order, over the given environment and shared files: environment, web identity, shared
    /// files (role, static keys, credential_process), container, instance metadata.
    ///
    /// - Parameters:
    ///   - region: the region found elsewhere (the queue URL), for the regional STS endpoint when no setting names one.
    ///   - transport: how providers that call a service (STS, the container endpoint, IMDS) reach it.
    public static func standard(environment: AWSEnvironment, config: AWSSharedConfig, region: String? = nil,
                                transport: any HTTPTransport = AsyncHTTPClientTransport(),
                                logger: Logger = Logger(label: "piivault.aws")) -> DefaultCredentialsChain {
        DefaultCredentialsChain(providers: [
            EnvironmentCredentialsProvider(environment: environment),
            WebIdentityCredentialsProvider(environment: environment, config: config, fallbackRegion: region,
                                           transport: transport, logger: logger),
            ProfileCredentialsProvider(environment: environment, config: config, fallbackRegion: region,
                                       transport: transport, logger: logger),
            ContainerCredentialsProvider(environment: environment, transport: transport, logger: logger),
            InstanceMetadataCredentialsProvider(environment: environment, profile: config.selectedProfile,
                                                transport: transport, logger: logger),
        ], logger: logger)
    }
}
