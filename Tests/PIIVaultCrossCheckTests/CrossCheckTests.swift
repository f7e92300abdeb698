import Foundation
import PIIVault
import TestSupport
import XCTest

/// Known-answer checks against independent implementations (Python's `ipaddress`, hashlib/hmac, PyNaCl). They need
/// python3 and PyNaCl, so they are in the integration tier (`make test`), not `make test-unit`.
final class CrossCheckTests: XCTestCase {
    func testPyNaClIsInstalled() throws {
        _ = try crosscheck("check-nacl", [:])
    }

    func testTokensAndKeyIDsMatchPython() throws {
        let key = try fixedTokenKey()
        let master = key.bytes.withUnsafeBytes { hex($0) }
        let values: [(PIIField, String)] = [
            (.ip, "192.0.2.1"), (.ip, "2001:db8::1"), (.deviceID, "device-0001"), (.deviceID, "192.0.2.1"),
            (.deviceID, "ünïcode-dévice"),
        ]
        let vault = try fixedVaultKey()
        for version in [1, 2] {
            let tokenizer = Tokenizer(key: key, version: version)
            let answer = try crosscheck(
                "tokens",
                [
                    "master": master, "version": version,
                    "values": values.map { ["field": $0.0.rawValue, "canonical": $0.1] },
                    "public_keys": [hex(vault.publicKey.bytes)],
                ])
            XCTAssertEqual(answer["key_id"] as? String, key.keyID.hex)
            XCTAssertEqual(answer["tokens"] as? [String], values.map { tokenizer.token(forCanonical: $0.1, field: $0.0) })
            XCTAssertEqual((answer["vault_key_ids"] as? [String: String])?[hex(vault.publicKey.bytes)], vault.keyID.hex)
        }
    }

    func testValuesSealedHereOpenInPyNaCl() throws {
        let vault = try fixedVaultKey()
        let sealer = try DataKeySealer(vaultPublicKey: vault.publicKey)
        let values = [("ip.v1.aaaa", "192.0.2.10"), ("dev.v1.bbbb", "device-0002"), ("msg-1", "{\"not\": \"json\"")]
        let sealed = try values.map { try sealer.seal($0.1, token: $0.0) }
        let answer = try crosscheck(
            "open",
            [
                "vault_sk": vault.bytes.withUnsafeBytes { hex($0) }, "sealed_key": hex(sealer.sealedDataKey.sealed),
                "values": zip(values, sealed).map { ["ad": $0.0.0, "sealed": hex($0.1)] },
            ])
        XCTAssertEqual(answer["plain"] as? [String], values.map { hex(Array($0.1.utf8)) })
        XCTAssertEqual(sealer.sealedCount, 3)
    }

    func testValuesSealedByPyNaClOpenHere() throws {
        let vault = try fixedVaultKey()
        let values = [("ip.v1.cccc", "192.0.2.11"), ("dev.v1.dddd", "device-0003")]
        let answer = try crosscheck(
            "seal",
            [
                "vault_pk": hex(vault.publicKey.bytes),
                "values": values.map { ["ad": $0.0, "plain": hex(Array($0.1.utf8))] },
            ])
        let sealedKey = unhex(try XCTUnwrap(answer["sealed_key"] as? String))
        let sealed = try XCTUnwrap(answer["sealed"] as? [String]).map(unhex)
        let opener = try DataKeyOpener(sealedDataKey: SealedDataKey(keyID: vault.keyID, sealed: sealedKey), secretKey: vault)
        for (value, bytes) in zip(values, sealed) {
            XCTAssertEqual(try opener.openString(bytes, token: value.0), value.1)
        }
    }

    func testCanonicalIPsAgreeWithPythonIpaddress() throws {
        let inputs = [
            "192.168.1.1", "::ffff:192.168.1.1", "::FFFF:C0A8:0101", "2001:DB8:0:0:0:0:0:1",
            "2001:0db8:0000:0000:0001:0000:0000:0001", "2001:db8:0:0:1:0:0:0", "2001:db8:0:1:1:1:1:1", "::", "::1",
            "FE80::ABCD", "1:0:0:2:0:0:0:3", "1:0:0:0:2:0:0:3", "999.1.1.1", "1.2.3", "", "localhost", "01.2.3.4",
            "fe80::1%eth0", "0.0.0.0", "::ffff:0.0.0.0", "ffff::", "1:2:3:4:5:6:7::",
        ]
        let answer = try crosscheck("canonical", ["values": inputs])
        let python = try XCTUnwrap(answer["ip"] as? [Any])
        for (input, expected) in zip(inputs, python) {
            let ours = try? Canonical.ip(input)
            XCTAssertEqual(ours, expected as? String, "canonical form of test input #\(inputs.firstIndex(of: input)!)")
        }
    }
}
