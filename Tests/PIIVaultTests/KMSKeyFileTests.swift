import AWS
import Foundation
@testable import PIIVault
import TestSupport
import XCTest

/// A KMS stand-in over the transport seam: Encrypt hands out an opaque blob and remembers the plaintext and the
/// context; Decrypt answers only for the same blob and context (as KMS's authenticated data), else
/// InvalidCiphertextException. Mutable state guarded by an NSLock.
private final class FakeKMS: HTTPTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String: (plaintext: String, context: [String: String])] = [:]
    private(set) var actions: [String] = []
    /// When set, Decrypt answers this plaintext (base64) whatever the blob: a KMS that returns another key.
    var substitute: String?
    /// The key ARN Encrypt answers with.
    var encryptedWith = "arn:aws:kms:us-east-1:111122223333:key/fake"

    func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        let target = request.headers.first { $0.name == "X-Amz-Target" }?.value ?? ""
        let body = try JSONSerialization.jsonObject(with: Data(request.body)) as! [String: Any]
        let context = body["EncryptionContext"] as? [String: String] ?? [:]
        return lock.withLock {
            actions.append(target)
            if target == "TrentService.Encrypt" {
                let blob = Data(UUID().uuidString.utf8).base64EncodedString()
                stored[blob] = (body["Plaintext"] as! String, context)
                return Self.answer(200, ["CiphertextBlob": blob, "KeyId": encryptedWith])
            }
            let blob = body["CiphertextBlob"] as! String
            guard let entry = stored[blob], entry.context == context else {
                return Self.answer(400, ["__type": "InvalidCiphertextException"])
            }
            return Self.answer(200, ["Plaintext": substitute ?? entry.plaintext, "KeyId": "arn:aws:kms:us-east-1:111122223333:key/fake"])
        }
    }

    static func answer(_ status: Int, _ object: [String: Any]) -> HTTPResponse {
        HTTPResponse(status: status, body: Array(try! JSONSerialization.data(withJSONObject: object)))
    }
}

final class KMSKeyFileTests: XCTestCase {
    private var fake: FakeKMS!
    private var kms: KMSKeyService!
    private var dir: URL!

    override func setUp() async throws {
        fake = FakeKMS()
        dir = try makeTemporaryDirectory(self)
        let environment = AWSEnvironment(
            variables: ["AWS_ACCESS_KEY_ID": "AKIDUNIT", "AWS_SECRET_ACCESS_KEY": "unit-secret",
                        "AWS_ENDPOINT_URL_KMS": "http://kms.invalid", "AWS_EC2_METADATA_DISABLED": "true"],
            homeDirectory: dir.path)
        kms = KMSKeyService(environment: environment, transport: fake)
    }

    func testGeneratedWrappedKeysLoadWithTheirContext() async throws {
        let written = try await KeyGeneration.generateWrapped(in: dir.path, kmsKeyID: "alias/unit", tokenKey: true,
                                                              vaultKeyPair: true, kms: kms)
        let token = try await KeyLoading.loadTokenKey(path: written.tokenKey!.path, kms: kms)
        XCTAssertEqual(token.keyID, written.tokenKey?.id)
        XCTAssertEqual(token.version, 1)
        let vault = try await KeyLoading.loadVaultSecretKey(path: written.vault!.vaultSecretKeyPath, kms: kms) {
            throw KeyFileError.emptyPassphrase
        }
        XCTAssertEqual(vault.keyID, written.vault?.vaultKeyID)
        XCTAssertEqual(try KeyLoading.loadVaultPublicKey(path: written.vault!.vaultPublicKeyPath).keyID, vault.keyID)
        XCTAssertEqual(fake.actions, ["TrentService.Encrypt", "TrentService.Encrypt", "TrentService.Decrypt",
                                      "TrentService.Decrypt"])
        // The plain loader refuses the wrapped form by its label (it cannot reach KMS).
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: written.tokenKey!.path))
    }

    /// The key line names the ARN KMS encrypted with (an alias re-pointed later cannot stop the file opening), except
    /// for a multi-Region key, whose ARN names one region: there the form given lets each region use its replica.
    func testTheKeyLineNamesTheEncryptingKeysARNExceptForAMultiRegionKey() async throws {
        func keyLine(_ path: String) throws -> [Substring] {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            return (text.split(separator: "\n").first { !$0.hasPrefix("#") } ?? "").split(separator: " ")
        }
        let single = try await KeyGeneration.generateWrapped(in: dir.appendingPathComponent("single").path,
                                                             kmsKeyID: "alias/unit", tokenKey: true, vaultKeyPair: false,
                                                             kms: kms)
        XCTAssertEqual(try keyLine(single.tokenKey!.path)[1], "arn:aws:kms:us-east-1:111122223333:key/fake")
        fake.encryptedWith = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
        let multi = try await KeyGeneration.generateWrapped(in: dir.appendingPathComponent("multi").path,
                                                            kmsKeyID: "alias/unit", tokenKey: true, vaultKeyPair: false,
                                                            kms: kms)
        XCTAssertEqual(try keyLine(multi.tokenKey!.path)[1], "alias/unit")
        let token = try await KeyLoading.loadTokenKey(path: multi.tokenKey!.path, kms: kms)
        XCTAssertEqual(token.keyID, multi.tokenKey?.id)
    }

    func testAnEditedKeyIDChangesTheContextAndIsRefused() async throws {
        let written = try await KeyGeneration.generateWrapped(in: dir.path, kmsKeyID: "alias/unit", tokenKey: true,
                                                              vaultKeyPair: false, kms: kms)
        let path = written.tokenKey!.path
        var text = try String(contentsOfFile: path, encoding: .utf8)
        text = text.replacingOccurrences(of: " \(written.tokenKey!.id.hex) ", with: " 0000000000000000 ")
        try text.write(toFile: path, atomically: false, encoding: .utf8)
        do {
            _ = try await KeyLoading.loadTokenKey(path: path, kms: kms)
            XCTFail("an edited key line was accepted")
        } catch let error as KMSKeyFileError {
            XCTAssertEqual(error.exitCode, .noPermission)
            // The key line names the key ARN the fake KMS encrypted with, not the alias given.
            XCTAssertTrue(error.message.contains("arn:aws:kms:us-east-1:111122223333:key/fake") && error.message.contains(path),
                          error.message)
            XCTAssertTrue(error.message.contains("InvalidCiphertextException"), error.message)
        }
    }

    func testAKeyWhoseIDDiffersFromTheKeyLineIsRefused() async throws {
        let written = try await KeyGeneration.generateWrapped(in: dir.path, kmsKeyID: "alias/unit", tokenKey: true,
                                                              vaultKeyPair: false, kms: kms)
        fake.substitute = TokenKey.generate().bytes.withUnsafeBytes { Data($0).base64EncodedString() }
        do {
            _ = try await KeyLoading.loadTokenKey(path: written.tokenKey!.path, kms: kms)
            XCTFail("another key was accepted")
        } catch let error as KMSKeyFileError {
            guard case .keyIDMismatch = error else { return XCTFail("\(error)") }
            XCTAssertEqual(error.exitCode, .noPermission)
        }
    }

    func testModeAndOwnerRulesApplyBeforeKMSIsAsked() async throws {
        let written = try await KeyGeneration.generateWrapped(in: dir.path, kmsKeyID: "alias/unit", tokenKey: true,
                                                              vaultKeyPair: false, kms: kms)
        chmod(written.tokenKey!.path, 0o644)
        do {
            _ = try await KeyLoading.loadTokenKey(path: written.tokenKey!.path, kms: kms)
            XCTFail("a readable wrapped file was accepted")
        } catch let error as KeyFileError {
            XCTAssertEqual(error.exitCode, .noPermission)
        }
        XCTAssertEqual(fake.actions, ["TrentService.Encrypt"], "KMS was asked for an exposed file")
    }

    func testVersionedTokenKeysRoundTripThroughWrapAndUnwrap() async throws {
        let previous = TokenKey.generate()
        let written = try await KeyGeneration.generateWrapped(in: dir.path, kmsKeyID: "alias/unit", tokenKey: true,
                                                              vaultKeyPair: false, tokenKeyVersion: 3,
                                                              previous: previous, kms: kms)
        let loaded = try await KeyLoading.loadTokenKey(path: written.tokenKey!.path, kms: kms)
        XCTAssertEqual(loaded.version, 3)
        XCTAssertTrue(loaded.tombstoneKey.constantTimeEquals(previous.tombstoneKey))
        let plain = dir.appendingPathComponent("plain.key").path
        let unwrapped = try await KeyWrapping.unwrap(file: written.tokenKey!.path, out: plain, kms: kms)
        XCTAssertEqual(unwrapped.keyID, loaded.keyID)
        let back = try KeyLoading.loadTokenKey(path: plain)
        XCTAssertEqual(back.version, 3)
        XCTAssertEqual(back.keyID, loaded.keyID)
        let rewrapped = dir.appendingPathComponent("again.key").path
        _ = try await KeyWrapping.wrap(file: plain, kmsKeyID: "alias/other", out: rewrapped, kms: kms) {
            throw KeyFileError.emptyPassphrase
        }
        let again = try await KeyLoading.loadTokenKey(path: rewrapped, kms: kms)
        XCTAssertEqual(again.keyID, loaded.keyID)
        XCTAssertEqual(again.version, 3)
    }

    func testMalformedKeyLinesAreDataErrors() throws {
        for line in ["PIIVAULT-TOKEN-KEY-KMS-1 alias/x 0011223344556677",
                     "PIIVAULT-TOKEN-KEY-KMS-1 alias/x nothex AAAA",
                     "PIIVAULT-TOKEN-KEY-KMS-1 alias/x 0011223344556677 !!!!"] {
            XCTAssertThrowsError(try KMSKeyFile.parse(Array((line + "\n").utf8), file: "f")) { error in
                XCTAssertEqual((error as? any PIIVaultReportableError)?.exitCode, .dataError, "\(line): \(error)")
            }
        }
        let parsed = try KMSKeyFile.parse(Array("# c\nPIIVAULT-VAULT-SECRET-KEY-KMS-1 arn:aws:kms:eu-west-1:1:key/k 0011223344556677 AQID\n".utf8), file: "f")
        XCTAssertEqual(parsed.kind, .vault)
        XCTAssertEqual(parsed.kmsKeyID, "arn:aws:kms:eu-west-1:1:key/k")
        XCTAssertEqual(parsed.ciphertextBlob, [1, 2, 3])
        XCTAssertEqual(KMSKeyFile.encryptionContext(kind: .token, keyID: KeyID(hex: "0011223344556677")!),
                       ["piivault:key": "token", "piivault:key-id": "0011223344556677"])
    }
}
