import PIIVault
import XCTest

final class SealingTests: XCTestCase {
    func testRoundTripAndQuarantine() throws {
        let vault = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: vault.publicKey)
        XCTAssertEqual(sealer.sealedDataKey.keyID, vault.keyID)
        XCTAssertEqual(sealer.sealedDataKey.sealed.count, 80)
        let sealed = try sealer.seal("192.0.2.1", token: "ip.v1.a")
        XCTAssertEqual(sealed.count, 9 + SealedValueFormat.overhead)
        let body = Array("{\"foo\": \"oops\"}".utf8)
        let quarantined = try sealer.sealQuarantined(body: body, messageID: "m-1")
        let opener = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vault)
        XCTAssertEqual(try opener.openString(sealed, token: "ip.v1.a"), "192.0.2.1")
        XCTAssertEqual(try opener.openQuarantined(quarantined, messageID: "m-1"), body)
        XCTAssertThrowsError(try opener.openQuarantined(quarantined, messageID: "m-2"), equals: SealingError.authenticationFailed)
        XCTAssertEqual(sealer.sealedCount, 2)
        XCTAssertFalse(sealer.isExhausted)
        // Same value twice: different bytes (random nonces), same plaintext.
        XCTAssertNotEqual(try sealer.seal("192.0.2.1", token: "ip.v1.a"), sealed)
    }

    func testMovedValueIsReportedAsMoved() throws {
        let vault = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: vault.publicKey)
        let rowA = (token: "ip.v1.aaaa", sealed: try sealer.seal("192.0.2.1", token: "ip.v1.aaaa"))
        let rowB = (token: "ip.v1.bbbb", sealed: try sealer.seal("192.0.2.2", token: "ip.v1.bbbb"))
        let opener = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vault)
        // An attacker copies A's sealed bytes into row B.
        let tamperedB = rowA.sealed
        XCTAssertThrowsError(try opener.open(tamperedB, token: rowB.token), equals: SealingError.authenticationFailed)
        let batch = [rowA.token, rowB.token]
        XCTAssertEqual(opener.diagnose(tamperedB, expectedToken: rowB.token, candidates: batch), .moved(originalToken: rowA.token))
        XCTAssertThrowsError(
            try opener.open(tamperedB, token: rowB.token, candidates: batch),
            equals: SealingError.valueMoved(originalToken: rowA.token))
        XCTAssertEqual(opener.diagnose(rowB.sealed, expectedToken: rowB.token, candidates: batch), .intact)
        XCTAssertTrue(SealingError.valueMoved(originalToken: rowA.token).message.contains("moved"))
    }

    func testFlippedByteIsDamaged() throws {
        let vault = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: vault.publicKey)
        let token = "dev.v1.cccc"
        let sealed = try sealer.seal("device-0001", token: token)
        let opener = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vault)
        for position in [0, 23, 24, sealed.count - 1] {  // nonce, ciphertext, tag
            var damaged = sealed
            damaged[position] ^= 0x01
            XCTAssertThrowsError(try opener.open(damaged, token: token), equals: SealingError.authenticationFailed)
            XCTAssertThrowsError(
                try opener.open(damaged, token: token, candidates: [token, "dev.v1.other"]), equals: SealingError.valueDamaged)
        }
        XCTAssertThrowsError(try opener.open(Array(sealed.prefix(30)), token: token), equals: SealingError.malformed)
    }

    func testDataKeyForAnotherVaultKeyReportsKeyIDMismatch() throws {
        let right = VaultSecretKey.generate(), other = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: right.publicKey)
        XCTAssertThrowsError(
            try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: other),
            equals: SealingError.wrongVaultKey(recorded: right.keyID, given: other.keyID))
        let message = SealingError.wrongVaultKey(recorded: right.keyID, given: other.keyID).message
        XCTAssertTrue(message.contains(right.keyID.hex) && message.contains(other.keyID.hex))
        // A key id forged to match, on a data key sealed elsewhere: the seal does not open.
        let forged = SealedDataKey(keyID: other.keyID, sealed: sealer.sealedDataKey.sealed)
        XCTAssertThrowsError(
            try DataKeyOpener(sealedDataKey: forged, secretKey: other), equals: SealingError.dataKeyDamaged(keyID: other.keyID))
    }

    /// `rewrap`: the data key sealed again to another vault key is the same data key (values sealed before open with
    /// it), records the new key id, no longer opens with the old key, and is new bytes.
    func testADataKeySealedAgainToANewKeyOpensTheSameValuesWithTheNewKeyOnly() throws {
        let old = VaultSecretKey.generate(), new = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: old.publicKey)
        let sealed = try sealer.seal("192.0.2.7", token: "ip.v1.dddd")
        let rewrapped = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: old).sealed(to: new.publicKey)
        XCTAssertEqual(rewrapped.keyID, new.keyID)
        XCTAssertEqual(rewrapped.sealed.count, 80)
        XCTAssertNotEqual(rewrapped.sealed, sealer.sealedDataKey.sealed)
        XCTAssertEqual(try DataKeyOpener(sealedDataKey: rewrapped, secretKey: new).openString(sealed, token: "ip.v1.dddd"),
                       "192.0.2.7")
        XCTAssertThrowsError(try DataKeyOpener(sealedDataKey: rewrapped, secretKey: old),
                             equals: SealingError.wrongVaultKey(recorded: new.keyID, given: old.keyID))
        let relabelled = SealedDataKey(keyID: old.keyID, sealed: rewrapped.sealed)
        XCTAssertThrowsError(try DataKeyOpener(sealedDataKey: relabelled, secretKey: old),
                             equals: SealingError.dataKeyDamaged(keyID: old.keyID))
    }

    func testSecretBytesNeverPrint() throws {
        let key = try fixedTokenKey()
        XCTAssertEqual("\(key.bytes)", "SecretBytes(32 bytes, redacted)")
        var dumped = ""
        dump(key, to: &dumped)
        let keyHex = key.bytes.withUnsafeBytes { hex($0) }
        XCTAssertFalse(dumped.contains(keyHex.prefix(8)), "a dump must not show key bytes")
        XCTAssertFalse(dumped.contains("66, 67"), "a dump must not show key bytes as numbers")
        let a = try fixedTokenKey(), b = try fixedTokenKey(), c = try fixedTokenKey(9)
        XCTAssertTrue(a.bytes.constantTimeEquals(b.bytes))
        XCTAssertFalse(a.bytes.constantTimeEquals(c.bytes))
    }

    func testTokenizerIsUsableConcurrently() async throws {
        let tokenizer = Tokenizer(key: try fixedTokenKey())
        let expected = tokenizer.token(forCanonical: "192.0.2.99", field: .ip)
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<4 {
                group.addTask {
                    (0..<1000).allSatisfy { _ in tokenizer.token(forCanonical: "192.0.2.99", field: .ip) == expected }
                }
            }
            for try await ok in group { XCTAssertTrue(ok) }
        }
    }
}
