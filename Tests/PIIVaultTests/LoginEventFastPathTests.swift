@testable import PIIVault
import XCTest

/// The fast path (`LoginEvent.parseCommonShape`) takes the common message shape and declines everything else, and
/// whatever it takes, the full parse takes too, giving the same event.
final class LoginEventFastPathTests: XCTestCase {
    private let valid = #"{"user_id": "user-17", "app_version": "2.3.0", "device_type": "android", "ip": "10.0.0.17", "locale": "RU", "device_id": "017-00-0000"}"#

    private func fast(_ text: String) -> LoginEvent? {
        Array(text.utf8).withUnsafeBufferPointer { LoginEvent.parseCommonShape($0) }
    }

    private func fast(_ bytes: [UInt8]) -> LoginEvent? {
        bytes.withUnsafeBufferPointer { LoginEvent.parseCommonShape($0) }
    }

    /// The full parse's answer: the event, or the rejection's reason.
    private func full(_ bytes: [UInt8]) -> Result<LoginEvent, MessageRejection> {
        Result { () throws(MessageRejection) -> LoginEvent in try LoginEvent.parseFully(body: bytes) }
    }

    /// The fast path either declines or agrees with the full parse.
    private func assertAgrees(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        guard let event = fast(bytes) else { return }
        switch full(bytes) {
        case .success(let expected): XCTAssertEqual(event, expected, file: file, line: line)
        case .failure(let rejection):
            XCTFail("the fast path accepted a body the full parse refuses (\(rejection.reason))", file: file, line: line)
        }
    }

    func testTheCommonShapesAreTakenWithTheSameEventAsTheFullParse() throws {
        let bodies = [
            valid,
            #"{"user_id":"u","device_type":"ios","ip":"192.0.2.1","device_id":"d"}"#,
            " \t\r\n{ \"user_id\" : \"u\" ,\n\"device_type\":\"ios\", \"ip\":\"2001:db8::1\", \"device_id\":\"d d\" } \n",
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "locale": null, "app_version": null, "create_date": null}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": " d ", "create_date": "2024-02-29"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "app_version": "1.2.3.4-beta"}"#,
            #"{"user_id": "\#(String(repeating: "x", count: 128))", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#,
            #"{"user_id": "a/b~!@#$%^&*()", "device_type": "ios", "ip": "not an address", "device_id": "d"}"#,
        ]
        for body in bodies {
            let event = try XCTUnwrap(fast(body), body)
            XCTAssertEqual(event, try LoginEvent.parseFully(body: Array(body.utf8)), body)
            XCTAssertEqual(event, try LoginEvent.parse(body: Array(body.utf8)), body)
        }
        let event = try XCTUnwrap(fast(valid))
        XCTAssertEqual(event.userID, "user-17")
        XCTAssertEqual(event.appVersion, 2_003_000)
        XCTAssertEqual(event.locale, "RU")
        XCTAssertEqual(event.deviceID, "017-00-0000")
    }

    func testEverythingElseIsLeftToTheFullParse() {
        let base = [#""user_id": "u""#, #""device_type": "ios""#, #""ip": "192.0.2.1""#, #""device_id": "d""#]
        func object(_ members: [String]) -> String { "{" + members.joined(separator: ", ") + "}" }
        let declined = [
            "",
            "   ",
            "[]",
            "{}",
            object(base) + " x",
            object(base) + "}",
            String(object(base).dropLast()),
            object(base + [#""extra": "x""#]),                        // a member it does not know
            object(base + [#""ip": "192.0.2.2""#]),                   // a repeated member
            object(base + [#""app_version": 2"#]),                    // a number
            object(base + [#""locale": true"#]),                      // another type
            object(base + [#""locale": nul"#]),
            object(base + [#""locale": nullx"#]),
            object(base + [#""locale": ["x"]"#]),
            object([#""user_id": "u\"v""#] + base.dropFirst()),       // an escape
            object([#""user_id": "u\u0041""#] + base.dropFirst()),
            object([#""user_id": "zoë""#] + base.dropFirst()),        // a byte outside ASCII
            object([#""user_id": "u\#u{7F}""#] + base.dropFirst()),   // DEL
            object([#""user_id": "u\#tv""#] + base.dropFirst()),      // a control character
            object([#""user_id": """#] + base.dropFirst()),           // empty
            object([#""user_id": null"#] + base.dropFirst()),         // null where required
            object(Array(base.dropFirst())),                          // missing
            object([#""user_id": "\#(String(repeating: "x", count: 129))""#] + base.dropFirst()),  // too long
            object(base + [#""create_date": "2023-02-29""#]),         // not a date
            object(base + [#""locale": "\#(String(repeating: "x", count: 33))""#]),
            object(base + [#""\u006cocale": "RU""#]),                 // an escaped name
            #"{"user_id" "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#,
            #"{"user_id": "u" "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d",}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"#,
        ]
        for body in declined {
            XCTAssertNil(fast(body), body)
        }
        // What the full parse says about those stays as it was: each reason from the rules, not from the fast path.
        XCTAssertEqual(try? LoginEvent.parse(body: Array(object(base + [#""extra": "x""#]).utf8)).deviceID, "d")
        XCTAssertEqual(rejection(object(base + [#""app_version": true"#])), "field app_version: expected a string, got boolean")
        XCTAssertEqual(rejection(object(Array(base.dropFirst()))), "missing required fields: user_id")
        XCTAssertEqual(rejection(object([#""user_id": """#] + base.dropFirst())), "field user_id: empty")
        XCTAssertEqual(rejection(object(base + [#""create_date": "2023-02-29""#])), "field create_date: not a valid YYYY-MM-DD date")
        XCTAssertEqual(rejection(object(base + [#""ip": "192.0.2.2""#])), "not valid JSON: duplicate member name at byte 80")
        XCTAssertEqual(rejection(""), "empty body")
    }

    private func rejection(_ text: String) -> String? {
        do {
            _ = try LoginEvent.parse(body: Array(text.utf8))
            return nil
        } catch {
            return error.reason
        }
    }

    /// Random damage to a valid body (bytes replaced, inserted, removed): the fast path never takes a body the full
    /// parse refuses, and never reads a body differently.
    func testDamagedBodiesNeverDisagree() {
        var generator = SplitMix64(seed: 25)
        let alphabet = Array(#"{}[]":, \"\\nul0123456789abcdefu.-"#.utf8) + [0x00, 0x09, 0x0A, 0x7F, 0xC3, 0xA9, 0xFF]
        let original = Array(valid.utf8)
        var taken = 0
        for _ in 0..<20_000 {
            var bytes = original
            for _ in 0..<(1 + Int(generator.next() % 3)) {
                let position = Int(generator.next() % UInt64(bytes.count + 1))
                let byte = alphabet[Int(generator.next() % UInt64(alphabet.count))]
                switch generator.next() % 3 {
                case 0 where position < bytes.count: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                default: if position < bytes.count { bytes.remove(at: position) }
                }
            }
            if fast(bytes) != nil { taken += 1 }
            assertAgrees(bytes)
        }
        XCTAssertGreaterThan(taken, 1_000, "the damage should leave many bodies in the common shape")
    }
}

/// A small deterministic generator (SplitMix64), so a failure can be replayed.
private struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
