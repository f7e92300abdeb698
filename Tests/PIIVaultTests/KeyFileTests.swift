import Foundation
@testable import PIIVault
import TestSupport
import XCTest

final class KeyFileTests: XCTestCase {
    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    private func generated() throws -> (dir: URL, keys: GeneratedKeys) {
        let dir = try makeTemporaryDirectory(self)
        return (dir, try KeyGeneration.generate(in: dir.path))
    }

    /// The key line's base64 of a file, to check that no message repeats it.
    private func keyLine(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").first { !$0.hasPrefix("#") }
            .map { String($0.split(separator: " ")[1]) } ?? ""
    }

    private func assertLoadFails(
        _ path: String, _ expected: KeyFileError, code: PIIVaultExitCode, secretBase64: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: path), file: file, line: line) { error in
            XCTAssertEqual(error as? KeyFileError, expected, "\(error)", file: file, line: line)
            guard let reportable = error as? any PIIVaultReportableError else { return XCTFail("not reportable") }
            XCTAssertEqual(reportable.exitCode, code, file: file, line: line)
            XCTAssertFalse(reportable.message.contains(secretBase64), "message holds key bytes", file: file, line: line)
            XCTAssertFalse(reportable.message.contains(secretBase64.prefix(12)), file: file, line: line)
        }
    }

    func testGeneratedFilesHaveModesAndLoad() throws {
        let (_, keys) = try generated()
        XCTAssertEqual(try mode(keys.tokenKeyPath), 0o600)
        XCTAssertEqual(try mode(keys.vaultPublicKeyPath), 0o644)
        XCTAssertEqual(try mode(keys.vaultSecretKeyPath), 0o600)
        XCTAssertEqual(try KeyLoading.loadTokenKey(path: keys.tokenKeyPath).keyID, keys.tokenKeyID)
        let pub = try KeyLoading.loadVaultPublicKey(path: keys.vaultPublicKeyPath)
        XCTAssertEqual(pub.keyID, keys.vaultKeyID)
        let secret = try KeyLoading.loadVaultSecretKey(path: keys.vaultSecretKeyPath) { XCTFail("no passphrase"); throw KeyFileError.emptyPassphrase }
        XCTAssertEqual(secret.publicKey, pub)
        let text = try String(contentsOfFile: keys.vaultSecretKeyPath, encoding: .utf8)
        XCTAssertTrue(text.contains("# key id: \(keys.vaultKeyID)"))
        XCTAssertTrue(text.contains("# public key: \(try keyLine(keys.vaultPublicKeyPath))"))
        XCTAssertTrue(text.contains("# created: "))
    }

    /// Issue 26: `vault.pub` (mode 0644) given where a secret key is expected is refused for what it is, not sent to
    /// chmod; a missing file names the flag that gave it.
    func testAPublicKeyGivenAsASecretKeyIsNamedAndAMissingFileNamesItsFlag() throws {
        let (_, keys) = try generated()
        XCTAssertThrowsError(try KeyLoading.loadVaultSecretKey(path: keys.vaultPublicKeyPath) { throw KeyFileError.emptyPassphrase }) {
            XCTAssertEqual($0 as? KeyFileError, .wrongLabel(
                file: keys.vaultPublicKeyPath, expected: "PIIVAULT-VAULT-SECRET-KEY-1 or PIIVAULT-VAULT-ENCRYPTED-KEY-1",
                found: "PIIVAULT-VAULT-PUBLIC-KEY-1"))
            XCTAssertEqual(($0 as? KeyFileError)?.exitCode, .dataError)
        }
        let missing = keys.tokenKeyPath + ".missing"
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: missing, option: "--token-key")) {
            XCTAssertEqual($0 as? KeyFileError, .missing(file: missing, option: "--token-key"))
            XCTAssertEqual(($0 as? KeyFileError)?.exitCode, .dataError)
            XCTAssertTrue(($0 as? KeyFileError)?.message.contains("with --token-key") ?? false)
        }
    }

    func testGroupOrWorldAccessibleSecretFileIsRefused() throws {
        let (_, keys) = try generated()
        let path = keys.tokenKeyPath, secret = try keyLine(path)
        for bad in [0o640, 0o604, 0o644, 0o620] {
            chmod(path, mode_t(bad))
            assertLoadFails(path, .accessibleByOthers(file: path, mode: UInt32(bad)), code: .noPermission, secretBase64: secret)
        }
        chmod(path, 0o644)
        XCTAssertEqual(
            KeyFileError.accessibleByOthers(file: "token.key", mode: 0o644).message,
            "token.key is readable by others; run chmod 600 token.key")
        XCTAssertTrue(KeyFileError.accessibleByOthers(file: "token.key", mode: 0o620).message.hasSuffix("run chmod 600 token.key"))
        chmod(path, 0o400)
        XCTAssertNoThrow(try KeyLoading.loadTokenKey(path: path))
        // vault.key too; vault.pub is public and loads at 0644.
        chmod(keys.vaultSecretKeyPath, 0o660)
        XCTAssertThrowsError(try KeyLoading.loadVaultSecretKey(path: keys.vaultSecretKeyPath) { throw KeyFileError.emptyPassphrase }) {
            XCTAssertEqual($0 as? KeyFileError, .accessibleByOthers(file: keys.vaultSecretKeyPath, mode: 0o660))
        }
        XCTAssertNoThrow(try KeyLoading.loadVaultPublicKey(path: keys.vaultPublicKeyPath))
    }

    /// Runs as any user: the file is ours, and the loader is told to expect another owner. As root (CI), the file is
    /// also really given to `nobody` and loaded as root.
    func testSecretFileOwnedByAnotherUserIsRefused() throws {
        let (_, keys) = try generated()
        let path = keys.tokenKeyPath, secret = try keyLine(path)
        let me = UInt32(geteuid()), someoneElse = UInt32(geteuid()) &+ 1
        XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, currentUser: someoneElse)) { error in
            XCTAssertEqual(error as? KeyFileError, .wrongOwner(file: path, owner: me, currentUser: someoneElse))
            XCTAssertEqual((error as? KeyFileError)?.exitCode, .noPermission)
            XCTAssertFalse((error as? KeyFileError)?.message.contains(secret) ?? true)
        }
        XCTAssertNoThrow(try KeyLoading.readKeyFile(path: path, protection: .secret, currentUser: me))
        XCTAssertTrue(KeyFileError.wrongOwner(file: "token.key", owner: 65534, currentUser: 0).message.contains("chown 0 token.key"))
        if me == 0 {
            XCTAssertEqual(chown(path, 65534, 65534), 0)
            assertLoadFails(path, .wrongOwner(file: path, owner: 65534, currentUser: 0), code: .noPermission, secretBase64: secret)
        }
    }

    /// systemd (255 and later) passes a credential owned by root, mode 0400 with an ACL for the service's user, which
    /// shows as 0440: accepted directly in `$CREDENTIALS_DIRECTORY`, refused anywhere else.
    func testASystemdCredentialReadableThroughAnACLIsAccepted() throws {
        let (dir, keys) = try generated()
        let path = keys.tokenKeyPath
        chmod(path, 0o440)
        chmod(dir.path, 0o500)  // systemd's folder: the service's alone
        defer { chmod(dir.path, 0o700) }
        XCTAssertNoThrow(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: dir.path))
        XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: nil)) {
            XCTAssertEqual($0 as? KeyFileError, .accessibleByOthers(file: path, mode: 0o440))
        }
        // Another folder named as the credentials folder vouches for nothing here.
        let other = try makeTemporaryDirectory(self)
        XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: other.path))
        // Still refused there: writable by the group, readable by others, or owned by a user other than root and
        // the service's; and when the folder is open to others, or named by a relative path.
        for bad in [0o460, 0o444] {
            chmod(path, mode_t(bad))
            XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: dir.path)) {
                XCTAssertEqual($0 as? KeyFileError, .accessibleByOthers(file: path, mode: UInt32(bad)))
            }
        }
        chmod(path, 0o440)
        chmod(dir.path, 0o755)
        XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: dir.path))
        chmod(dir.path, 0o500)
        XCTAssertNoThrow(try KeyLoading.readKeyFile(path: path, protection: .secret, credentialsDirectory: dir.path))
        let cwd = FileManager.default.currentDirectoryPath
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(dir.path))
        XCTAssertThrowsError(try KeyLoading.readKeyFile(path: "token.key", protection: .secret, credentialsDirectory: "."))
        XCTAssertTrue(FileManager.default.changeCurrentDirectoryPath(cwd))
        if geteuid() == 0 {
            XCTAssertEqual(chown(path, 65534, 65534), 0)
            XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .secret, currentUser: 0,
                                                            credentialsDirectory: dir.path)) {
                XCTAssertEqual($0 as? KeyFileError, .wrongOwner(file: path, owner: 65534, currentUser: 0))
            }
        }
    }

    /// A key file that cannot be finished (here the file-size limit stands in for a full disk) is removed before the
    /// error, so `keys unwrap` never leaves a whole or half plaintext key behind; a file already there is never
    /// touched, and the message says so without naming one command.
    func testAKeyFileThatCannotBeFinishedIsRemoved() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("unwrapped.key").path
        var saved = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved), 0)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)  // EFBIG instead of the signal
        var small = saved
        small.rlim_cur = 16
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &small), 0)
        var called = false
        XCTAssertThrowsError(try KeyGeneration.writeNew(path: path, contents: Array(repeating: 0x41, count: 4096),
                                                        mode: 0o600) { called = true }) { error in
            guard case .cannotWrite(let file, _)? = error as? KeyFileError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, path)
        }
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &saved), 0)
        signal(SIGXFSZ, oldHandler)
        XCTAssertFalse(called)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path), "the unfinished file stayed")

        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("kept".utf8)))
        XCTAssertThrowsError(try KeyGeneration.writeNew(path: path, contents: [1], mode: 0o600) {}) { error in
            XCTAssertEqual(error as? KeyFileError, .alreadyExists(files: [path]))
            XCTAssertEqual((error as? KeyFileError)?.message,
                           "\(path) already exists; piivault never overwrites a key file: move it away or write elsewhere (--dir, --out)")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "kept")
    }

    func testMalformedFilesEachGiveTheirOwnError() throws {
        let (dir, keys) = try generated()
        let original = try String(contentsOfFile: keys.tokenKeyPath, encoding: .utf8)
        let secret = try keyLine(keys.tokenKeyPath)
        let path = dir.appendingPathComponent("bad.key").path
        func write(_ text: String) throws {
            unlink(path)
            XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
        }
        // Truncated: cut in the comments, cut inside the base64, label only.
        try write(String(original.prefix(original.utf8.count / 2)))
        assertLoadFails(path, .truncated(file: path), code: .dataError, secretBase64: secret)
        try write(String(original.dropLast(4)))
        assertLoadFails(path, .truncated(file: path), code: .dataError, secretBase64: secret)
        try write("PIIVAULT-TOKEN-KEY-1\n")
        assertLoadFails(path, .truncated(file: path), code: .dataError, secretBase64: secret)
        try write("")
        assertLoadFails(path, .truncated(file: path), code: .dataError, secretBase64: secret)
        // Wrong label: a public key file given as the token key.
        try write(try String(contentsOfFile: keys.vaultPublicKeyPath, encoding: .utf8))
        assertLoadFails(
            path, .wrongLabel(file: path, expected: "PIIVAULT-TOKEN-KEY-1 or PIIVAULT-TOKEN-KEY-2", found: "PIIVAULT-VAULT-PUBLIC-KEY-1"),
            code: .dataError, secretBase64: secret)
        // A bare base64 key with no label: the "label" is not echoed.
        try write(secret + "\n")
        assertLoadFails(path, .wrongLabel(file: path, expected: "PIIVAULT-TOKEN-KEY-1 or PIIVAULT-TOKEN-KEY-2", found: nil), code: .dataError, secretBase64: secret)
        // Bad base64: a character outside the alphabet, and padding in the middle.
        try write(original.replacingOccurrences(of: secret, with: "*" + secret.dropFirst()))
        assertLoadFails(path, .badBase64(file: path), code: .dataError, secretBase64: secret)
        try write(original.replacingOccurrences(of: secret, with: "AA==" + secret.dropFirst(4)))
        assertLoadFails(path, .badBase64(file: path), code: .dataError, secretBase64: secret)
        // Wrong length: 16 bytes.
        try write("PIIVAULT-TOKEN-KEY-1 AAAAAAAAAAAAAAAAAAAAAA==\n")
        assertLoadFails(path, .wrongLength(file: path, expected: 32, found: 16), code: .dataError, secretBase64: secret)
        // Two key lines.
        try write(original + original)
        assertLoadFails(path, .extraContent(file: path), code: .dataError, secretBase64: secret)
        // CRLF line ends and no final newline still load.
        try write(original.replacingOccurrences(of: "\n", with: "\r\n").trimmingCharacters(in: .newlines))
        XCTAssertEqual(try KeyLoading.loadTokenKey(path: path).keyID, keys.tokenKeyID)
        // Missing file.
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: dir.appendingPathComponent("none.key").path))
    }

    func testKeyIDIsBlake2bOfKey() throws {
        let (_, keys) = try generated()
        XCTAssertEqual(keys.tokenKeyID.hex.count, 16)
        XCTAssertEqual(try KeyLoading.loadTokenKey(path: keys.tokenKeyPath).keyID, keys.tokenKeyID)
        XCTAssertNil(KeyID(hex: "xyz"))
        XCTAssertEqual(KeyID(hex: "0123456789ABCDEF")?.hex, "0123456789abcdef")
    }

    // MARK: Issue 14, items 6 and 9 (the binary's side is in IntegrationTests/KeyMaterialTests)

    func testVaultPubMayBeReadByAnyoneButWrittenOnlyByItsOwnerOrRoot() throws {
        let (_, keys) = try generated()
        let path = keys.vaultPublicKeyPath
        for mode in [0o644, 0o444, 0o600, 0o640] {
            chmod(path, mode_t(mode))
            XCTAssertNoThrow(try KeyLoading.loadVaultPublicKey(path: path), String(mode, radix: 8))
        }
        for mode in [0o664, 0o646, 0o666, 0o622] {
            chmod(path, mode_t(mode))
            XCTAssertThrowsError(try KeyLoading.loadVaultPublicKey(path: path)) {
                XCTAssertEqual($0 as? KeyFileError, .writableByOthers(file: path, mode: UInt32(mode)))
                XCTAssertEqual(($0 as? KeyFileError)?.exitCode, .noPermission)
            }
        }
        chmod(path, 0o644)
        let me = UInt32(geteuid()), someoneElse = UInt32(geteuid()) &+ 1
        if me == 0 {
            // A root-owned vault.pub loads for any user (root could replace it anyway); another user's does not.
            XCTAssertNoThrow(try KeyLoading.readKeyFile(path: path, protection: .publicKey, currentUser: someoneElse))
            XCTAssertEqual(chown(path, 65534, 65534), 0)
            XCTAssertThrowsError(try KeyLoading.loadVaultPublicKey(path: path),
                                 equals: KeyFileError.wrongOwner(file: path, owner: 65534, currentUser: 0))
        } else {
            XCTAssertThrowsError(try KeyLoading.readKeyFile(path: path, protection: .publicKey, currentUser: someoneElse),
                                 equals: KeyFileError.wrongOwner(file: path, owner: me, currentUser: someoneElse))
        }
    }

    func testANonRegularOrOversizedFileIsRefusedWithoutReading() throws {
        let dir = try makeTemporaryDirectory(self)
        let fifo = dir.appendingPathComponent("fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: fifo)) {  // returns at once: no writer is waited for
            guard case .cannotRead(fifo, let reason)? = $0 as? KeyFileError else { return XCTFail("\($0)") }
            XCTAssertTrue(reason.hasPrefix("not a regular file"), reason)
        }
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: dir.path))
        let big = dir.appendingPathComponent("big.key").path
        XCTAssertTrue(FileManager.default.createFile(atPath: big, contents: Data(count: 64 * 1024 + 1),
                                                     attributes: [.posixPermissions: 0o600]))
        XCTAssertThrowsError(try KeyLoading.loadTokenKey(path: big), equals: KeyFileError.tooLarge(file: big, limit: 64 * 1024))
        XCTAssertEqual(KeyFileError.tooLarge(file: big, limit: 64 * 1024).exitCode, .dataError)
    }

    func testThePassphraseFileIsASecret() throws {
        let dir = try makeTemporaryDirectory(self)
        let path = dir.appendingPathComponent("passphrase").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("correct horse battery staple\n".utf8),
                                                     attributes: [.posixPermissions: 0o644]))
        XCTAssertThrowsError(try Passphrase.fromFile(path: path), equals: KeyFileError.accessibleByOthers(file: path, mode: 0o644))
        chmod(path, 0o600)
        XCTAssertEqual(try Passphrase.fromFile(path: path).count, 28)
    }

    func testArgon2LimitsBelowTheInteractiveMinimumAreRefused() throws {
        let dir = try makeTemporaryDirectory(self)
        var pass = Array("correct horse battery staple".utf8)
        let passphrase = SecretBytes(consuming: &pass)
        let secret = VaultSecretKey.generate()
        let interactiveOps = PassphraseKey.minimumOpsLimit, interactiveMem = PassphraseKey.minimumMemLimit
        XCTAssertEqual(interactiveOps, 2)
        XCTAssertEqual(interactiveMem, 64 << 20)
        for (ops, mem, accepted) in [(UInt64(1), UInt64(8192), false), (interactiveOps, UInt64(8192), false),
                                     (UInt64(1), interactiveMem, false), (interactiveOps, interactiveMem, true)] {
            let path = dir.appendingPathComponent("vault-\(ops)-\(mem).key").path
            let payload = try PassphraseKey.encrypt(secret, passphrase: passphrase, file: path, opsLimit: ops, memLimit: mem)
            let text = payload.withUnsafeBytes { KeyFile.render(label: .vaultEncryptedKey, comments: [], payload: $0) }
            try KeyGeneration.writeNew(path: path, contents: text, mode: 0o600) {}
            if accepted {
                XCTAssertEqual(try KeyLoading.loadVaultSecretKey(path: path) { passphrase }.publicKey, secret.publicKey)
            } else {
                XCTAssertThrowsError(try KeyLoading.loadVaultSecretKey(path: path) { passphrase },
                                     equals: KeyFileError.weakParameters(file: path))
            }
        }
        XCTAssertEqual(KeyFileError.weakParameters(file: "k").exitCode, .dataError)
    }

    func testANewPassphraseNeedsTwelveCharacters() throws {
        func secret(_ text: String) -> SecretBytes { var bytes = Array(text.utf8); return SecretBytes(consuming: &bytes) }
        for (text, accepted) in [("eleven char", false), ("ÄÖÜäöüÄÖÜäö", false), ("twelve chars", true), ("ÄÖÜäöüÄÖÜäöü", true)] {
            let dir = try makeTemporaryDirectory(self).appendingPathComponent("keys").path
            if accepted {
                XCTAssertNoThrow(try KeyGeneration.generate(in: dir, passphrase: { secret(text) }), text)
            } else {
                XCTAssertThrowsError(try KeyGeneration.generate(in: dir, passphrase: { secret(text) }),
                                     equals: KeyFileError.passphraseTooShort(minimum: 12))
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "nothing is written")
            }
        }
        XCTAssertEqual(KeyFileError.passphraseTooShort(minimum: 12).exitCode, .usage)
    }
}
