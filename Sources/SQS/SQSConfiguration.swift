import Foundation
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

/// Everything the client needs: credentials, region, endpoint, protocol, retries and timeouts.
public struct SQSConfiguration: Sendable {
    /// The signing credentials.
    public var credentials: SigV4.Credentials
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

    /// Creates a configuration from explicit values.
    public init(credentials: SigV4.Credentials, region: String, endpoint: URL, wireProtocol: SQSWireProtocol = .query,
                retry: SQSRetryPolicy = SQSRetryPolicy(), callTimeout: Duration = .seconds(10)) {
        self.credentials = credentials
        self.region = region
        self.endpoint = endpoint
        self.wireProtocol = wireProtocol
        self.retry = retry
        self.callTimeout = callTimeout
    }

    /// Resolves the configuration the way the AWS CLI and SDKs do.
    ///
    /// - Credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`); else the profile
    ///   (`profile` argument, `AWS_PROFILE`, `AWS_DEFAULT_PROFILE`, else `default`) from the credentials file
    ///   (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`) and then the config file (`AWS_CONFIG_FILE`, else
    ///   `~/.aws/config`).
    /// - Region: `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, the region in an AWS queue URL's host;
    ///   with a custom endpoint (an emulator) and none of these, `us-east-1`.
    /// - Endpoint: `endpointURL`, `AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, the profile's `endpoint_url`, the queue
    ///   URL's scheme, host and port, else `https://sqs.REGION.amazonaws.com`.
    ///
    /// - Parameters:
    ///   - environment: the process environment (injectable for tests).
    ///   - homeDirectory: where `~/.aws` lives.
    public static func resolve(
        environment: [String: String], homeDirectory: String, queueURL: String? = nil, endpointURL: String? = nil,
        profile: String? = nil, wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
        callTimeout: Duration = .seconds(10)
    ) throws -> SQSConfiguration {
        func env(_ name: String) -> String? {
            guard let value = environment[name]?.trimmingCharacters(in: .whitespaces), !value.isEmpty else { return nil }
            return value
        }
        let home = URL(fileURLWithPath: homeDirectory)
        let credentialsPath = env("AWS_SHARED_CREDENTIALS_FILE").map(expandTilde(home: homeDirectory))
            ?? home.appendingPathComponent(".aws/credentials").path
        let configPath = env("AWS_CONFIG_FILE").map(expandTilde(home: homeDirectory))
            ?? home.appendingPathComponent(".aws/config").path
        let profileExplicit = profile ?? env("AWS_PROFILE") ?? env("AWS_DEFAULT_PROFILE")
        let profileName = profileExplicit ?? "default"
        let credentialsFile = try readINI(credentialsPath)
        let configFile = try readINI(configPath)
        // ~/.aws/credentials names sections `[name]`; ~/.aws/config names them `[profile name]` (but `[default]`).
        let credentialsSection = credentialsFile?[profileName]
        let configSection = configFile?["profile \(profileName)"] ?? (profileName == "default" ? configFile?["default"] : nil)
        if let profileExplicit, env("AWS_ACCESS_KEY_ID") == nil, credentialsSection == nil, configSection == nil {
            throw SQSError(
                kind: .configuration,
                message: "AWS profile \"\(profileExplicit)\" not found in \(credentialsPath) or \(configPath); check AWS_PROFILE or create the profile (`aws configure --profile \(profileExplicit)`)")
        }

        // Credentials.
        let credentials: SigV4.Credentials
        let accessKey = env("AWS_ACCESS_KEY_ID"), secretKey = env("AWS_SECRET_ACCESS_KEY")
        if accessKey != nil || secretKey != nil {
            guard let accessKey, let secretKey else {
                let missing = accessKey == nil ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY"
                throw SQSError(kind: .missingCredentials,
                               message: "incomplete AWS credentials: \(missing) is not set; set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or unset both and use AWS_PROFILE")
            }
            credentials = SigV4.Credentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                                            sessionToken: env("AWS_SESSION_TOKEN"))
        } else if let section = [credentialsSection, configSection].compactMap({ $0 }).first(where: {
            $0["aws_access_key_id"] != nil && $0["aws_secret_access_key"] != nil
        }) {
            credentials = SigV4.Credentials(
                accessKeyId: section["aws_access_key_id"]!, secretAccessKey: section["aws_secret_access_key"]!,
                sessionToken: section["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 })
        } else {
            throw SQSError(
                kind: .missingCredentials,
                message: "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE naming a profile with keys in \(credentialsPath)")
        }

        // Endpoint (before the region, because an emulator endpoint lets the region default).
        let queue = queueURL.flatMap { URL(string: $0) }.flatMap { $0.host == nil ? nil : $0 }
        let explicitEndpoint = endpointURL.flatMap { $0.isEmpty ? nil : $0 } ?? env("AWS_ENDPOINT_URL_SQS")
            ?? env("AWS_ENDPOINT_URL") ?? configSection?["endpoint_url"]
        var endpointFromSettings: URL?
        if let explicitEndpoint {
            guard let url = URL(string: explicitEndpoint), let scheme = url.scheme?.lowercased(),
                  scheme == "http" || scheme == "https", url.host != nil
            else {
                throw SQSError(kind: .configuration,
                               message: "invalid SQS endpoint URL \"\(explicitEndpoint)\"; give an http:// or https:// URL such as http://127.0.0.1:4566")
            }
            endpointFromSettings = url
        } else if let queue {
            endpointFromSettings = originOf(queue)
        }

        // Region.
        let regionFromQueue = (endpointFromSettings ?? queue).flatMap { awsRegion(inHost: $0.host ?? "") }
        let isAWSHost = (endpointFromSettings?.host).map { $0.hasSuffix(".amazonaws.com") || $0.hasSuffix(".amazonaws.com.cn") } ?? true
        guard let region = env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? configSection?["region"]
            ?? regionFromQueue ?? (isAWSHost ? nil : "us-east-1")
        else {
            throw SQSError(kind: .configuration,
                           message: "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION, or `region` in the profile in \(configPath))")
        }
        let endpoint = endpointFromSettings ?? URL(string: "https://sqs.\(region).amazonaws.com")!
        return SQSConfiguration(credentials: credentials, region: region, endpoint: endpoint,
                                wireProtocol: wireProtocol, retry: retry, callTimeout: callTimeout)
    }

    /// ``resolve(environment:homeDirectory:queueURL:endpointURL:profile:wireProtocol:retry:callTimeout:)`` with this
    /// process's environment and the user's home directory (`HOME`, else the account's).
    public static func fromProcessEnvironment(
        queueURL: String? = nil, endpointURL: String? = nil, profile: String? = nil,
        wireProtocol: SQSWireProtocol = .query, retry: SQSRetryPolicy = SQSRetryPolicy(),
        callTimeout: Duration = .seconds(10)
    ) throws -> SQSConfiguration {
        let environment = ProcessInfo.processInfo.environment
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return try resolve(environment: environment, homeDirectory: home, queueURL: queueURL, endpointURL: endpointURL,
                           profile: profile, wireProtocol: wireProtocol, retry: retry, callTimeout: callTimeout)
    }

    /// Scheme, host and port of a URL, with the path `/`.
    static func originOf(_ url: URL) -> URL? {
        var components = URLComponents()
        components.scheme = url.scheme
        components.host = url.host
        components.port = url.port
        components.path = "/"
        return components.url
    }

    /// The region in `sqs.REGION.amazonaws.com` or `REGION.queue.amazonaws.com`.
    static func awsRegion(inHost host: String) -> String? {
        let labels = host.lowercased().split(separator: ".")
        guard labels.count >= 4, host.lowercased().contains(".amazonaws.com") else { return nil }
        if labels[0] == "sqs" { return String(labels[1]) }
        if labels[1] == "queue" { return String(labels[0]) }
        return nil
    }

    private static func expandTilde(home: String) -> (String) -> String {
        { path in path.hasPrefix("~/") ? home + "/" + path.dropFirst(2) : path }
    }

    /// Reads an AWS shared INI file: `[section]`, `key = value`; comments start with `#` or `;`; indented lines
    /// (nested settings such as `s3 =` blocks) are ignored. A missing file is nil, not an error.
    static func readINI(_ path: String) throws -> [String: [String: String]]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SQSError(kind: .configuration, message: "cannot read \(path); check its permissions")
        }
        return parseINI(text)
    }

    /// Parses the text of an AWS shared INI file (see ``readINI(_:)``).
    static func parseINI(_ text: String) -> [String: [String: String]] {
        var sections: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }) {
            if rawLine.first == " " || rawLine.first == "\t" { continue }
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().split(separator: " ", omittingEmptySubsequences: true)
                    .joined(separator: " ")
                current = name
                if sections[name] == nil { sections[name] = [:] }
                continue
            }
            guard let current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            sections[current]?[key] = value
        }
        return sections
    }
}
