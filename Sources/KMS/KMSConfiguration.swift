import AWS
import Foundation
import Logging

/// Everything the KMS client needs: where credentials come from, region, endpoint, retries and timeouts.
public struct KMSConfiguration: Sendable {
    /// Where each request's credentials come from; asked before every attempt.
    public var credentialsProvider: any AWSCredentialsProvider
    /// The AWS region used in the signature scope.
    public var region: String
    /// The endpoint requests are sent to, e.g. `https://kms.eu-west-1.amazonaws.com` or `http://127.0.0.1:5000`.
    public var endpoint: URL
    /// Attempts per call, the first included, for throttled, 5xx, timed-out and unreachable calls.
    public var maxAttempts: Int
    /// The backoff ceiling of the first retry; it doubles with each retry (full jitter).
    public var baseDelay: Duration
    /// The time one call may take across all its attempts and pauses.
    public var totalDeadline: Duration
    /// The time one attempt may take.
    public var callTimeout: Duration
    /// How requests are sent: the transport the credentials providers use too (one CA bundle for all).
    public var transport: any HTTPTransport

    /// Creates a configuration from explicit values.
    public init(credentialsProvider: any AWSCredentialsProvider, region: String, endpoint: URL, maxAttempts: Int = 4,
                baseDelay: Duration = .milliseconds(100), totalDeadline: Duration = .seconds(30),
                callTimeout: Duration = .seconds(10), transport: any HTTPTransport = AsyncHTTPClientTransport()) {
        self.credentialsProvider = credentialsProvider
        self.region = region
        self.endpoint = endpoint
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.totalDeadline = totalDeadline
        self.callTimeout = callTimeout
        self.transport = transport
    }

    /// Resolves the configuration the way the AWS CLI and SDKs do (as ``SQS``'s configuration does).
    ///
    /// - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, the region of a key ARN
    ///   (`arn:aws:kms:REGION:...`); with a custom endpoint (an emulator) and none of these, `us-east-1`.
    /// - Endpoint: `AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, else
    ///   `https://kms.REGION.amazonaws.com`.
    /// - Credentials: `credentialsProvider` if given, else the default chain behind a ``CachingCredentialsProvider``.
    /// - Transport: `transport` if given, else AsyncHTTPClient verifying TLS against `AWS_CA_BUNDLE`, the profile's
    ///   `ca_bundle`, else the system trust store.
    ///
    /// - Throws: ``AWSError`` (`configuration`) for a profile that does not exist, a malformed endpoint or no region;
    ///   (`invalidCABundle`) for a CA bundle that cannot be read or holds no certificate.
    public static func resolve(
        environment: AWSEnvironment, keyID: String? = nil, profile: String? = nil,
        credentialsProvider: (any AWSCredentialsProvider)? = nil, transport: (any HTTPTransport)? = nil,
        logger: Logger = Logger(label: "piivault.aws")
    ) throws -> KMSConfiguration {
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
        let explicit = try AWSResolution.explicitEndpoint(serviceVariable: "KMS", environment: environment,
                                                          profile: selected)
        let isAWSHost = (explicit?.host).map(AWSResolution.isAWSHost) ?? true
        guard let region = AWSResolution.region(environment: environment, profile: selected)
            ?? keyID.flatMap(regionOfARN) ?? explicit?.host.flatMap(regionOfKMSHost)
            ?? (isAWSHost ? nil : "us-east-1")
        else {
            throw AWSError(kind: .configuration,
                           message: "no AWS region for KMS: set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the profile in \(shared.configPath)), or give the KMS key as an ARN; for a local emulator, set its endpoint instead (AWS_ENDPOINT_URL_KMS), and the region defaults to us-east-1")
        }
        let endpoint = try explicit ?? AWSResolution.defaultEndpoint(service: "kms", region: region)
        let provider = credentialsProvider ?? CachingCredentialsProvider(
            DefaultCredentialsChain.standard(environment: environment, config: shared, region: region,
                                             transport: transport, logger: logger),
            logger: logger)
        return KMSConfiguration(credentialsProvider: provider, region: region, endpoint: endpoint, transport: transport)
    }

    /// The region of a KMS key or alias ARN (`arn:aws:kms:REGION:ACCOUNT:key/...`); nil for anything else.
    static func regionOfARN(_ keyID: String) -> String? {
        let parts = keyID.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count >= 6, parts[0] == "arn", parts[2] == "kms", !parts[3].isEmpty else { return nil }
        return String(parts[3])
    }

    /// The region in `kms.REGION.amazonaws.com` (or `kms-fips.REGION...`).
    static func regionOfKMSHost(_ host: String) -> String? {
        let labels = host.lowercased().split(separator: ".")
        guard labels.count >= 4, AWSResolution.isAWSHost(host), labels[0].hasPrefix("kms") else { return nil }
        return String(labels[1])
    }
}
