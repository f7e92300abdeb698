@testable import PIIVault
import Postgres
import XCTest

/// The ETL's encoders, rewritten for speed (issue 25), give what the plain versions gave.
final class ETLEncodingTests: XCTestCase {
    func testTokenOrderIsTheOrderOfLessThan() {
        var generator = SystemRandomNumberGenerator()
        let hex = Array("0123456789abcdef")
        func digest() -> String { String((0..<64).map { _ in hex[Int.random(in: 0..<16, using: &generator)] }) }
        var tokens = (0..<500).map { "\($0 % 2 == 0 ? "ip" : "dev").v\(1 + $0 % 3).\(digest())" }
        // Equal first 16 bytes (the sort key), differing later; a prefix of another; the empty string.
        tokens += ["ip.v1.0000000000aaaa", "ip.v1.0000000000aaab", "ip.v1.0000000000", "ip.v1.0000000000a", "", "ip"]
        tokens.shuffle()
        XCTAssertEqual(tokenOrder(tokens).map { tokens[$0] }, tokens.sorted())
        XCTAssertEqual(tokenOrder([]), [])
    }

    func testCopyTextEscapesAndNumbers() {
        var writer = CopyTextWriter()
        writer.append("plain")
        writer.append("a\\b\tc\nd\re")
        writer.append(nil as String?)
        writer.append(-1_234_567)
        writer.append(0)
        writer.append(Int.min)
        writer.append(bytes: [0x00, 0xab, 0xff])
        writer.append(bytes: [])
        writer.endRow()
        XCTAssertEqual(String(decoding: writer.bytes, as: UTF8.self),
                       "plain\ta\\\\b\\tc\\nd\\re\t\\N\t-1234567\t0\t-9223372036854775808\t\\\\x00abff\t\\\\x\n")
        XCTAssertEqual(writer.rowCount, 1)
    }

    func testArrayLiteralsQuoteAndEscape() {
        XCTAssertEqual(PostgresArray.texts([]), "{}")
        XCTAssertEqual(PostgresArray.texts(["ip.v1.ab", #"a"b\c"#, "", "zoë"]), #"{"ip.v1.ab","a\"b\\c","","zoë"}"#)
    }
}
