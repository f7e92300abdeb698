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

    /// A batch's COPY buffers are reserved at their final size, so they are never grown (by doubling) while it is
    /// encoded: what is written fits the reservation, and only the integers' allowance of 20 digits is spare.
    func testABatchsCopyDataFitsTheSizeReservedForIt() {
        let sealed = [UInt8](repeating: 0xab, count: 40)
        let batch = (0..<50).map { i -> PreparedMessage in
            let login = PreparedLogin(
                messageID: "file-\(i)", userID: "user-\(i)", deviceType: "android",
                ipToken: "ip.v1.\(String(repeating: "a", count: 60))\(i)", deviceToken: "dev.v1.\(i)",
                locale: i % 2 == 0 ? nil : "RU", appVersion: i % 3 == 0 ? nil : Int.min + i,
                appVersionText: i % 5 == 0 ? nil : "2.3.\(i)", createDate: "2026-12-05",
                subjectHash: String(repeating: "c", count: 64))
            let secrets = [PreparedSecret(token: login.ipToken, field: .ip, sealed: sealed),
                           PreparedSecret(token: login.deviceToken, field: .deviceID, sealed: sealed)]
            return PreparedMessage(source: SourceMessage(messageID: login.messageID, body: [], sentAt: nil, receiptHandle: nil),
                                   content: .login(login, secrets: secrets))
        }
        let encoded = EncodedBatch(batch, dataKeyID: 123_456, etlRunID: 42)
        var loginsReserved = 0, secretsReserved = 0
        for message in batch {
            guard case .login(let login, let secrets) = message.content else { continue }
            loginsReserved += EncodedBatch.encodedSize(of: login)
            secretsReserved += secrets.reduce(0) { $0 + EncodedBatch.encodedSize(of: $1) }
        }
        XCTAssertEqual(encoded.logins.rowCount, 50)
        XCTAssertEqual(encoded.secrets.rowCount, 100)
        XCTAssertLessThanOrEqual(encoded.logins.bytes.count, loginsReserved)
        XCTAssertGreaterThanOrEqual(encoded.logins.bytes.count, loginsReserved - 2 * 20 * 50, "two integers")
        XCTAssertLessThanOrEqual(encoded.secrets.bytes.count, secretsReserved)
        XCTAssertEqual(encoded.secrets.bytes.count, secretsReserved - (20 - 6) * 100, "six digits of data key id")
    }

    func testArrayLiteralsQuoteAndEscape() {
        XCTAssertEqual(PostgresArray.commaSeparated([]), "")
        XCTAssertEqual(PostgresArray.commaSeparated(["ip.v1.ab", "zoë"]), "ip.v1.ab,zoë")
        XCTAssertEqual(PostgresArray.texts([]), "{}")
        XCTAssertEqual(PostgresArray.texts(["ip.v1.ab", #"a"b\c"#, "", "zoë"]), #"{"ip.v1.ab","a\"b\\c","","zoë"}"#)
    }
}
