import Foundation
import Postgres
import TestSupport
import XCTest

/// The test helpers that stand in for an independent tool agree with it.
final class TestSupportTests: XCTestCase {
    /// `SQSEmulator.pythonJSON` writes message bodies as `send-messages.py` would (keys sorted): Python's own
    /// `json.dumps(record, sort_keys=True)` gives the same text for quotes, backslashes, controls, non-ASCII, null.
    func testPythonJSONMatchesJSONDumps() throws {
        let records: [[String: Any]] = [
            ["user_id": "u-1", "ip": "192.0.2.1", "locale": NSNull(), "device_id": "a\"b\\c/d"],
            ["z": "tab\there\nnew\r\u{08}\u{0C}\u{01}\u{7F}", "a": "é ü 漢字 😀 \u{2028}", "n": 42, "t": true, "f": false],
            ["nested": ["list": [1, "two", NSNull()]], "empty": ""],
        ]
        let input = try JSONSerialization.data(withJSONObject: records)
        let result = try runProcess("python3", ["-c", """
            import json, sys
            for record in json.load(sys.stdin):
                print(json.dumps(record, sort_keys=True))
            """], input: input)
        XCTAssertEqual(result.status, 0, result.stderr)
        let expected = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(records.map(SQSEmulator.pythonJSON), expected)
    }

    /// `ScramVerifier` computes what `scripts/scram-verifier` (Python's hashlib and hmac) computes.
    func testScramVerifierMatchesPython() throws {
        let salt: [UInt8] = Array(0..<16)
        let ours = ScramVerifier.make(password: "pencil-é", salt: salt, iterations: 4096)
        let script = TestServices.repositoryRoot.appendingPathComponent("scripts/scram-verifier").path
        let result = try runProcess("python3", [script, "pencil-é", "4096", salt.map { String(format: "%02x", $0) }.joined()])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(ours, result.stdout.trimmingCharacters(in: .newlines))
    }

    /// A login made by `ScratchDatabase.createLogin` (a 16-iteration verifier) logs in by SCRAM with its password,
    /// and a wrong password is refused.
    func testScratchLoginsAuthenticateBySCRAM() async throws {
        let database = try await ScratchDatabase.create(prefix: "scram")
        defer { Task { await database.drop() } }
        let loginURL = try await database.createLogin(memberOf: nil)
        let login = try XCTUnwrap(URLComponents(string: loginURL))
        let user = try XCTUnwrap(login.user)
        let connection = try await PostgresConnection.connect(login.string!)
        let currentUser = try await connection.query("SELECT current_user").first![0].string()
        await connection.close()
        XCTAssertEqual(currentUser, user)
        let admin = try await database.connect()
        let stored = try await admin.query("SELECT rolpassword FROM pg_authid WHERE rolname = \(user)")
            .first![0].string() ?? ""
        await admin.close()
        XCTAssertTrue(stored.hasPrefix("SCRAM-SHA-256$16:"), "stored as a SCRAM verifier of 16 iterations")
        var wrong = login
        wrong.password = "not-the-password"
        do {
            let refused = try await PostgresConnection.connect(wrong.string!)
            await refused.close()
            XCTFail("a wrong password was accepted")
        } catch {}
    }
}
