@testable import PIIVault
import XCTest

/// `DigestKey` hashes only a token's last 8 bytes, but a set of them must still tell apart every distinct token.
final class DigestKeyTests: XCTestCase {
    func testTokensSharingTheirLastBytesStayDistinctAndEqualTokensMatch() {
        let tail = "0123456789abcdef"
        let a = "ip.v1." + String(repeating: "a", count: 48) + tail
        let b = "ip.v1." + String(repeating: "b", count: 48) + tail
        let short = "dev"
        var set: Set<DigestKey> = [DigestKey(a), DigestKey(b), DigestKey(short)]
        XCTAssertEqual(set.count, 3)
        XCTAssertTrue(set.contains(DigestKey(String(a.utf8.map { Character(UnicodeScalar($0)) }))))
        XCTAssertFalse(set.contains(DigestKey("ip.v1." + String(repeating: "c", count: 48) + tail)))
        XCTAssertNotNil(set.remove(DigestKey(b)))
        XCTAssertEqual(set.map(\.text).sorted(), [short, a].sorted())
    }

    func testATokensFingerprintIsTheLast128BitsOfItsHex() throws {
        let token = "ip.v1." + String(repeating: "0", count: 32) + "0123456789abcdef" + "fedcba9876543210"
        let fingerprint = try XCTUnwrap(TokenFingerprint(token))
        XCTAssertEqual(fingerprint.high, 0x0123_4567_89ab_cdef)
        XCTAssertEqual(fingerprint.low, 0xfedc_ba98_7654_3210)
        XCTAssertNotEqual(TokenFingerprint("dev.v1." + String(repeating: "0", count: 63) + "1"), fingerprint)
        XCTAssertNil(TokenFingerprint("ip.v1.short"))
        XCTAssertNil(TokenFingerprint("ip.v1." + String(repeating: "g", count: 64)))
        XCTAssertNil(TokenFingerprint("ip.v1." + String(repeating: "A", count: 64)), "tokens are lowercase hex")
    }
}
