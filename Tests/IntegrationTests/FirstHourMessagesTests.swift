import Foundation
import PIIVault
import TestSupport
import XCTest

/// Issue 26, "Messages that mislead": each message a new user met in the first hour, through the real binary, as
/// the user meets it. Every error is one line in the project's voice first, never Foundation's error text.
final class FirstHourMessagesTests: XCTestCase {
    var keys: URL!
    /// A database URL nothing listens on: for errors that must come before the database is asked.
    let nowhere = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"

    override func setUp() async throws {
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("first-hour-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
    }

    override func tearDown() async throws {
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    private func key(_ name: String) -> String { keys.appendingPathComponent(name).path }

    /// The error's first line is `piivault: error: ...` and no Foundation error text appears anywhere.
    private func assertVoice(_ result: ProcessResult, _ status: Int32, _ expected: String, file: StaticString = #filePath,
                             line: UInt = #line) {
        XCTAssertEqual(result.status, status, result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: "), "first line in the project's voice: \(result.stderr)",
                      file: file, line: line)
        XCTAssertTrue(result.stderr.contains(expected), "expected \"\(expected)\" in: \(result.stderr)", file: file, line: line)
        for foreign in ["NSCocoaErrorDomain", "Error Domain=", "NSUnderlyingError"] {
            XCTAssertFalse(result.stderr.contains(foreign), "Foundation's text: \(result.stderr)", file: file, line: line)
        }
    }

    private func unmask(keyFile: String, databaseURL: String, _ extra: [String] = ["--user-id", "u-1"]) throws -> ProcessResult {
        try runPiivault(["unmask", "--database-url", databaseURL, "--key-file", keyFile, "--token-key", key("token.key"),
                         "--reason", "FIRST-HOUR-1"] + extra)
    }

    /// `unmask --key-file vault.pub`: the public key given as the secret one is named for what it is (65), not
    /// refused for its mode with "run chmod 600".
    func testThePublicKeyGivenAsTheSecretKeyIsNamedNotChmodded() throws {
        let result = try unmask(keyFile: key("vault.pub"), databaseURL: nowhere)
        assertVoice(result, 65, "has label PIIVAULT-VAULT-PUBLIC-KEY-1, expected PIIVAULT-VAULT-SECRET-KEY-1")
        XCTAssertFalse(result.stderr.contains("chmod"), result.stderr)
        // A real secret key readable by others is still refused for its mode (77).
        let exposed = keys.appendingPathComponent("exposed.key")
        try FileManager.default.copyItem(atPath: key("vault.key"), toPath: exposed.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: exposed.path)
        assertVoice(try unmask(keyFile: exposed.path, databaseURL: nowhere), 77, "chmod 600")
    }

    /// A missing key file names the flag that gave it and exits 65 (a bad key file), in every command that reads one.
    func testAMissingKeyFileNamesItsFlag() throws {
        let missing = keys.appendingPathComponent("nope.key").path
        assertVoice(try unmask(keyFile: missing, databaseURL: nowhere), 65,
                    "\(missing) does not exist; give the key file's path with --key-file")
        let etl = try runPiivault(["etl", "--from-file", "/dev/null", "--database-url", nowhere,
                                   "--token-key", missing, "--vault-public-key", key("vault.pub")])
        assertVoice(etl, 65, "\(missing) does not exist; give the key file's path with --token-key")
        let lookup = try runPiivault(["lookup", "--database-url", nowhere, "--token-key", missing, "--reason", "r",
                                      "--ip", "192.0.2.1"])
        assertVoice(lookup, 65, "with --token-key")
    }

    /// `etl --queue-name Q` with no endpoint and no region: one line naming the missing setting, no DNS errors.
    func testETLWithoutEndpointOrRegionSaysWhichSettingIsMissing() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("first-hour-home-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        var environment: [String: String?] = ["HOME": home.path]  // no ~/.aws
        for name in ["AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_PROFILE",
                     "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE",
                     "AWS_SHARED_CREDENTIALS_FILE", "PIIVAULT_QUEUE_URL"] {
            environment[name] = nil
        }
        let result = try runPiivault(["etl", "--queue-name", "login-queue", "--database-url", nowhere,
                                      "--token-key", key("token.key"), "--vault-public-key", key("vault.pub")],
                                     environment: environment)
        assertVoice(result, 64, "no AWS region: set AWS_REGION")
        XCTAssertTrue(result.stderr.contains("AWS_ENDPOINT_URL_SQS"), "names the endpoint setting too: \(result.stderr)")
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)")

        // An endpoint whose host does not resolve (`.invalid` never does): one line at once, not a retry a line.
        environment["AWS_ACCESS_KEY_ID"] = "test"
        environment["AWS_SECRET_ACCESS_KEY"] = "test"
        let unresolved = try runPiivault(["etl", "--queue-name", "login-queue", "--endpoint-url", "http://sqs.invalid",
                                          "--database-url", nowhere, "--token-key", key("token.key"),
                                          "--vault-public-key", key("vault.pub")], environment: environment)
        assertVoice(unresolved, 69, "its host name does not resolve")
        XCTAssertTrue(unresolved.stderr.contains("AWS_ENDPOINT_URL_SQS"), unresolved.stderr)
        XCTAssertEqual(unresolved.stderr.split(separator: "\n").count, 1, "one line: \(unresolved.stderr)")
    }

    /// A login the server does not know is an authentication failure (77), not an unavailable service (69).
    func testALoginThatDoesNotExistIsRefusedNotUnavailable() async throws {
        let database = try await ScratchDatabase.migrated(prefix: "fh")
        defer { Task { await database.drop() } }
        var url = URLComponents(string: database.url)!
        url.user = "no_such_login_\(ScratchDatabase.randomHex(3))"
        url.password = "wrong"
        let result = try unmask(keyFile: key("vault.key"), databaseURL: url.string!)
        assertVoice(result, 77, "check the login and its password")
        // A server that is not there stays 69.
        XCTAssertEqual(try unmask(keyFile: key("vault.key"), databaseURL: nowhere).status, 69)
    }

    /// A database name the server does not have is a setting to fix (64), not an unavailable service to retry (69).
    func testADatabaseThatDoesNotExistIsAUsageErrorNotUnavailable() async throws {
        let database = try await ScratchDatabase.migrated(prefix: "fh")
        defer { Task { await database.drop() } }
        var url = URLComponents(string: database.url)!
        url.path = "/no_such_database_\(ScratchDatabase.randomHex(3))"
        let result = try unmask(keyFile: key("vault.key"), databaseURL: url.string!)
        assertVoice(result, 64, "check the database name in --database-url")
        let migrate = try runPiivault(["migrate", "--database-url", url.string!])
        assertVoice(migrate, 64, "create it first")
    }

    /// `unmask` on a database that was never migrated says to migrate first (65), as `etl` does.
    func testUnmaskOnAnUnmigratedDatabaseSaysMigrateFirst() async throws {
        let database = try await ScratchDatabase.create(prefix: "fhempty")
        defer { Task { await database.drop() } }
        assertVoice(try unmask(keyFile: key("vault.key"), databaseURL: database.url), 65, "run `piivault migrate` first")
        let etl = try runPiivault(["etl", "--from-file", "/dev/null", "--database-url", database.url,
                                   "--token-key", key("token.key"), "--vault-public-key", key("vault.pub")])
        assertVoice(etl, 65, "run `piivault migrate` first")
    }

    /// `audit keygen --dir other` creates a missing folder (mode 0700), as plain `keygen` does.
    func testAuditKeygenCreatesItsFolder() throws {
        let folder = keys.appendingPathComponent("auditor")
        let result = try runPiivault(["audit", "keygen", "--dir", folder.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder.appendingPathComponent("auditor.key").path))
        let mode = (try FileManager.default.attributesOfItem(atPath: folder.path)[.posixPermissions] as? NSNumber)?.intValue
        XCTAssertEqual(mode, 0o700)
    }

    /// `audit checkpoint --sign k --out f` with `f` there: the checkpoint's own words, not keygen's; `--out`
    /// without `--sign` is refused rather than ignored.
    func testCheckpointOutIsRefusedWhenItExistsOrWithoutSign() throws {
        XCTAssertEqual(try runPiivault(["audit", "keygen", "--dir", keys.path]).status, 0)
        let existing = keys.appendingPathComponent("cp1.txt")
        try Data("an earlier checkpoint\n".utf8).write(to: existing)
        let again = try runPiivault(["audit", "checkpoint", "--database-url", nowhere, "--sign", key("auditor.key"),
                                     "--out", existing.path])
        assertVoice(again, 1, "\(existing.path) already exists; a signed checkpoint never replaces one")
        XCTAssertFalse(again.stderr.contains("keygen"), again.stderr)
        XCTAssertEqual(try String(contentsOf: existing, encoding: .utf8), "an earlier checkpoint\n")
        let unsigned = try runPiivault(["audit", "checkpoint", "--database-url", nowhere, "--out", existing.path])
        assertVoice(unsigned, 64, "--out names the signed statement's file and goes with --sign")
    }

    /// `audit report --html` into a folder that does not exist: one line naming the file and the reason.
    func testReportIntoAMissingFolderIsOneLine() async throws {
        let database = try await ScratchDatabase.migrated(prefix: "fhreport")
        defer { Task { await database.drop() } }
        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let result = try runPiivault(["audit", "report", "--database-url", auditor, "--html", "/no/such/dir/r.html"])
        assertVoice(result, 1, "cannot write /no/such/dir/r.html: No such file or directory")
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
    }

    /// `audit log --action unmsk` (a typo) is refused with the valid actions, not answered with an empty table.
    func testAnUnknownAuditActionIsRefusedWithTheValidOnes() throws {
        let result = try runPiivault(["audit", "log", "--database-url", nowhere, "--action", "unmsk"])
        assertVoice(result, 64, "--action unmsk is not an action the log records; use one of unmask, lookup, forget, retention, rewrap, retokenize, policy, request, approve, deny")
        XCTAssertEqual(result.stdout, "")
    }

    /// A usage error starts with the same line as every other error (the README's `piivault: error: WHAT; WHAT TO
    /// DO`), then the usage.
    func testUsageErrorsStartWithTheProjectsErrorLine() throws {
        let unknown = try runPiivault(["keygen", "--no-such-flag"])
        assertVoice(unknown, 64, "Unknown option '--no-such-flag'")
        XCTAssertTrue(unknown.stderr.contains("Usage: piivault keygen"), unknown.stderr)
        XCTAssertFalse(unknown.stderr.contains("Error: "), unknown.stderr)
        let missing = try runPiivault(["rewrap", "--key-file", key("vault.key")])
        assertVoice(missing, 64, "--to")
    }
}
