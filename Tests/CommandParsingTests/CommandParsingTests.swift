import ArgumentParser
import PIIVault
@testable import piivault
import XCTest

/// The command line parsed in process, as `piivault` parses it (`Piivault.parseAsRoot`): every command, its main
/// options, and the usage errors its validation gives (exit 64). Running the commands is the integration tier's.
final class CommandParsingTests: XCTestCase {
    private let ipToken = "ip.v1." + String(repeating: "ab", count: 32)
    private let deviceToken = "dev.v1." + String(repeating: "0f", count: 32)

    /// `arguments` parsed as the command `C`.
    private func parse<C: ParsableCommand>(
        _ arguments: [String], as type: C.Type, file: StaticString = #filePath, line: UInt = #line
    ) throws -> C {
        let command: any ParsableCommand
        do { command = try Piivault.parseAsRoot(arguments) } catch {
            XCTFail("\(arguments) was refused: \(Piivault.message(for: error))", file: file, line: line)
            throw error
        }
        guard let typed = command as? C else {
            XCTFail("\(arguments) parsed as \(Swift.type(of: command)), not \(C.self)", file: file, line: line)
            throw CancellationError()
        }
        return typed
    }

    /// The usage error `arguments` give; fails unless parsing refuses them with exit status 64.
    private func usageError(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let command = try Piivault.parseAsRoot(arguments)
            XCTFail("\(arguments) was accepted as \(type(of: command))", file: file, line: line)
            return ""
        } catch {
            XCTAssertEqual(Piivault.exitCode(for: error).rawValue, 64, "\(arguments)", file: file, line: line)
            return Piivault.message(for: error)
        }
    }

    private func assertUsageError(
        _ arguments: [String], contains expected: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        let message = usageError(arguments, file: file, line: line)
        XCTAssertTrue(message.contains(expected), "\(arguments): \(message)", file: file, line: line)
    }

    // MARK: The root

    func testTheRootNamesEveryCommandAndItsVersion() throws {
        let names = Piivault.configuration.subcommands.map { $0.configuration.commandName }
        XCTAssertEqual(names, ["keygen", "keys", "migrate", "etl", "unmask", "lookup", "forget", "retention", "rewrap",
                               "retokenize", "policy", "approve", "deny", "requests", "runs", "audit"])
        do {
            _ = try Piivault.parseAsRoot(["--version"])
            XCTFail("--version must end parsing")
        } catch {
            XCTAssertEqual(Piivault.exitCode(for: error).rawValue, 0)
            XCTAssertEqual(Piivault.message(for: error), PIIVaultInfo.version)
        }
        assertUsageError(["frobnicate"], contains: "frobnicate")
        assertUsageError(["etl", "--no-such-option"], contains: "--no-such-option")
    }

    // MARK: keygen, migrate

    func testKeygen() throws {
        let defaults = try parse(["keygen"], as: Keygen.self)
        XCTAssertEqual(defaults.directory, ".")
        XCTAssertFalse(defaults.passphrase)
        XCTAssertNil(defaults.tokenKeyVersion)
        let keys = try parse(["keygen", "--dir", "/keys", "--passphrase"], as: Keygen.self)
        XCTAssertEqual(keys.directory, "/keys")
        XCTAssertTrue(keys.passphrase)
        let rotation = try parse(["keygen", "--token-key-version", "2", "--previous-token-key", "old.key"], as: Keygen.self)
        XCTAssertEqual(rotation.tokenKeyVersion, 2)
        XCTAssertEqual(rotation.previousTokenKey, "old.key")

        assertUsageError(["keygen", "--token-key-version", "1"], contains: "--token-key-version must be 2 to 999999999")
        assertUsageError(["keygen", "--token-key-version", "1000000000"], contains: "--token-key-version must be 2")
        assertUsageError(["keygen", "--token-key-version", "2", "--passphrase"], contains: "--passphrase protects vault.key")
        assertUsageError(["keygen", "--previous-token-key", "old.key"], contains: "--previous-token-key goes with --token-key-version")
        assertUsageError(["keygen", "--token-key-version", "two"], contains: "two")

        let wrapped = try parse(["keygen", "--kms-key-id", "alias/piivault", "--dir", "/keys"], as: Keygen.self)
        XCTAssertEqual(wrapped.kmsKeyID, "alias/piivault")
        XCTAssertNil(defaults.kmsKeyID)
        assertUsageError(["keygen", "--kms-key-id", "alias/x", "--passphrase"], contains: "--passphrase and --kms-key-id")
        assertUsageError(["keygen", "--kms-key-id", "has space"], contains: "--kms-key-id: give a KMS key id")
    }

    func testKeysWrapAndUnwrap() throws {
        let wrap = try parse(["keys", "wrap", "token.key", "--kms-key-id", "arn:aws:kms:eu-west-1:1:key/k", "--out", "new.key"],
                             as: Keys.Wrap.self)
        XCTAssertEqual(wrap.file, "token.key")
        XCTAssertEqual(wrap.kmsKeyID, "arn:aws:kms:eu-west-1:1:key/k")
        XCTAssertEqual(wrap.out, "new.key")
        let unwrap = try parse(["keys", "unwrap", "token.kms.key", "--out", "plain.key"], as: Keys.Unwrap.self)
        XCTAssertEqual(unwrap.file, "token.kms.key")
        XCTAssertEqual(unwrap.out, "plain.key")
        assertUsageError(["keys", "wrap", "token.key", "--out", "new.key"], contains: "--kms-key-id")
        assertUsageError(["keys", "unwrap", "token.kms.key"], contains: "--out")
    }

    func testMigrate() throws {
        let migrate = try parse(["migrate", "--database-url", "postgresql:///vault", "--migrations-dir", "/m", "--dry-run"],
                                as: Migrate.self)
        XCTAssertEqual(migrate.database.databaseURL, "postgresql:///vault")
        XCTAssertEqual(migrate.migrationsDir, "/m")
        XCTAssertTrue(migrate.dryRun)
        let defaults = try parse(["migrate"], as: Migrate.self)
        XCTAssertNil(defaults.database.databaseURL)
        XCTAssertNil(defaults.migrationsDir)
        XCTAssertFalse(defaults.dryRun)
    }

    // MARK: etl

    func testETLTakesEveryOption() throws {
        let etl = try parse([
            "etl", "--queue-url", "https://sqs.example/1/q", "--queue-name", "q", "--from-file", "in.jsonl",
            "--endpoint-url", "http://127.0.0.1:5000", "--token-key", "t.key", "--vault-public-key", "v.pub",
            "--vault-key-id", "abcd", "--metrics-file", "m.prom", "--metrics-push-url", "http://gw:9091",
            "--max-messages", "100", "--concurrency", "2", "--batch-size", "500", "--visibility-timeout", "90",
            "--wait-time", "20", "--idle-exit", "0.5", "--summary-json", "-", "--log-format", "json",
            "--log-level", "debug", "--database-url", "host=/tmp dbname=vault",
        ], as: ETL.self)
        XCTAssertEqual(etl.queueURL, "https://sqs.example/1/q")
        XCTAssertEqual(etl.queueName, "q")
        XCTAssertEqual(etl.fromFile, "in.jsonl")
        XCTAssertEqual(etl.endpointURL, "http://127.0.0.1:5000")
        XCTAssertEqual(etl.tokenKey, "t.key")
        XCTAssertEqual(etl.vaultPublicKey, "v.pub")
        XCTAssertEqual(etl.vaultKeyID, "abcd")
        XCTAssertEqual(etl.metricsFile, "m.prom")
        XCTAssertEqual(etl.metricsPushURL, "http://gw:9091")
        XCTAssertEqual(etl.maxMessages, 100)
        XCTAssertEqual(etl.concurrency, 2)
        XCTAssertEqual(etl.batchSize, 500)
        XCTAssertEqual(etl.visibilityTimeout, 90)
        XCTAssertEqual(etl.waitTime, 20)
        XCTAssertEqual(etl.idleExit, 0.5)
        XCTAssertEqual(etl.summaryJSON, "-")
        XCTAssertEqual(etl.logFormat, "json")
        XCTAssertEqual(etl.logLevel, "debug")
        XCTAssertEqual(etl.database.databaseURL, "host=/tmp dbname=vault")
    }

    func testETLLeavesUnsetOptionsToTheEnvironmentAndDefaults() throws {
        // Nil, not a default: ETLSettings.resolve then takes the PIIVAULT_* variable or the default.
        let etl = try parse(["etl"], as: ETL.self)
        XCTAssertNil(etl.queueURL)
        XCTAssertNil(etl.fromFile)
        XCTAssertNil(etl.maxMessages)
        XCTAssertNil(etl.batchSize)
        XCTAssertNil(etl.idleExit)
        XCTAssertNil(etl.database.databaseURL)
    }

    func testETLRefusesValuesOfTheWrongType() {
        assertUsageError(["etl", "--max-messages", "many"], contains: "--max-messages")
        assertUsageError(["etl", "--batch-size", "1.5"], contains: "--batch-size")
        assertUsageError(["etl", "--idle-exit", "soon"], contains: "--idle-exit")
        assertUsageError(["etl", "--queue-url"], contains: "--queue-url")
    }

    // MARK: unmask

    func testUnmaskModes() throws {
        let tokens = try parse(["unmask", "--reason", "case 7", "--token", ipToken, deviceToken, "--token-key", "v1.key",
                                "--token-key", "v2.key", "--key-file", "vault.key"], as: Unmask.self)
        XCTAssertEqual(tokens.tokens, [ipToken, deviceToken])
        XCTAssertEqual(tokens.tokenKeys.tokenKey, ["v1.key", "v2.key"])
        XCTAssertEqual(tokens.vaultKey.keyFile, "vault.key")
        XCTAssertEqual(tokens.reason, "case 7")
        XCTAssertEqual(tokens.format, .table)
        XCTAssertEqual(tokens.maxRows, 100)
        XCTAssertFalse(tokens.noVerifyTokens)
        XCTAssertFalse(tokens.csv.safeCSV)

        let user = try parse(["unmask", "--reason", "r", "--user-id", "u-1", "--format", "csv", "--safe-csv",
                              "--max-rows", "5", "--no-verify-tokens"], as: Unmask.self)
        XCTAssertEqual(user.userID, "u-1")
        XCTAssertEqual(user.format, .csv)
        XCTAssertTrue(user.csv.safeCSV)
        XCTAssertEqual(user.maxRows, 5)
        XCTAssertTrue(user.noVerifyTokens)

        XCTAssertEqual(try parse(["unmask", "--reason", "r", "--quarantined", "msg-1"], as: Unmask.self).quarantined, "msg-1")
        XCTAssertEqual(try parse(["unmask", "--reason", "r", "--token-file", "-"], as: Unmask.self).tokenFile, "-")
    }

    func testUnmaskUsageErrors() {
        assertUsageError(["unmask", "--user-id", "u-1"], contains: "--reason is required")
        assertUsageError(["unmask", "--reason", " \t", "--user-id", "u-1"], contains: "--reason is required")
        assertUsageError(["unmask", "--reason", "r"], contains: "give exactly one of --token (or --token-file), --user-id, --quarantined")
        assertUsageError(["unmask", "--reason", "r", "--token", ipToken, "--user-id", "u-1"], contains: "give exactly one of")
        assertUsageError(["unmask", "--reason", "r", "--user-id", "u-1", "--quarantined", "m"], contains: "give exactly one of")
        assertUsageError(["unmask", "--reason", "r", "--user-id", "u-1", "--max-rows", "0"], contains: "--max-rows must be 1 or more")
        assertUsageError(["unmask", "--reason", "r", "--user-id", "u-1", "--format", "xml"], contains: "xml")
    }

    func testUnmaskRefusesANonTokenWithoutEchoingIt() {
        let value = "198.51.100.77"
        let message = usageError(["unmask", "--reason", "r", "--token", ipToken, value])
        XCTAssertTrue(message.contains("1 of 2 arguments are not tokens"), message)
        XCTAssertFalse(message.contains(value), "a value typed by mistake must not be echoed")
    }

    // MARK: dual control

    func testDualControlCommands() throws {
        let run = try parse(["unmask", "--request", "12", "--key-file", "vault.key", "--no-verify-tokens"], as: Unmask.self)
        XCTAssertEqual(run.approval.request, 12, "--request alone runs the request's own target and reason")
        XCTAssertNil(run.reason)
        XCTAssertEqual(try parse(["forget", "--reason", "r", "--user-id", "u", "--request", "3"], as: Forget.self)
            .approval.request, 3)
        XCTAssertEqual(try parse(["rewrap", "--reason", "r", "--to", "new.pub", "--request", "4"], as: Rewrap.self)
            .approval.request, 4)
        let set = try parse(["policy", "set", "unmask", "--approvals", "2", "--window", "90s"], as: PolicySet.self)
        XCTAssertEqual(set.action, "unmask")
        XCTAssertEqual(set.approvals, 2)
        XCTAssertEqual(set.window, "90s")
        XCTAssertEqual(try parse(["policy", "show", "--format", "json"], as: PolicyShow.self).format, .json)
        let approve = try parse(["approve", "7", "--reason", "checked"], as: Approve.self)
        XCTAssertEqual(approve.requestID, 7)
        XCTAssertEqual(try parse(["deny", "7", "--reason", "no"], as: Deny.self).requestID, 7)
        XCTAssertTrue(try parse(["requests", "--pending", "--format", "csv"], as: Requests.self).pending)

        assertUsageError(["unmask", "--request", "0", "--no-verify-tokens"], contains: "--request must be a request number")
        assertUsageError(["unmask", "--request", "5", "--user-id", "u"], contains: "--reason is required")
        assertUsageError(["policy", "set", "etl", "--approvals", "1"], contains: "ACTION must be one of unmask, lookup")
        assertUsageError(["policy", "set", "unmask", "--approvals", "4"], contains: "--approvals must be 0 to 3")
        for window in ["24", "1.5h", "0s", "h", "3w"] {
            assertUsageError(["policy", "set", "unmask", "--approvals", "1", "--window", window],
                             contains: "--window must be a whole number and a unit")
        }
        assertUsageError(["approve", "7"], contains: "--reason is required")
        assertUsageError(["deny", "7", "--reason", " "], contains: "--reason is required")
    }

    // MARK: lookup, forget

    func testLookup() throws {
        let lookup = try parse(["lookup", "--reason", "dsar-1", "--ip", "192.0.2.1", "2001:db8::1", "--device-id", "d-1",
                                "--token-key", "t.key", "--format", "json", "--max-rows", "10"], as: Lookup.self)
        XCTAssertEqual(lookup.ips, ["192.0.2.1", "2001:db8::1"])
        XCTAssertEqual(lookup.deviceIDs, ["d-1"])
        XCTAssertEqual(lookup.tokenKeys.tokenKey, ["t.key"])
        XCTAssertEqual(lookup.format, .json)
        XCTAssertEqual(lookup.maxRows, 10)
        XCTAssertEqual(try parse(["lookup", "--reason", "r", "--values-file", "v.txt"], as: Lookup.self).valuesFile, "v.txt")

        assertUsageError(["lookup", "--ip", "192.0.2.1"], contains: "--reason is required")
        assertUsageError(["lookup", "--reason", "r"], contains: "give --ip, --device-id or --values-file")
        assertUsageError(["lookup", "--reason", "r", "--ip", "192.0.2.1", "--max-rows", "0"], contains: "--max-rows must be 1 or more")
    }

    func testForget() throws {
        let user = try parse(["forget", "--reason", "erasure-9", "--user-id", "u-1", "--token-key", "t.key"], as: Forget.self)
        XCTAssertEqual(user.userID, "u-1")
        XCTAssertEqual(user.tokenKey.tokenKey, "t.key")
        XCTAssertEqual(user.lockWait, ForgetRequest.defaultLockWaitSeconds)
        XCTAssertFalse(user.dryRun)
        let quarantined = try parse(["forget", "--reason", "r", "--quarantined", "m-1", "--dry-run", "--lock-wait", "3600"],
                                    as: Forget.self)
        XCTAssertEqual(quarantined.quarantined, "m-1")
        XCTAssertTrue(quarantined.dryRun)
        XCTAssertEqual(quarantined.lockWait, 3600)

        assertUsageError(["forget", "--user-id", "u-1"], contains: "--reason is required")
        assertUsageError(["forget", "--reason", "r"], contains: "give one of --user-id or --quarantined")
        assertUsageError(["forget", "--reason", "r", "--user-id", "u", "--quarantined", "m"], contains: "give one of --user-id or --quarantined")
        assertUsageError(["forget", "--reason", "r", "--user-id", ""], contains: "--user-id must not be empty")
        assertUsageError(["forget", "--reason", "r", "--quarantined", ""], contains: "--quarantined must not be empty")
        assertUsageError(["forget", "--reason", "r", "--user-id", "u", "--lock-wait", "0"], contains: "--lock-wait must be 1 to 3600 seconds")
        assertUsageError(["forget", "--reason", "r", "--user-id", "u", "--lock-wait", "3601"], contains: "--lock-wait must be 1 to 3600")
    }

    // MARK: retention, rewrap, retokenize

    func testRetention() throws {
        let retention = try parse(["retention", "--reason", "policy-3", "--older-than", "30", "--batch-size", "100",
                                   "--dry-run", "--format", "json"], as: Retention.self)
        XCTAssertEqual(retention.olderThan, 30)
        XCTAssertEqual(retention.batchSize, 100)
        XCTAssertTrue(retention.dryRun)
        XCTAssertEqual(retention.format, .json)
        XCTAssertEqual(try parse(["retention", "--reason", "r", "--older-than", "1"], as: Retention.self).batchSize,
                       RetentionRequest.defaultBatchSize)

        assertUsageError(["retention", "--reason", "r"], contains: "--older-than")
        assertUsageError(["retention", "--older-than", "30"], contains: "--reason is required")
        assertUsageError(["retention", "--reason", "r", "--older-than", "0"], contains: "--older-than must be 1 or more (days)")
        assertUsageError(["retention", "--reason", "r", "--older-than", "30", "--batch-size", "0"], contains: "--batch-size must be 1 or more")
    }

    func testRewrap() throws {
        let rewrap = try parse(["rewrap", "--reason", "rotation-1", "--key-file", "old.key", "--to", "new.pub", "--full",
                                "--batch-size", "100000", "--dry-run"], as: Rewrap.self)
        XCTAssertEqual(rewrap.vaultKey.keyFile, "old.key")
        XCTAssertEqual(rewrap.newPublicKey, "new.pub")
        XCTAssertTrue(rewrap.full)
        XCTAssertTrue(rewrap.dryRun)
        XCTAssertEqual(rewrap.batchSize, 100_000)
        XCTAssertEqual(try parse(["rewrap", "--reason", "r", "--to", "new.pub"], as: Rewrap.self).batchSize, 500)

        assertUsageError(["rewrap", "--reason", "r"], contains: "--to")
        assertUsageError(["rewrap", "--to", "new.pub"], contains: "--reason is required")
        assertUsageError(["rewrap", "--reason", "r", "--to", "new.pub", "--batch-size", "0"], contains: "--batch-size must be 1 to 100000")
        assertUsageError(["rewrap", "--reason", "r", "--to", "new.pub", "--batch-size", "100001"], contains: "--batch-size must be 1 to 100000")
    }

    func testRetokenize() throws {
        let retokenize = try parse(["retokenize", "--reason", "change-5", "--key-file", "vault.key", "--token-key", "v2.key",
                                    "--batch-size", "10"], as: Retokenize.self)
        XCTAssertEqual(retokenize.vaultKey.keyFile, "vault.key")
        XCTAssertEqual(retokenize.tokenKey.tokenKey, "v2.key")
        XCTAssertEqual(retokenize.batchSize, 10)
        XCTAssertEqual(try parse(["retokenize", "--reason", "r"], as: Retokenize.self).batchSize, 1000)

        assertUsageError(["retokenize"], contains: "--reason is required")
        assertUsageError(["retokenize", "--reason", "r", "--batch-size", "0"], contains: "--batch-size must be 1 to 100000")
    }

    // MARK: runs, audit

    func testRuns() throws {
        XCTAssertEqual(try parse(["runs"], as: Runs.self).last, 20)
        let runs = try parse(["runs", "--last", "3", "--format", "csv", "--safe-csv"], as: Runs.self)
        XCTAssertEqual(runs.last, 3)
        XCTAssertEqual(runs.format, .csv)
        XCTAssertTrue(runs.csv.safeCSV)
        assertUsageError(["runs", "--last", "0"], contains: "--last must be 1 or more")
    }

    func testAuditLog() throws {
        let log = try parse(["audit", "log", "--since", "2024-05-01", "--until", "2024-06-01", "--actor", "officer",
                             "--action", "unmask", "--outcome", "ok", "--after-seq", "12", "--format", "jsonl"],
                            as: Audit.Log.self)
        XCTAssertEqual(log.since, "2024-05-01")
        XCTAssertEqual(log.until, "2024-06-01")
        XCTAssertEqual(log.actor, "officer")
        XCTAssertEqual(log.action, "unmask")
        XCTAssertEqual(log.outcome, "ok")
        XCTAssertEqual(log.afterSeq, 12)
        XCTAssertEqual(log.format, .jsonl)
        XCTAssertEqual(try parse(["audit", "log"], as: Audit.Log.self).format, .table)

        assertUsageError(["audit", "log", "--after-seq=-1"], contains: "--after-seq must be 0 or more")
        assertUsageError(["audit", "log", "--format", "yaml"], contains: "yaml")
    }

    func testAuditVerifyCheckpointKeygenReport() throws {
        let anchor = "17:" + String(repeating: "c3", count: 32)
        let verify = try parse(["audit", "verify", "--anchor", anchor, "--checkpoint", "a.txt", "--checkpoint", "b.txt",
                                "--auditor-key", "auditor.pub"], as: Audit.Verify.self)
        XCTAssertEqual(verify.anchor, anchor)
        XCTAssertEqual(verify.checkpoints, ["a.txt", "b.txt"])
        XCTAssertEqual(verify.auditorKey, "auditor.pub")
        assertUsageError(["audit", "verify", "--anchor", "17:abc"], contains: "--anchor must be SEQ:HASH")
        assertUsageError(["audit", "verify", "--checkpoint", "a.txt"], contains: "--checkpoint needs --auditor-key auditor.pub")

        let checkpoint = try parse(["audit", "checkpoint", "--sign", "auditor.key", "--out", "c.txt"], as: Audit.Checkpoint.self)
        XCTAssertEqual(checkpoint.sign, "auditor.key")
        XCTAssertEqual(checkpoint.out, "c.txt")

        XCTAssertEqual(try parse(["audit", "keygen"], as: Audit.Keygen.self).directory, ".")
        XCTAssertEqual(try parse(["audit", "keygen", "--dir", "/a"], as: Audit.Keygen.self).directory, "/a")

        let report = try parse(["audit", "report", "--html", "r.html", "--since", "2024-01-01", "--checkpoint", "a.txt",
                                "--auditor-key", "auditor.pub"], as: Audit.Report.self)
        XCTAssertEqual(report.html, "r.html")
        XCTAssertEqual(report.checkpoints, ["a.txt"])
        assertUsageError(["audit", "report"], contains: "--html")
        assertUsageError(["audit", "report", "--html", "r.html", "--checkpoint", "a.txt"], contains: "--checkpoint needs --auditor-key")
    }
}
