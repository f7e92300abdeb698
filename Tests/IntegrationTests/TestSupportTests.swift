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

    /// `ScramVerifier` computes what Python's hashlib and hmac compute for RFC 5802's stored and server keys.
    func testScramVerifierMatchesPython() throws {
        let salt: [UInt8] = Array(0..<16)
        let ours = ScramVerifier.make(password: "pencil-é", salt: salt, iterations: 4096)
        let result = try runProcess("python3", ["-c", """
            import base64, hashlib, hmac
            salt = bytes(range(16))
            salted = hashlib.pbkdf2_hmac("sha256", "pencil-é".encode(), salt, 4096)
            stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
            server = hmac.new(salted, b"Server Key", "sha256").digest()
            b64 = lambda data: base64.b64encode(data).decode()
            print(f"SCRAM-SHA-256$4096:{b64(salt)}${b64(stored)}:{b64(server)}")
            """])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(ours, result.stdout.trimmingCharacters(in: .newlines))
    }

    /// A login made by `ScratchDatabase.createLogin` (a 16-iteration verifier) logs in by SCRAM with its password,
    /// and a wrong password is refused.
    func testScratchLoginsAuthenticateBySCRAM() async throws {
        let database = try await ScratchDatabase.create(prefix: "scram")
        do {
            let login = try await database.createLogin(memberOf: nil)
            let connection = try await PostgresConnection.connect(login)
            let user = try await connection.query("SELECT current_user").first![0].string()
            XCTAssertEqual(user, URLComponents(string: login)!.user)
            await connection.close()
            let admin = try await database.connect()
            let stored = try await admin.query("""
                SELECT rolpassword FROM pg_authid WHERE rolname = \(URLComponents(string: login)!.user!)
                """).first![0].string() ?? ""
            await admin.close()
            XCTAssertTrue(stored.hasPrefix("SCRAM-SHA-256$16:"), "stored as a SCRAM verifier of 16 iterations")
            var wrong = URLComponents(string: login)!
            wrong.password = "not-the-password"
            do {
                let refused = try await PostgresConnection.connect(wrong.string!)
                await refused.close()
                XCTFail("a wrong password was accepted")
            } catch {}
        } catch {
            await database.drop()
            throw error
        }
        await database.drop()
    }
}
