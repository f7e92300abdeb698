import PIIVault
import XCTest

/// `ETLSettings.resolve`: flag, then `PIIVAULT_*` variable, then default; derived rules; usage errors.
final class ETLSettingsTests: XCTestCase {
    func testDefaults() throws {
        let settings = try ETLSettings.resolve(ETLFlags(), environment: [:])
        XCTAssertEqual(settings.source, .sqs(queueURL: nil, queueName: nil, endpointURL: nil))
        XCTAssertEqual(settings.tokenKeyPath, "token.key")
        XCTAssertEqual(settings.vaultPublicKeyPath, "vault.pub")
        XCTAssertEqual(settings.databaseURL, "")
        XCTAssertEqual(settings.configuration.batchSize, ETLConfiguration().batchSize)
        XCTAssertEqual(settings.configuration.concurrency, 4)
        XCTAssertNil(settings.configuration.maxMessages)
        XCTAssertEqual(settings.waitTimeSeconds, 1)
        XCTAssertEqual(settings.visibilityTimeout, 60)
        XCTAssertEqual(settings.configuration.maxBatchAge, 5)
        XCTAssertNil(settings.summaryPath)
        XCTAssertEqual(settings.logFormat, .text)
        // Issue 26: the run talks by default: its periodic progress line is an info line, every 30 s in a log.
        XCTAssertEqual(settings.logLevel, .info)
        XCTAssertEqual(settings.progressInterval, 30)
    }

    func testProgressIntervalFromFlagOrVariable() throws {
        XCTAssertEqual(try ETLSettings.resolve(ETLFlags(), environment: ["PIIVAULT_PROGRESS_INTERVAL": "2.5"]).progressInterval, 2.5)
        var flags = ETLFlags()
        flags.progressInterval = 0
        XCTAssertEqual(try ETLSettings.resolve(flags, environment: ["PIIVAULT_PROGRESS_INTERVAL": "5"]).progressInterval, 0)
        flags.progressInterval = -1
        XCTAssertThrowsError(try ETLSettings.resolve(flags, environment: [:]))
    }

    func testVariablesApplyWhenNoFlagIsGiven() throws {
        let environment = [
            "PIIVAULT_QUEUE_URL": "http://127.0.0.1:1/000000000000/q", "PIIVAULT_TOKEN_KEY": "/k/token.key",
            "PIIVAULT_VAULT_PUBLIC_KEY": "/k/vault.pub", "PIIVAULT_BATCH_SIZE": "250", "PIIVAULT_CONCURRENCY": "2",
            "PIIVAULT_MAX_MESSAGES": "9", "PIIVAULT_IDLE_EXIT": "0.5", "PIIVAULT_VISIBILITY_TIMEOUT": "8",
            "PIIVAULT_WAIT_TIME": "20", "PIIVAULT_SUMMARY_JSON": "/tmp/s.json", "PIIVAULT_LOG_FORMAT": "json",
            "PIIVAULT_LOG_LEVEL": "trace", "PIIVAULT_DATABASE_URL": "postgresql:///x",
        ]
        let settings = try ETLSettings.resolve(ETLFlags(), environment: environment)
        XCTAssertEqual(settings.source, .sqs(queueURL: "http://127.0.0.1:1/000000000000/q", queueName: nil, endpointURL: nil))
        XCTAssertEqual(settings.tokenKeyPath, "/k/token.key")
        XCTAssertEqual(settings.vaultPublicKeyPath, "/k/vault.pub")
        XCTAssertEqual(settings.configuration.batchSize, 250)
        XCTAssertEqual(settings.configuration.concurrency, 2)
        XCTAssertEqual(settings.configuration.maxMessages, 9)
        XCTAssertEqual(settings.configuration.idleExit, 0.5)
        XCTAssertEqual(settings.visibilityTimeout, 8)
        XCTAssertEqual(settings.waitTimeSeconds, 20)
        XCTAssertEqual(settings.summaryPath, "/tmp/s.json")
        XCTAssertEqual(settings.logFormat, .json)
        XCTAssertEqual(settings.logLevel, .trace)
        XCTAssertEqual(settings.databaseURL, "postgresql:///x")
        // The batch-age rule: a quarter of the visibility timeout, so a batch is loaded long before it reappears.
        XCTAssertEqual(settings.configuration.maxBatchAge, 2)
    }

    func testFlagsWinOverVariablesAndEmptyVariablesCountAsUnset() throws {
        var flags = ETLFlags()
        flags.batchSize = 7
        flags.fromFile = "in.ndjson"
        flags.databaseURL = "postgresql:///flag"
        let settings = try ETLSettings.resolve(flags, environment: [
            "PIIVAULT_BATCH_SIZE": "250", "PIIVAULT_QUEUE_URL": "http://x/q", "PIIVAULT_TOKEN_KEY": "",
            "PIIVAULT_DATABASE_URL": "postgresql:///env",
        ])
        XCTAssertEqual(settings.configuration.batchSize, 7)
        XCTAssertEqual(settings.source, .file(path: "in.ndjson"))
        XCTAssertEqual(settings.tokenKeyPath, "token.key")
        XCTAssertEqual(settings.databaseURL, "postgresql:///flag")
    }

    func testOutOfRangeValuesAreUsageErrorsNamingTheOption() {
        func refusal(_ flags: ETLFlags, _ environment: [String: String] = [:]) -> SettingsError? {
            do {
                _ = try ETLSettings.resolve(flags, environment: environment)
                return nil
            } catch {
                return error as? SettingsError
            }
        }
        var flags = ETLFlags()
        flags.batchSize = 0
        XCTAssertEqual(refusal(flags)?.message, "--batch-size must be at least 1")
        flags = ETLFlags()
        flags.waitTime = 21
        XCTAssertEqual(refusal(flags)?.message, "--wait-time must be 0 to 20 seconds")
        flags = ETLFlags()
        flags.visibilityTimeout = 0
        XCTAssertEqual(refusal(flags)?.message, "--visibility-timeout must be 1 to 43200 seconds")
        XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_CONCURRENCY": "four"])?.message,
                       "PIIVAULT_CONCURRENCY=four is not a number (it sets --concurrency)")
        XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_LOG_LEVEL": "loud"])?.exitCode, .usage)
        // Ignored before, so a typo silently meant the default lead time.
        for lead in ["five", "-1", "inf", "nan"] {
            XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_AWS_REFRESH_LEAD_SECONDS": lead])?.message,
                           "PIIVAULT_AWS_REFRESH_LEAD_SECONDS=\(lead) is not a number of seconds, 0 or more (unset, 300)")
        }
        XCTAssertNil(refusal(ETLFlags(), ["PIIVAULT_AWS_REFRESH_LEAD_SECONDS": "58"]))
        XCTAssertNil(refusal(ETLFlags(), ["PIIVAULT_AWS_REFRESH_LEAD_SECONDS": ""]))
        flags = ETLFlags()
        flags.fromFile = "logins.ndjson"
        flags.queueName = "login-queue"
        XCTAssertEqual(refusal(flags)?.message, "give either --from-file or a queue (--queue-url, --queue-name), not both")
        for limit in ["0", "1e19", "inf"] {
            XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_MAX_DURATION": limit])?.message,
                           "--max-duration must be a number of seconds above 0, at most 604800 (7 days)")
        }
        XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_MAX_DURATION": "1h"])?.message,
                       "PIIVAULT_MAX_DURATION=1h is not a number (it sets --max-duration)")
        XCTAssertEqual(try ETLSettings.resolve(ETLFlags(), environment: ["PIIVAULT_MAX_DURATION": "14400"])
                        .configuration.maxDuration, 14_400)
        XCTAssertEqual(refusal(ETLFlags(), ["PIIVAULT_LOG_FORMAT": "xml"])?.exitCode, .usage)
    }
}
