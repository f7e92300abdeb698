import PIIVault
import XCTest

/// The message rules (docs/ARCHITECTURE.md, "The ETL").
final class LoginEventTests: XCTestCase {
    private func parse(_ text: String) throws -> LoginEvent {
        try LoginEvent.parse(body: Array(text.utf8))
    }

    private func rejection(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try LoginEvent.parse(body: Array(text.utf8))
            XCTFail("expected a rejection", file: file, line: line)
            return ""
        } catch {
            return error.reason
        }
    }

    private let valid = #"{"user_id": "u-1", "device_type": "android", "ip": "192.0.2.1", "device_id": "123-45-6789", "locale": null, "app_version": "2.3.0"}"#

    func testAValidMessage() throws {
        let event = try parse(valid)
        XCTAssertEqual(event.userID, "u-1")
        XCTAssertEqual(event.deviceType, "android")
        XCTAssertNil(event.locale)
        XCTAssertEqual(event.appVersionText, "2.3.0")
        XCTAssertEqual(event.appVersion, 2_003_000)
        XCTAssertNil(event.createDate)
    }

    func testTheSeedsMalformedMessageNamesTheMissingFields() {
        let reason = rejection(#"{"foo": "oops_wrong_msg_type", "bar": "123"}"#)
        XCTAssertEqual(reason, "missing required fields: user_id, device_type, ip, device_id")
        XCTAssertFalse(reason.contains("oops"))
    }

    func testAppVersionNumbers() {
        XCTAssertEqual(LoginEvent.appVersionNumber("0.96"), 96_000)
        XCTAssertEqual(LoginEvent.appVersionNumber("0.9.6"), 9_006)
        XCTAssertEqual(LoginEvent.appVersionNumber("2.3"), LoginEvent.appVersionNumber("2.3.0"))
        XCTAssertEqual(LoginEvent.appVersionNumber("2.00"), 2_000_000)
        XCTAssertEqual(LoginEvent.appVersionNumber("2"), 2_000_000)
        XCTAssertEqual(LoginEvent.appVersionNumber("999.999.999"), 999_999_999)
        for bad in ["1000.0", "1.2.3.4", "a.b", "1..2", "", "-1.0", "1.2.", " 1.2", "+1", "١.٢"] {
            XCTAssertNil(LoginEvent.appVersionNumber(bad), bad)
        }
    }

    func testAnUnfittingVersionStillLoads() throws {
        let event = try parse(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "app_version": "1.2.3.4-beta"}"#)
        XCTAssertEqual(event.appVersionText, "1.2.3.4-beta")
        XCTAssertNil(event.appVersion)
    }

    func testCreateDate() throws {
        XCTAssertEqual(try parse(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "create_date": "2024-02-29"}"#).createDate, "2024-02-29")
        for bad in ["2023-02-29", "2024-13-01", "24-01-01", "2024-1-1", "yesterday"] {
            XCTAssertTrue(rejection(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "create_date": "\#(bad)"}"#).hasPrefix("field create_date"), bad)
        }
    }

    func testWrongTypesAndLengths() {
        XCTAssertEqual(rejection(#"{"user_id": 12, "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field user_id: expected a string, got number")
        XCTAssertEqual(rejection(#"{"user_id": "u", "device_type": {"a": 1}, "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field device_type: expected a string, got object")
        XCTAssertEqual(rejection(#"{"user_id": "u", "device_type": "ios", "ip": ["192.0.2.1"], "device_id": "d"}"#),
                       "field ip: expected a string, got array")
        XCTAssertEqual(rejection(#"{"user_id": "\#(String(repeating: "é", count: 129))", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field user_id: longer than 128 characters")
        XCTAssertNoThrow(try parse(#"{"user_id": "\#(String(repeating: "é", count: 128))", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#))
        XCTAssertEqual(rejection(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "locale": 7}"#),
                       "field locale: expected a string or null, got number")
        XCTAssertEqual(rejection(#"{"user_id": "a\u0000b", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field user_id: contains a NUL character")
    }

    func testMalformedBodies() {
        XCTAssertEqual(rejection(""), "empty body")
        XCTAssertTrue(rejection("not json").hasPrefix("not valid JSON"))
        XCTAssertTrue(rejection("[1, 2]").hasPrefix("not a JSON object"))
        XCTAssertTrue(rejection(#"{"user_id": "\ud800", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#).contains("lone surrogate"))
        XCTAssertTrue(rejection(#"{"ip": "192.0.2.1", "ip": "198.51.100.1"}"#).contains("duplicate member"))
        XCTAssertTrue(rejection(String(repeating: "[", count: 10_000)).contains("nested deeper"))
        XCTAssertTrue(rejection(#"{"user_id": "u"} trailing"#).contains("after the JSON value"))
        do {
            _ = try LoginEvent.parse(body: [0x7B, 0x22, 0xFF, 0x22, 0x3A, 0x31, 0x7D])
            XCTFail("invalid UTF-8 must be refused")
        } catch {
            XCTAssertTrue(error.reason.contains("invalid UTF-8"), error.reason)
        }
    }

    func testLargeObjectsFindDuplicatesAndFieldsToo() throws {
        // Past 16 members the parser and the field lookup switch from scanning to hashing; both ways must agree.
        let padding = (0..<20).map { #""extra\#($0)": \#($0)"# }
        let base = [#""user_id": "u""#, #""device_type": "ios""#, #""ip": "192.0.2.1""#, #""device_id": "d""#]
        let large = "{" + (padding + base).joined(separator: ", ") + "}"
        XCTAssertEqual(try parse(large).deviceID, "d")
        for duplicate in [#""extra3": 0"#, #""ip": "198.51.100.1""#, #""extra19": 1"#] {
            XCTAssertTrue(rejection("{" + (padding + base + [duplicate]).joined(separator: ", ") + "}")
                .contains("duplicate member"), duplicate)
        }
        XCTAssertTrue(rejection("{" + (padding.prefix(10) + [#""extra3": 0"#] + padding.suffix(10)).joined(separator: ", ") + "}")
            .contains("duplicate member"), "a duplicate found while still scanning")
    }

    func testUnicodeEscapesDecode() throws {
        let event = try parse(#"{"user_id": "Zo\u00eb \ud83d\ude80 \"q\" \\", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#)
        XCTAssertEqual(event.userID, "Zoë 🚀 \"q\" \\")
    }
}

/// Fields stored in clear refuse control and bidirectional formatting characters, naming the code point.
final class LoginEventClearTextTests: XCTestCase {
    private func reason(_ json: String) -> String? {
        do {
            _ = try LoginEvent.parse(body: Array(json.utf8))
            return nil
        } catch {
            return error.reason
        }
    }

    func testControlAndBidiCharactersInClearFieldsAreRefusedByCodePoint() {
        XCTAssertEqual(reason(#"{"user_id": "u\u001b[2J", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field user_id: contains control character U+001B, not allowed in a field stored in clear")
        XCTAssertEqual(reason(#"{"user_id": "u", "device_type": "i\u0085os", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field device_type: contains control character U+0085, not allowed in a field stored in clear")
        XCTAssertEqual(reason(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "locale": "en\u202eSU"}"#),
                       "field locale: contains bidirectional formatting character U+202E, not allowed in a field stored in clear")
        XCTAssertEqual(reason(#"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d", "app_version": "1\t2"}"#),
                       "field app_version: contains control character U+0009, not allowed in a field stored in clear")
        XCTAssertEqual(reason(#"{"user_id": "u\u007f", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                       "field user_id: contains control character U+007F, not allowed in a field stored in clear")
    }

    /// Issue 24, defect 7: every format character (category Cf) is refused in clear, not only the bidirectional ones.
    func testInvisibleFormatCharactersAreRefusedByCodePoint() {
        for (escaped, codePoint) in [("\\u200b", "U+200B"), ("\\u2060", "U+2060"), ("\\ufeff", "U+FEFF"),
                                     ("\\u00ad", "U+00AD"), ("\\udb40\\udc01", "U+E0001")] {
            XCTAssertEqual(reason(#"{"user_id": "alice"# + escaped + #"", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d"}"#),
                           "field user_id: contains invisible format character \(codePoint), not allowed in a field stored in clear")
        }
    }

    func testSealedFieldsAndOrdinaryTextStillLoad() {
        // device_id is sealed, never shown in clear: only NUL is refused there.
        XCTAssertNil(reason(#"{"user_id": "zoë 李", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d\u001bx", "locale": "fr-CA"}"#))
    }
}
