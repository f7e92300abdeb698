import CSodium
import Foundation
@testable import PIIVault
import XCTest

/// Token key versions in key files (SECURITY.md, "Key files"): a `PIIVAULT-TOKEN-KEY-1` file is version 1 with the
/// tombstone key derived from its master, as before; `keygen --token-key-version N` writes `PIIVAULT-TOKEN-KEY-2`
/// (version, master, tombstone key) and carries the previous key's tombstone key forward.
final class TokenKeyVersionTests: XCTestCase {
    private func write(_ text: String, to url: URL) throws {
        try text.write(to: url, atomically: true, encoding: .utf8)
        chmod(url.path, 0o600)
    }

    /// A fixed version 1 file loads as version 1 with the same key id and tokens as the raw master, and its tombstone
    /// key is crypto_kdf(master, 1, "PIIV-TMB") (the hash forget wrote before versions existed).
    func testAVersionOneFileLoadsAsVersionOneWithTheDerivedTombstoneKey() throws {
        let dir = try makeTemporaryDirectory(self)
        let master = (0..<32).map { UInt8($0) &+ 0x42 }  // fixedTokenKey(0x42)'s bytes
        let file = dir.appendingPathComponent("token.key")
        try write("# old file\nPIIVAULT-TOKEN-KEY-1 \(Data(master).base64EncodedString())\n", to: file)
        let key = try KeyLoading.loadTokenKey(path: file.path)
        XCTAssertEqual(key.version, 1)
        XCTAssertEqual(key.keyID, try fixedTokenKey(0x42).keyID)
        XCTAssertTrue(Tokenizer(key: key).token(forCanonical: "192.0.2.1", field: .ip).hasPrefix("ip.v1."))
        XCTAssertEqual(Tokenizer(key: key).token(forCanonical: "192.0.2.1", field: .ip),
                       Tokenizer(key: try fixedTokenKey(0x42)).token(forCanonical: "192.0.2.1", field: .ip))
        var expected = [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(crypto_kdf_derive_from_key(&expected, 32, 1, "PIIV-TMB", master), 0)
        XCTAssertEqual(key.tombstoneKey.withUnsafeBytes { Array($0) }, expected)
        var mac = [UInt8](repeating: 0, count: 32)
        let user = Array("user-1".utf8)
        crypto_auth_hmacsha256(&mac, user, UInt64(user.count), expected)
        XCTAssertEqual(TombstoneHasher(key: key).hash(userID: "user-1"), hex(mac))
    }

    /// keygen --token-key-version 2 --previous-token-key: a new master (new key id, `ip.v2.` tokens different from
    /// v1's), the same tombstone hashes; the payload layout is version LE32 || master || tombstone key.
    func testAVersionedKeyCarriesItsVersionAndThePreviousTombstoneKey() throws {
        let dir = try makeTemporaryDirectory(self)
        let old = try KeyGeneration.generate(in: dir.appendingPathComponent("v1").path)
        let v1 = try KeyLoading.loadTokenKey(path: old.tokenKeyPath)
        let written = try KeyGeneration.generateTokenKey(in: dir.appendingPathComponent("v2").path, version: 2, previous: v1)
        let text = try String(contentsOfFile: written.path, encoding: .utf8)
        let line = try XCTUnwrap(text.split(separator: "\n").first { !$0.hasPrefix("#") })
        XCTAssertTrue(line.hasPrefix("PIIVAULT-TOKEN-KEY-2 "))
        let payload = try XCTUnwrap(Data(base64Encoded: String(line.dropFirst("PIIVAULT-TOKEN-KEY-2 ".count))))
        XCTAssertEqual(payload.count, 68)
        XCTAssertEqual(Array(payload.prefix(4)), [2, 0, 0, 0])
        XCTAssertEqual(Array(payload.suffix(32)), v1.tombstoneKey.withUnsafeBytes { Array($0) })

        let v2 = try KeyLoading.loadTokenKey(path: written.path)
        XCTAssertEqual(v2.version, 2)
        XCTAssertEqual(v2.keyID, written.keyID)
        XCTAssertNotEqual(v2.keyID, v1.keyID)
        XCTAssertEqual(TombstoneHasher(key: v2).hash(userID: "someone"), TombstoneHasher(key: v1).hash(userID: "someone"))
        let t2 = Tokenizer(key: v2).token(forCanonical: "192.0.2.1", field: .ip)
        XCTAssertTrue(t2.hasPrefix("ip.v2."))
        XCTAssertNotEqual(String(t2.dropFirst(6)),
                          String(Tokenizer(key: v1).token(forCanonical: "192.0.2.1", field: .ip).dropFirst(6)))
        XCTAssertEqual(try mode(written.path), 0o600)

        // A v3 from v2 keeps the same tombstone key again; never overwrites; versions must grow.
        let v3Written = try KeyGeneration.generateTokenKey(in: dir.appendingPathComponent("v3").path, version: 3, previous: v2)
        XCTAssertEqual(TombstoneHasher(key: try KeyLoading.loadTokenKey(path: v3Written.path)).hash(userID: "x"),
                       TombstoneHasher(key: v1).hash(userID: "x"))
        XCTAssertThrowsError(try KeyGeneration.generateTokenKey(in: dir.appendingPathComponent("v3").path, version: 4, previous: v2)) {
            XCTAssertEqual(($0 as? KeyFileError).map { if case .alreadyExists = $0 { true } else { false } }, true)
        }
        XCTAssertThrowsError(try KeyGeneration.generateTokenKey(in: dir.appendingPathComponent("v9").path, version: 2, previous: v2))
        XCTAssertThrowsError(try KeyGeneration.generateTokenKey(in: dir.appendingPathComponent("v8").path, version: 1, previous: nil))
    }

    /// A versioned payload of the wrong length or with version 0 is refused (exit 65), without echoing key bytes.
    func testMalformedVersionedFilesAreRefused() throws {
        let dir = try makeTemporaryDirectory(self)
        let short = dir.appendingPathComponent("short.key")
        try write("PIIVAULT-TOKEN-KEY-2 \(Data(repeating: 1, count: 36).base64EncodedString())\n", to: short)
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: short.path)) {
            XCTAssertEqual($0 as? KeyFileError, .wrongLength(file: short.path, expected: 68, found: 36))
        }
        let zero = dir.appendingPathComponent("zero.key")
        try write("PIIVAULT-TOKEN-KEY-2 \(Data(repeating: 0, count: 68).base64EncodedString())\n", to: zero)
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: zero.path)) {
            XCTAssertEqual($0 as? KeyFileError, .badVersion(file: zero.path, version: 0))
            XCTAssertEqual(($0 as? KeyFileError)?.exitCode, .dataError)
        }
        XCTAssertThrowsError(try TokenKeySet([try fixedTokenKey(1), try fixedTokenKey(2)]))
    }

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }
}
