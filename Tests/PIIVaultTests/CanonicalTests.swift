import PIIVault
import XCTest

final class CanonicalTests: XCTestCase {
    func testIPv4AndMappedFormsGiveOneToken() throws {
        let tokenizer = Tokenizer(key: try fixedTokenKey())
        let forms = ["192.168.1.1", "::ffff:192.168.1.1", "::FFFF:C0A8:0101", "0:0:0:0:0:ffff:c0a8:101"]
        let results = try forms.map { try tokenizer.tokenize($0, as: .ip) }
        XCTAssertEqual(Set(results.map(\.canonical)), ["192.168.1.1"])
        XCTAssertEqual(Set(results.map(\.token)).count, 1)
    }

    func testIPv6FormsGiveOneToken() throws {
        let tokenizer = Tokenizer(key: try fixedTokenKey())
        let a = try tokenizer.tokenize("2001:DB8:0:0:0:0:0:1", as: .ip)
        let b = try tokenizer.tokenize("2001:db8::1", as: .ip)
        XCTAssertEqual(a.canonical, "2001:db8::1")
        XCTAssertEqual(a.token, b.token)
    }

    func testRFC5952Rules() throws {
        let cases: [(String, String)] = [
            ("2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8::1:0:0:1"),  // leftmost of two equal runs
            ("2001:db8:0:0:1:0:0:0", "2001:db8:0:0:1::"),  // the longer run wins
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero group is not compressed
            ("0:0:0:0:0:0:0:0", "::"),
            ("::1", "::1"),
            ("FE80::ABCD", "fe80::abcd"),
            ("::192.0.2.1", "::c000:201"),  // IPv4-compatible (deprecated): plain hex
            ("64:ff9b::192.0.2.1", "64:ff9b::c000:201"),
        ]
        for (input, expected) in cases {
            XCTAssertEqual(try Canonical.ip(input), expected, input)
        }
    }

    func testInvalidIPsAreRejected() {
        for bad in [
            "999.1.1.1", "1.2.3", "", "localhost", "01.2.3.4", "1.2.3.04", "1.2.3.4.5", " 1.2.3.4", "1.2.3.4 ",
            "1.2.3.4/24", "fe80::1%eth0", "::ffff:01.2.3.4", "1:2:3:4:5:6:7:8:9", "12345::", "1.2.3.", ".1.2.3",
            "256.0.0.0", "1..2.3", "gggg::", "1.2.3.4\u{0}", ":::",
        ] {
            XCTAssertThrowsError(try Canonical.ip(bad), equals: TokenError.invalidIP)
        }
        XCTAssertEqual(try Canonical.ip("0.0.0.0"), "0.0.0.0")
        XCTAssertEqual(try Canonical.ip("255.255.255.255"), "255.255.255.255")
    }

    func testDeviceIDIsTrimmed() throws {
        let tokenizer = Tokenizer(key: try fixedTokenKey())
        let padded = try tokenizer.tokenize("  device-0001\t\n", as: .deviceID)
        let plain = try tokenizer.tokenize("device-0001", as: .deviceID)
        XCTAssertEqual(padded, plain)
        XCTAssertEqual(try Canonical.deviceID("a b"), "a b")  // inner spaces stay
        XCTAssertThrowsError(try Canonical.deviceID(""), equals: TokenError.emptyDeviceID)
        XCTAssertThrowsError(try Canonical.deviceID(" \t "), equals: TokenError.emptyDeviceID)
    }

    func testSameStringInTwoFieldsGivesUnrelatedTokens() throws {
        let tokenizer = Tokenizer(key: try fixedTokenKey())
        let asIP = try tokenizer.tokenize("192.0.2.7", as: .ip).token
        let asDevice = try tokenizer.tokenize("192.0.2.7", as: .deviceID).token
        XCTAssertTrue(asIP.hasPrefix("ip.v1."))
        XCTAssertTrue(asDevice.hasPrefix("dev.v1."))
        XCTAssertNotEqual(asIP.dropFirst(6), asDevice.dropFirst(7))
        XCTAssertEqual(asIP.utf8.count, 6 + 64)
        XCTAssertEqual(asDevice.utf8.count, 7 + 64)
    }

    func testKeyAndVersionChangeTokens() throws {
        let a = Tokenizer(key: try fixedTokenKey(1)), b = Tokenizer(key: try fixedTokenKey(2))
        let v2 = Tokenizer(key: try fixedTokenKey(1), version: 2)
        let ta = a.token(forCanonical: "192.0.2.1", field: .ip)
        XCTAssertNotEqual(ta, b.token(forCanonical: "192.0.2.1", field: .ip))
        XCTAssertTrue(v2.token(forCanonical: "192.0.2.1", field: .ip).hasPrefix("ip.v2."))
        XCTAssertNotEqual(ta.dropFirst(6), v2.token(forCanonical: "192.0.2.1", field: .ip).dropFirst(6))
    }
}
