import CSodium
@testable import PIIVault
import XCTest

/// `KeyedHMAC` and `sha256` (OpenSSL's SHA-256) against libsodium's HMAC-SHA-256 and SHA-256, the functions they
/// replaced on the ETL's hot path: the same bytes for keys and messages of every length around the block size.
final class KeyedHMACTests: XCTestCase {
    func testKeyedHMACEqualsLibsodiumsHMACSHA256() {
        for keyLength in [1, 16, 31, 32, 33, 63, 64] {
            let key = (0..<keyLength).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ keyLength) }
            let hmac = key.withUnsafeBytes { KeyedHMAC(key: $0) }
            for messageLength in 0...200 {
                let message = (0..<messageLength).map { UInt8(truncatingIfNeeded: $0 &* 11 &+ 3) }
                var ours = [UInt8](repeating: 0, count: 32)
                message.withUnsafeBytes { hmac.authenticate($0, into: &ours) }
                var theirs = [UInt8](repeating: 0, count: 32)
                var state = crypto_auth_hmacsha256_state()
                _ = crypto_auth_hmacsha256_init(&state, key, key.count)
                _ = crypto_auth_hmacsha256_update(&state, message, UInt64(message.count))
                _ = crypto_auth_hmacsha256_final(&state, &theirs)
                XCTAssertEqual(ours, theirs, "key \(keyLength) bytes, message \(messageLength) bytes")
            }
        }
    }

    func testSHA256EqualsLibsodiums() {
        for length in [0, 1, 55, 56, 63, 64, 65, 119, 128, 1000] {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            var theirs = [UInt8](repeating: 0, count: 32)
            _ = crypto_hash_sha256(&theirs, bytes, UInt64(bytes.count))
            XCTAssertEqual(sha256(bytes), theirs, "\(length) bytes")
        }
        // FIPS 180-2's "abc".
        XCTAssertEqual(sha256Hex(Array("abc".utf8)),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
