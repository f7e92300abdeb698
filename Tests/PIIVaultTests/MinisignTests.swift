import PIIVault
import XCTest

/// minisign's formats, written and read by piivault (the stock `minisign` checks them in AuditSigningTests).
final class MinisignTests: XCTestCase {
    private let checkpoint = SignedCheckpoint(
        head: AccessLogAnchor(seq: 42, hash: [UInt8](repeating: 0xab, count: 32)), takenAt: "2026-11-25T07:00:00Z",
        database: "piivault on 127.0.0.1:5432", databaseID: "0b9f3c1e-7d2a-4c55-9e61-3a8f0d4b2c11/16384")

    /// A statement written before the database's identity was recorded has no `database-id` line and still reads.
    func testAStatementWithoutADatabaseIDStillReads() throws {
        let old = "piivault access-log checkpoint\nhead: 42:\(String(repeating: "ab", count: 32))\n"
            + "time: 2026-11-25T07:00:00Z\ndatabase: piivault on 127.0.0.1:5432\n"
        let parsed = try SignedCheckpoint(statement: old, file: "c")
        XCTAssertNil(parsed.databaseID)
        XCTAssertEqual(parsed.statement, old)
    }

    func testASignedCheckpointVerifiesAndRoundTrips() throws {
        let key = Minisign.generateKeyPair()
        let reread = try Minisign.SecretKey(fileBytes: key.fileBytes(), file: "auditor.key")
        XCTAssertEqual(reread.publicKey, key.publicKey)
        let publicKey = try Minisign.PublicKey(fileText: key.publicKey.fileText, file: "auditor.pub")
        let signature = checkpoint.signature(with: reread)
        let trusted = try Minisign.verify(Array(checkpoint.statement.utf8), signatureFile: signature,
                                          publicKey: publicKey, file: "c.minisig")
        XCTAssertEqual(trusted, checkpoint.trustedComment)
        XCTAssertEqual(try SignedCheckpoint(statement: checkpoint.statement, file: "c"), checkpoint)
        XCTAssertTrue(key.publicKey.fileText.hasPrefix("untrusted comment: minisign public key \(key.publicKey.keyIDText)\n"))
        XCTAssertEqual(key.publicKey.keyIDText.count, 16)
    }

    func testOneChangedByteOrAnotherKeyIsRefused() throws {
        let key = Minisign.generateKeyPair()
        let signature = checkpoint.signature(with: key)
        var statement = Array(checkpoint.statement.utf8)
        statement[statement.count - 3] ^= 1
        XCTAssertThrowsError(try Minisign.verify(statement, signatureFile: signature, publicKey: key.publicKey, file: "c.minisig")) {
            XCTAssertEqual($0 as? MinisignError, .badSignature(file: "c.minisig"))
        }
        // The trusted comment is signed too.
        let forgedComment = signature.replacingOccurrences(of: "trusted comment: piivault checkpoint 42:", with: "trusted comment: piivault checkpoint 43:")
        XCTAssertThrowsError(try Minisign.verify(Array(checkpoint.statement.utf8), signatureFile: forgedComment,
                                                 publicKey: key.publicKey, file: "c.minisig"))
        let other = Minisign.generateKeyPair()
        XCTAssertThrowsError(try Minisign.verify(Array(checkpoint.statement.utf8), signatureFile: checkpoint.signature(with: other),
                                                 publicKey: key.publicKey, file: "c.minisig")) { error in
            guard case .otherKey? = error as? MinisignError else { return XCTFail("\(error)") }
        }
    }

    func testMalformedFilesSayWhatTheyAreNot() {
        XCTAssertThrowsError(try Minisign.PublicKey(fileText: "untrusted comment: x\nnot base64!\n", file: "a.pub")) {
            XCTAssertEqual(($0 as? MinisignError)?.exitCode, .dataError)
        }
        XCTAssertThrowsError(try SignedCheckpoint(statement: "hello\n", file: "c"))
    }
}
