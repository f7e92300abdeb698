import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Issue 14, item 7: piivault sets the session settings it reads results in, so a role default or `PGOPTIONS` that
/// changes bytea, date or time output breaks nothing. The real binary against a real database.
final class SessionSettingsTests: XCTestCase {
    /// What an operator's environment or a role default might set.
    static let hostileOptions = "-c bytea_output=escape -c DateStyle=SQL,DMY -c TimeZone=Asia/Tokyo -c IntervalStyle=sql_standard -c extra_float_digits=-15"

    var database: ScratchDatabase!
    var keys: URL!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "session")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("session-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    func testUnmaskAndAuditVerifyWorkWhateverTheSessionDefaults() async throws {
        let environment: [String: String?] = ["PGOPTIONS": Self.hostileOptions, "USER": "officer"]
        let input = keys.appendingPathComponent("in.ndjson")
        try (#"{"user_id": "u-tokyo", "device_type": "ios", "ip": "192.0.2.77", "device_id": "dev-tokyo", "create_date": "2024-02-29"}"#
             + "\nnot json\n").write(to: input, atomically: true, encoding: .utf8)
        let etl = try runPiivault(["etl", "--from-file", input.path, "--database-url", database.url,
                                   "--token-key", keys.appendingPathComponent("token.key").path,
                                   "--vault-public-key", keys.appendingPathComponent("vault.pub").path],
                                  environment: environment)
        XCTAssertEqual(etl.status, 0, etl.stderr)

        // The settings really are in force for a session that does not set its own.
        let probe = try await PostgresConnection.connect(database.url + "?options=" + Self.hostileOptions
            .replacingOccurrences(of: " ", with: "%20").replacingOccurrences(of: "=", with: "%3D")
            .replacingOccurrences(of: ",", with: "%2C"))
        let shown = try await probe.query("SHOW bytea_output").first![0].requiredString()
        await probe.close()
        XCTAssertEqual(shown, "hex", "PostgresConnection overrides the session's bytea_output")

        let compliance = try await database.createLogin(memberOf: "piivault_compliance")
        let keyFile = keys.appendingPathComponent("vault.key").path
        let tokenizer = Tokenizer(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
        let token = try tokenizer.tokenize("192.0.2.77", as: .ip).token
        let byToken = try runPiivault(["unmask", "--database-url", compliance, "--key-file", keyFile, "--token-key", keys.appendingPathComponent("token.key").path,
                                       "--reason", "case 7", "--token", token, "--format", "csv"], environment: environment)
        XCTAssertEqual(byToken.status, 0, byToken.stderr)
        XCTAssertTrue(byToken.stdout.contains("\(token),ip,192.0.2.77"), byToken.stdout)

        let byUser = try runPiivault(["unmask", "--database-url", compliance, "--key-file", keyFile, "--token-key", keys.appendingPathComponent("token.key").path,
                                      "--reason", "case 7", "--user-id", "u-tokyo", "--format", "csv"],
                                     environment: environment)
        XCTAssertEqual(byUser.status, 0, byUser.stderr)
        XCTAssertTrue(byUser.stdout.contains("u-tokyo,2024-02-29,ios,192.0.2.77,dev-tokyo"), "dates in ISO form: \(byUser.stdout)")

        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let verify = try runPiivault(["audit", "verify", "--database-url", auditor], environment: environment)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)

        // A quarantined message's receive time, in ISO form and UTC.
        let connection = try await database.connect()
        let messageID = try await connection.query("SELECT message_id FROM vault.quarantine").first![0].requiredString()
        await connection.close()
        let quarantined = try runPiivault(["unmask", "--database-url", compliance, "--key-file", keyFile, "--token-key", keys.appendingPathComponent("token.key").path,
                                           "--reason", "case 7", "--quarantined", messageID, "--format", "json"],
                                          environment: environment)
        XCTAssertEqual(quarantined.status, 0, quarantined.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: quarantined.stdoutData) as? [String: Any])
        let receivedAt = try XCTUnwrap(object["received_at"] as? String, "\(object.keys)")
        // The same form as every other time piivault prints (audit log, run history): ISO 8601, UTC, with a T and a Z.
        XCTAssertNotNil(receivedAt.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$"#, options: .regularExpression),
                        "received_at in ISO form, UTC: \(receivedAt)")
    }
}
