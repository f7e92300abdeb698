import Foundation
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
}
