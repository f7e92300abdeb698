import Foundation
import PIIVault
import TestSupport
import XCTest

/// Runs the real `piivault keygen` binary.
final class KeygenCLITests: XCTestCase {
    private func mode(_ url: URL) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: url.path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    func testKeygenWritesThreeFilesWithModes() throws {
        let dir = try makeTemporaryDirectory(self)
        let result = try runPiivault(["keygen", "--dir", dir.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let token = dir.appendingPathComponent("token.key"), pub = dir.appendingPathComponent("vault.pub")
        let secret = dir.appendingPathComponent("vault.key")
        XCTAssertEqual(try mode(token), 0o600)
        XCTAssertEqual(try mode(pub), 0o644)
        XCTAssertEqual(try mode(secret), 0o600)
        let tokenKey = try KeyLoading.loadTokenKey(path: token.path)
        let vaultKey = try KeyLoading.loadVaultPublicKey(path: pub.path)
        XCTAssertTrue(result.stdout.contains("token key id \(tokenKey.keyID)"))
        XCTAssertTrue(result.stdout.contains("vault key id \(vaultKey.keyID)"))
        XCTAssertTrue(result.stdout.contains("ETL") && result.stdout.contains("compliance officer"))
        // No key material on the terminal.
        for file in [token, secret] {
            let line = try String(contentsOf: file, encoding: .utf8).split(separator: "\n").last!.split(separator: " ")[1]
            XCTAssertFalse(result.stdout.contains(line) || result.stderr.contains(line))
        }
    }

    /// Issue 26: the vault-rotation step (`keygen --dir new --passphrase`) handed out a new token.key nobody may use;
    /// `--vault-key-only` writes the vault key pair alone (and creates the folder, as plain keygen does).
    func testVaultKeyOnlyWritesNoTokenKey() throws {
        let dir = try makeTemporaryDirectory(self).appendingPathComponent("new")
        let result = try runPiivault(["keygen", "--dir", dir.path, "--vault-key-only"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted(), ["vault.key", "vault.pub"])
        XCTAssertEqual(try mode(dir), 0o700)
        XCTAssertEqual(try mode(dir.appendingPathComponent("vault.key")), 0o600)
        let vaultKey = try KeyLoading.loadVaultPublicKey(path: dir.appendingPathComponent("vault.pub").path)
        XCTAssertTrue(result.stdout.contains("vault key id \(vaultKey.keyID)"), result.stdout)
        XCTAssertFalse(result.stdout.contains("token"), result.stdout)
        // A token.key already in the folder is neither a conflict nor touched.
        let other = try makeTemporaryDirectory(self)
        try Data("keep me\n".utf8).write(to: other.appendingPathComponent("token.key"))
        XCTAssertEqual(try runPiivault(["keygen", "--dir", other.path, "--vault-key-only"]).status, 0)
        XCTAssertEqual(try String(contentsOf: other.appendingPathComponent("token.key"), encoding: .utf8), "keep me\n")
        let both = try runPiivault(["keygen", "--vault-key-only", "--token-key-version", "2"])
        XCTAssertEqual(both.status, 64, both.stderr)
    }

    func testKeygenNeverOverwrites() throws {
        let dir = try makeTemporaryDirectory(self)
        XCTAssertEqual(try runPiivault(["keygen", "--dir", dir.path]).status, 0)
        let names = ["token.key", "vault.pub", "vault.key"]
        let before = try names.map { try Data(contentsOf: dir.appendingPathComponent($0)) }
        let second = try runPiivault(["keygen", "--dir", dir.path])
        XCTAssertEqual(second.status, PIIVaultExitCode.failure.rawValue)
        XCTAssertTrue(second.stderr.contains("already exist"), second.stderr)
        XCTAssertEqual(try names.map { try Data(contentsOf: dir.appendingPathComponent($0)) }, before)
    }

    func testKeygenWritesNothingWhenOneFileExists() throws {
        let dir = try makeTemporaryDirectory(self)
        let pub = dir.appendingPathComponent("vault.pub")
        try Data("keep me\n".utf8).write(to: pub)
        let result = try runPiivault(["keygen", "--dir", dir.path])
        XCTAssertEqual(result.status, PIIVaultExitCode.failure.rawValue, result.stderr)
        XCTAssertTrue(result.stderr.contains("vault.pub already exists"), result.stderr)
        XCTAssertEqual(try String(contentsOf: pub, encoding: .utf8), "keep me\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("token.key").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("vault.key").path))
    }

    func testPassphraseProtectedKeyOpensOnlyWithItsPassphrase() throws {
        let dir = try makeTemporaryDirectory(self)
        let passFile = dir.appendingPathComponent("pass.txt"), wrongFile = dir.appendingPathComponent("wrong.txt")
        try Data("correct horse battery staple\n".utf8).write(to: passFile)
        try Data("Correct horse battery staple\n".utf8).write(to: wrongFile)
        for file in [passFile, wrongFile] {  // passphrase files are secrets like key files: 0600
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        }
        let keysDir = dir.appendingPathComponent("keys")
        let result = try runPiivault(
            ["keygen", "--dir", keysDir.path, "--passphrase"], environment: ["PIIVAULT_PASSPHRASE_FILE": passFile.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let secretPath = keysDir.appendingPathComponent("vault.key").path
        let text = try String(contentsOfFile: secretPath, encoding: .utf8)
        XCTAssertTrue(text.contains("PIIVAULT-VAULT-ENCRYPTED-KEY-1 "))
        XCTAssertFalse(text.contains("PIIVAULT-VAULT-SECRET-KEY-1"))
        XCTAssertTrue(try KeyLoading.isPassphraseProtected(path: secretPath))
        let pub = try KeyLoading.loadVaultPublicKey(path: keysDir.appendingPathComponent("vault.pub").path)

        let opened = try KeyLoading.loadVaultSecretKey(path: secretPath) { try Passphrase.fromFile(path: passFile.path) }
        XCTAssertEqual(opened.publicKey, pub)
        XCTAssertThrowsError(try KeyLoading.loadVaultSecretKey(path: secretPath) { try Passphrase.fromFile(path: wrongFile.path) }) {
            XCTAssertEqual($0 as? KeyFileError, .wrongPassphrase(file: secretPath))
            XCTAssertEqual(($0 as? KeyFileError)?.exitCode, .noPermission)
        }
    }

    /// Ctrl-C at a passphrase prompt ends the command as Ctrl-C does, with the terminal's echo back on (a pseudo-
    /// terminal driven by Python's pty module; its settings read after the process has gone).
    func testCtrlCAtThePassphrasePromptLeavesEchoOn() throws {
        let dir = try makeTemporaryDirectory(self)
        let script = #"""
            import os, pty, sys, termios, time
            pid, fd = pty.fork()
            if pid == 0:
                os.environ.pop("PIIVAULT_PASSPHRASE_FILE", None)
                os.execv(sys.argv[1], [sys.argv[1], "keygen", "--passphrase", "--dir", sys.argv[2]])
            seen, deadline = b"", time.time() + 20
            while b"assphrase" not in seen and time.time() < deadline:
                seen += os.read(fd, 1024)
            time.sleep(0.2)
            echo_at_prompt = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
            os.write(fd, b"\x03")
            _, status = os.waitpid(pid, 0)
            print(f"prompt_echo={echo_at_prompt} signal={os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0} "
                  f"echo_after={bool(termios.tcgetattr(fd)[3] & termios.ECHO)}")
            """#
        let result = try runProcess("python3", ["-c", script, try piivaultBinary(), dir.appendingPathComponent("keys").path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                       "prompt_echo=False signal=2 echo_after=True", "echo off at the prompt, back on after Ctrl-C")
    }
}
