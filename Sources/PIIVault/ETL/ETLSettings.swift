import Foundation
import Logging

/// The `etl` command's options as typed: nil where a flag was not given.
public struct ETLFlags: Sendable {
    public var queueURL: String?
    public var queueName: String?
    public var fromFile: String?
    public var endpointURL: String?
    public var tokenKey: String?
    public var vaultPublicKey: String?
    public var maxMessages: Int?
    public var concurrency: Int?
    public var batchSize: Int?
    public var visibilityTimeout: Int?
    public var waitTime: Int?
    public var idleExit: Double?
    public var maxDuration: Double?
    public var summaryJSON: String?
    public var logFormat: String?
    public var logLevel: String?
    public var databaseURL: String?
    public var vaultKeyID: String?
    public var metricsFile: String?
    public var metricsPushURL: String?
    public var progressInterval: Double?

    public init() {}
}

/// Where an ETL run reads from, as configured (not yet opened).
public enum ETLSourceSettings: Sendable, Equatable {
    /// Newline-delimited JSON from a file.
    case file(path: String)
    /// An SQS queue, by URL or by name, with an optional endpoint override.
    case sqs(queueURL: String?, queueName: String?, endpointURL: String?)
}

/// Every setting of an ETL run, resolved in one place: the flag, else its `PIIVAULT_*` variable, else the default;
/// then the rules that derive one setting from another.
public struct ETLSettings: Sendable, Equatable {
    public var source: ETLSourceSettings
    public var tokenKeyPath: String
    public var vaultPublicKeyPath: String
    public var databaseURL: String
    public var configuration: ETLConfiguration
    /// Long-polling wait of each receive, seconds (0-20).
    public var waitTimeSeconds: Int
    /// Visibility timeout asked for on receive, seconds.
    public var visibilityTimeout: Int
    /// Where to write the summary as JSON (`-` for standard output); nil for nowhere.
    public var summaryPath: String?
    public var logFormat: LogFormat
    public var logLevel: LogLevel
    /// The key id `vault.pub` must have; nil to only compare with the last run's.
    public var expectedVaultKeyID: String?
    /// Where the run's metrics go, if anywhere.
    public var metrics: MetricsPublisher
    /// Seconds between two progress lines in the log when standard error is not a terminal; 0 for none.
    public var progressInterval: Double

    /// The log line format.
    public enum LogFormat: String, Sendable, CaseIterable {
        case text, json
    }

    /// The least severe log level printed.
    public enum LogLevel: String, Sendable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    public static let defaultVisibilityTimeout = 60
    public static let defaultWaitTime = 1

    /// Resolves `flags` against `environment`. Throws ``SettingsError`` (a usage error) for a value out of range or
    /// a variable that is not a number.
    public static func resolve(_ flags: ETLFlags, environment: [String: String]) throws -> ETLSettings {
        let lookup = SettingLookup(environment: environment)
        var configuration = ETLConfiguration()
        configuration.batchSize = try lookup.number(flags.batchSize, "PIIVAULT_BATCH_SIZE", "--batch-size")
            ?? configuration.batchSize
        configuration.concurrency = try lookup.number(flags.concurrency, "PIIVAULT_CONCURRENCY", "--concurrency")
            ?? configuration.concurrency
        configuration.maxMessages = try lookup.number(flags.maxMessages, "PIIVAULT_MAX_MESSAGES", "--max-messages")
        configuration.idleExit = try lookup.number(flags.idleExit, "PIIVAULT_IDLE_EXIT", "--idle-exit")
            ?? configuration.idleExit
        let visibility = try lookup.number(
            flags.visibilityTimeout, "PIIVAULT_VISIBILITY_TIMEOUT", "--visibility-timeout") ?? defaultVisibilityTimeout
        let wait = try lookup.number(flags.waitTime, "PIIVAULT_WAIT_TIME", "--wait-time") ?? defaultWaitTime

        for (name, value) in [("--concurrency", configuration.concurrency), ("--batch-size", configuration.batchSize),
                              ("--max-messages", configuration.maxMessages ?? 1)] where value < 1 {
            throw SettingsError("\(name) must be at least 1")
        }
        guard (0...20).contains(wait) else { throw SettingsError("--wait-time must be 0 to 20 seconds") }
        guard (1...43_200).contains(visibility) else {
            throw SettingsError("--visibility-timeout must be 1 to 43200 seconds")
        }
        guard configuration.idleExit >= 0 else { throw SettingsError("--idle-exit must be 0 or more seconds") }
        configuration.maxDuration = try lookup.number(flags.maxDuration, "PIIVAULT_MAX_DURATION", "--max-duration")
        if let limit = configuration.maxDuration, !(limit > 0 && limit <= 604_800) {
            throw SettingsError("--max-duration must be a number of seconds above 0, at most 604800 (7 days)")
        }
        let progressInterval = try lookup.number(flags.progressInterval, "PIIVAULT_PROGRESS_INTERVAL", "--progress-interval")
            ?? ETLProgressReporter.defaultLogInterval
        guard progressInterval >= 0 else { throw SettingsError("--progress-interval must be 0 or more seconds") }
        // Read by the SQS source's credentials cache; checked here so that a typo is refused rather than ignored.
        if let lead = environment["PIIVAULT_AWS_REFRESH_LEAD_SECONDS"], !lead.isEmpty {
            guard let seconds = TimeInterval(lead.trimmingCharacters(in: .whitespaces)), seconds.isFinite, seconds >= 0
            else {
                throw SettingsError(
                    "PIIVAULT_AWS_REFRESH_LEAD_SECONDS=\(lead) is not a number of seconds, 0 or more (unset, 300)")
            }
        }
        // A batch must be loaded and deleted well before its first messages become visible again.
        configuration.maxBatchAge = min(configuration.maxBatchAge, Double(visibility) / 4)

        let source: ETLSourceSettings
        if flags.fromFile != nil && (flags.queueURL != nil || flags.queueName != nil) {
            throw SettingsError("give either --from-file or a queue (--queue-url, --queue-name), not both")
        }
        if let path = flags.fromFile {
            source = .file(path: path)
        } else {
            source = .sqs(queueURL: lookup.text(flags.queueURL, "PIIVAULT_QUEUE_URL"),
                          queueName: lookup.text(flags.queueName, "PIIVAULT_QUEUE_NAME"),
                          endpointURL: flags.endpointURL.flatMap { $0.isEmpty ? nil : $0 })
        }
        let formatText = lookup.text(flags.logFormat, "PIIVAULT_LOG_FORMAT") ?? LogFormat.text.rawValue
        guard let logFormat = LogFormat(rawValue: formatText) else {
            throw SettingsError("log format \"\(formatText)\" is not one of text, json")
        }
        let levelText = lookup.text(flags.logLevel, "PIIVAULT_LOG_LEVEL") ?? LogLevel.info.rawValue
        guard let logLevel = LogLevel(rawValue: levelText) else {
            throw SettingsError("log level \"\(levelText)\" is not one of "
                                + LogLevel.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return ETLSettings(
            source: source,
            tokenKeyPath: lookup.text(flags.tokenKey, "PIIVAULT_TOKEN_KEY") ?? "token.key",
            vaultPublicKeyPath: lookup.text(flags.vaultPublicKey, "PIIVAULT_VAULT_PUBLIC_KEY") ?? "vault.pub",
            databaseURL: DatabaseSettings.connectionString(flag: flags.databaseURL, environment: environment),
            configuration: configuration, waitTimeSeconds: wait, visibilityTimeout: visibility,
            summaryPath: lookup.text(flags.summaryJSON, "PIIVAULT_SUMMARY_JSON"),
            logFormat: logFormat, logLevel: logLevel,
            expectedVaultKeyID: lookup.text(flags.vaultKeyID, "PIIVAULT_VAULT_KEY_ID"),
            metrics: MetricsPublisher(filePath: lookup.text(flags.metricsFile, "PIIVAULT_METRICS_FILE"),
                                      pushURL: lookup.text(flags.metricsPushURL, "PIIVAULT_METRICS_PUSH_URL")),
            progressInterval: progressInterval)
    }
}

/// The database connection string every command uses.
public enum DatabaseSettings {
    /// `--database-url`, else `PIIVAULT_DATABASE_URL`, else empty: libpq's own defaults (`PG*` variables,
    /// `~/.pgpass`, service files).
    public static func connectionString(flag: String?, environment: [String: String]) -> String {
        flag ?? environment["PIIVAULT_DATABASE_URL"] ?? ""
    }
}

/// A setting that cannot be used; the command line reports it as a usage error (exit 64).
public struct SettingsError: PIIVaultReportableError, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var exitCode: PIIVaultExitCode { .usage }
}

/// Flag first, then the environment variable (an empty variable counts as unset).
struct SettingLookup {
    let environment: [String: String]

    func text(_ flag: String?, _ variable: String) -> String? {
        flag ?? environment[variable].flatMap { $0.isEmpty ? nil : $0 }
    }

    func number<T: LosslessStringConvertible>(_ flag: T?, _ variable: String, _ option: String) throws -> T? {
        if let flag { return flag }
        guard let text = environment[variable], !text.isEmpty else { return nil }
        guard let value = T(text.trimmingCharacters(in: .whitespaces)) else {
            throw SettingsError("\(variable)=\(text) is not a number (it sets \(option))")
        }
        return value
    }
}

extension ETLRun {
    /// A run as `settings` describe it: the key files loaded and checked, the source opened (for SQS, the queue's
    /// URL found when only its name is given).
    public static func open(settings: ETLSettings, logger: Logger) async throws -> ETLRun {
        let tokenKey = try await KeyLoading.loadTokenKey(path: settings.tokenKeyPath, option: "--token-key", kms: .process)
        let publicKey = try KeyLoading.loadVaultPublicKey(path: settings.vaultPublicKeyPath, option: "--vault-public-key")
        let source: any MessageSource
        switch settings.source {
        case .file(let path):
            source = try FileMessageSource(path: path)
        case let .sqs(queueURL, queueName, endpointURL):
            source = try await SQSMessageSource.resolve(
                queueURL: queueURL, queueName: queueName, endpointURL: endpointURL,
                waitTimeSeconds: settings.waitTimeSeconds, visibilityTimeout: settings.visibilityTimeout,
                logger: logger)
        }
        var run = ETLRun(source: source, databaseURL: settings.databaseURL, tokenKey: tokenKey,
                         vaultPublicKey: publicKey, configuration: settings.configuration, logger: logger)
        run.expectedVaultKeyID = settings.expectedVaultKeyID
        return run
    }
}
