import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `lookup` and `retention` print through the one rendering path (issue 21, acceptance 5): stored text that reaches
/// their output (`user_id`, `locale`) cannot drive a terminal, and `--safe-csv` guards formulas, as for `unmask` and
/// `audit log`. The real binary, on a terminal through script(1).
final class ComplianceOutputTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var officer: String!

    /// What a writer to the table (the owner, a restored dump; the ETL refuses control characters) could store.
    private let hostileUserID = "=HYPERLINK(\"http://x\")\u{1b}[2J\u{202e}"
    private let hostileLocale = "@en\u{1b}[31m"
    private let ip = "198.51.100.7"

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "output")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("output-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let record: [String: Any] = [
            "user_id": "u-output", "app_version": "2.1", "device_type": "android", "ip": ip, "locale": "en_GB",
            "device_id": "dev-output-1", "create_date": "2020-01-01",
        ]
        let file = keys.appendingPathComponent("load.ndjson")
        try (String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self) + "\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let etl = try runPiivault([
            "etl", "--from-file", file.path, "--database-url", database.url,
            "--token-key", tokenKeyPath, "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
        let owner = try await database.connect()
        let updated = try await owner.execute(
            "UPDATE public.user_logins SET user_id = \(hostileUserID), locale = \(hostileLocale)")
        await owner.close()
        XCTAssertEqual(updated, 1)
        officer = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    private var tokenKeyPath: String { keys.appendingPathComponent("token.key").path }

    private var environment: [String: String?] { ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil] }

    /// `arguments` run by the binary on a pseudo-terminal (script(1)); its output as the terminal got it.
    private func onTerminal(_ arguments: [String]) throws -> ProcessResult {
        let quoted = try ([piivaultBinary()] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        return try runProcess("/usr/bin/script", ["-qec", quoted.joined(separator: " "), "/dev/null"],
                              environment: environment)
    }

    /// A lookup whose rows could not be written (standard output on a full disk) fails, although the command flushes
    /// standard output itself before its note on standard error: the failed write's error is kept until the end.
    func testALookupThatCannotWriteItsRowsFails() throws {
        let lookup = ["lookup", "--database-url", officer!, "--token-key", tokenKeyPath, "--reason", "SAR-22", "--ip", ip]
        let result = try runProcess("/bin/sh", ["-c", "exec \"$0\" \"$@\" >/dev/full", try piivaultBinary()] + lookup,
                                    environment: environment)
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("piivault: error: cannot write standard output ("), result.stderr)
    }

    func testLookupGuardsFormulasWithSafeCSVAndATerminalSeesNoEscapeSequences() throws {
        let lookup = ["lookup", "--database-url", officer!, "--token-key", tokenKeyPath, "--reason", "SAR-21", "--ip", ip]

        let plain = try runPiivault(lookup + ["--format", "csv"], environment: environment)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains(",\"=HYPERLINK(\"\"http://x\"\")\u{1b}[2J\u{202e}\","),
                      "a file or pipe gets the bytes as stored: \(plain.stdout.debugDescription)")
        XCTAssertTrue(plain.stdout.contains(",@en\u{1b}[31m,"), plain.stdout.debugDescription)

        let safe = try runPiivault(lookup + ["--format", "csv", "--safe-csv"], environment: environment)
        XCTAssertEqual(safe.status, 0, safe.stderr)
        XCTAssertTrue(safe.stdout.contains(",\"'=HYPERLINK(\"\"http://x\"\")\u{1b}[2J\u{202e}\","), safe.stdout.debugDescription)
        XCTAssertTrue(safe.stdout.contains(",\"'@en\u{1b}[31m\","), safe.stdout.debugDescription)
        XCTAssertFalse(safe.stdout.contains(",=") || safe.stdout.contains(",@"), safe.stdout.debugDescription)

        for format in ["csv", "table", "json"] {
            let terminal = try onTerminal(lookup + ["--format", format])
            XCTAssertEqual(terminal.status, 0, terminal.stdout + terminal.stderr)
            XCTAssertFalse(terminal.stdout.contains("\u{1b}["), "\(format): \(terminal.stdout.debugDescription)")
            XCTAssertFalse(terminal.stdout.unicodeScalars.contains { $0.value == 0x202E },
                           "\(format): \(terminal.stdout.debugDescription)")
        }
        let table = try onTerminal(lookup)
        XCTAssertTrue(table.stdout.contains("=HYPERLINK(\"http://x\")\\u{1b}[2J\\u{202e}"), table.stdout.debugDescription)
        XCTAssertTrue(table.stdout.contains("@en\\u{1b}[31m"), table.stdout.debugDescription)
    }

    func testRetentionPrintsThroughTheSameRenderer() throws {
        let retention = ["retention", "--database-url", officer!, "--reason", "policy-21", "--older-than", "30", "--dry-run"]
        let safe = try runPiivault(retention + ["--format", "csv", "--safe-csv"], environment: environment)
        XCTAssertEqual(safe.status, 0, safe.stderr)
        let rows = safe.stdout.split(separator: "\r\n").map(String.init)
        XCTAssertEqual(rows.first, "cutoff,logins_deleted,values_deleted,data_keys_deleted,dry_run,log_seq")
        XCTAssertEqual(rows.count, 2, safe.stdout.debugDescription)
        XCTAssertTrue(rows.last?.contains(",1,2,") ?? false, "one login, its two values: \(safe.stdout.debugDescription)")
        XCTAssertTrue(rows.last?.hasSuffix(",true,") ?? false, safe.stdout.debugDescription)

        let terminal = try onTerminal(retention)
        XCTAssertEqual(terminal.status, 0, terminal.stdout + terminal.stderr)
        XCTAssertTrue(terminal.stdout.contains("would delete 1 login rows"), terminal.stdout.debugDescription)
        XCTAssertFalse(terminal.stdout.contains("\u{1b}["), terminal.stdout.debugDescription)
    }
}
