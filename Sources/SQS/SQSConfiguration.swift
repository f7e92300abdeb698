import AWS
import Foundation
import Logging
import SigV4

/// The wire protocol used to talk to SQS.
public enum SQSWireProtocol: String, Sendable {
    /// `POST` form-encoded `Action=...&Version=2012-11-05`, XML answers. Understood by every SQS implementation,
    /// including LocalStack 0.14, so it is the default.
    case query
    /// `POST` JSON with `X-Amz-Target: AmazonSQS.<Action>` and `Content-Type: application/x-amz-json-1.0`.
    case json
}

/// How failed calls are retried: capped exponential backoff with full jitter, within a total deadline.
public struct SQSRetryPolicy: Sendable {
    /// Attempts per call, the first included (1 = no retry).
    public var maxAttempts: Int
    /// The backoff ceiling of the first retry; it doubles with each retry.
    public var baseDelay: Duration
    /// The largest backoff ceiling.
    public var maxDelay: Duration
    /// The time one call may take across all its attempts and pauses.
    public var totalDeadline: Duration

    /// Creates a policy.
    public init(maxAttempts: Int = 5, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5),
                totalDeadline: Duration = .seconds(60)) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.totalDeadline = totalDeadline
    }
}

/// Everything the client needs: where credentials come from, region, endpoint, protocol, retries and timeouts.
public struct SQSConfiguration: Sendable {
    /// Where each request's credentials come from; asked before every attempt, so refreshed credentials are used as
    /// soon as the provider has them.
    public var credentialsProvider: any AWSCredentialsProvider
    /// The AWS region used in the signature scope.
    public var region: String
    /// The endpoint requests are sent to, e.g. `https://sqs.eu-west-1.amazonaws.com` or `http://127.0.0.1:4566`.
    public var endpoint: URL
    /// Query/XML (default) or JSON.
    public var wireProtocol: SQSWireProtocol
    /// Retries of throttled, 5xx, timed-out and unreachable calls.
    public var retry: SQSRetryPolicy
    /// The time one attempt may take (a long-polling receive gets its wait time on top).
    public var callTimeout: Duration
    /// How requests are sent when the client is given no transport of its own: the one the credentials providers
    /// use too, so that every AWS request verifies TLS against the same CA bundle.
    public var transport: any HTTPTransport

    /// Creates a configuration from explicit values.
    public init(credentialsProvider: any AWSCredentialsProvider, region: String, endpoint: URL,
                wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
                callTimeout: Duration = .seconds(10), transport: any HTTPTransport = AsyncHTTPClientTransport()) {
        self.credentialsProvider = credentialsProvider
        self.region = region
        self.endpoint = endpoint
        self.wireProtocol = wireProtocol
        self.retry = retry
        self.callTimeout = callTimeout
        self.transport = transport
    }

    /// Creates a configuration with fixed keys.
    public init(credentials: SigV4.Credentials, region: String, endpoint: URL, wireProtocol: SQSWireProtocol = .query,
                retry: SQSRetryPolicy = SQSRetryPolicy(), callTimeout: Duration = .seconds(10)) {
        let fixed = AWSCredentials(accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey,
                                   sessionToken: credentials.sessionToken, source: "static")
        self.init(credentialsProvider: StaticCredentialsProvider(fixed), region: region, endpoint: endpoint,
                  wireProtocol: wireProtocol, retry: retry, callTimeout: callTimeout)
    }

    /// Resolves the configuration the way the AWS CLI and SDKs do.
    ///
    /// - Credentials: `credentialsProvider` if given, else the default chain (``DefaultCredentialsChain/standard``)
    ///   behind a ``CachingCredentialsProvider`` that refreshes `refreshLeadTime` before expiry. They are not fetched
    ///   here; the first request does that.
    /// - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, the region in an AWS queue URL's host;
    ///   with a custom endpoint (an emulator) and none of these, `us-east-1`.
    /// - Endpoint: `endpointURL`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, the queue
    ///   URL's scheme, host and port, else `https://sqs.REGION.amazonaws.com`.
    /// - Transport (SQS and the credentials providers): `transport` if given, else AsyncHTTPClient verifying TLS
    ///   against `AWS_CA_BUNDLE`, the profile's `ca_bundle`, else the system trust store.
    ///
    /// - Throws: ``AWSError`` (`configuration`) for a profile that does not exist, a malformed endpoint or no region;
    ///   (`invalidCABundle`) for a CA bundle that cannot be read or holds no certificate.
    public static func resolve(
        environment: AWSEnvironment, queueURL: String? = nil, endpointURL: String? = nil, profile: String? = nil,
        wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
        callTimeout: Duration = .seconds(10), credentialsProvider: (any AWSCredentialsProvider)? = nil,
        refreshLeadTime: TimeInterval = CachingCredentialsProvider.defaultRefreshLeadTime,
        transport: (any HTTPTransport)? = nil, logger: Logger = Logger(label: "piivault.aws")
    ) throws -> SQSConfiguration {
        let shared = try AWSSharedConfig.load(environment: environment, profile: profile)
        let selected = shared.selectedProfile
        // Also beside keys in the environment, as botocore (ProfileNotFound): a mistyped AWS_PROFILE is a mistake to
        // report, not a setting to ignore.
        if shared.profileIsExplicit, selected == nil {
            throw AWSError(
                kind: .configuration,
                message: "AWS profile \"\(shared.profileName)\" not found in \(shared.filesDescription); check AWS_PROFILE or create the profile (`aws configure --profile \(shared.profileName)`)")
        }
        let transport = try transport ?? AsyncHTTPClientTransport.resolve(environment: environment, profile: selected,
                                                                          logger: logger)

        // Endpoint (before the region, because an emulator endpoint lets the region default).
        let queue = queueURL.flatMap { URL(string: $0) }.flatMap { $0.host == nil ? nil : $0 }
        let endpointFromSettings = try AWSResolution.explicitEndpoint(
            serviceVariable: "SQS", explicit: endpointURL, environment: environment, profile: selected)
            ?? queue.flatMap(AWSResolution.origin(of:))
        let isAWSHost = (endpointFromSettings?.host).map(AWSResolution.isAWSHost) ?? true
        guard let region = AWSResolution.region(environment: environment, profile: selected,
                                                urls: [endpointFromSettings, queue])
            ?? (isAWSHost ? nil : "us-east-1")
        else {
            throw AWSError(kind: .configuration,
                           message: "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the profile in \(shared.configPath)); for a local emulator, set its endpoint instead (AWS_ENDPOINT_URL_SQS), and the region defaults to us-east-1")
        }
        let endpoint = try endpointFromSettings ?? AWSResolution.defaultEndpoint(service: "sqs", region: region)
        let provider = credentialsProvider ?? CachingCredentialsProvider(
            DefaultCredentialsChain.standard(environment: environment, config: shared, region: region,
                                             transport: transport, logger: logger),
            refreshLeadTime: refreshLeadTime, logger: logger)
        return SQSConfiguration(credentialsProvider: provider, region: region, endpoint: endpoint,
                                wireProtocol: wireProtocol, retry: retry, callTimeout: callTimeout,
                                transport: transport)
    }

    /// ``resolve(environment:queueURL:endpointURL:profile:wireProtocol:retry:callTimeout:credentialsProvider:refreshLeadTime:transport:logger:)``
    /// with explicit variables and home directory.
    public static func resolve(
        environment: [String: String], homeDirectory: String, queueURL: String? = nil, endpointURL: String? = nil,
        profile: String? = nil, wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
        callTimeout: Duration = .seconds(10)
    ) throws -> SQSConfiguration {
        try resolve(environment: AWSEnvironment(variables: environment, homeDirectory: homeDirectory),
                    queueURL: queueURL, endpointURL: endpointURL, profile: profile, wireProtocol: wireProtocol,
                    retry: retry, callTimeout: callTimeout)
    }

    /// ``resolve(environment:homeDirectory:queueURL:endpointURL:profile:wireProtocol:retry:callTimeout:)`` with this
    /// process's environment and the user's home directory (`HOME`, else the account's).
    public static func fromProcessEnvironment(
        queueURL: String? = nil, endpointURL: String? = nil, profile: String? = nil,
        wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
        callTimeout: Duration = .seconds(10)
    ) throws -> SQSConfiguration {
        try resolve(environment: .process, queueURL: queueURL, endpointURL: endpointURL, profile: profile,
                    wireProtocol: wireProtocol, retry: retry, callTimeout: callTimeout)
    }
}
