import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Issue 14, items 6 and 9, through the real binary and a real database: key material that is exposed, swappable,
/// not a file, oversized or protected too cheaply is refused before it is used, with the documented exit code.
final class KeyMaterialTests: XCTestCase {
    var database: ScratchDatabase!
    var dir: URL!
    var keys: URL { dir.appendingPathComponent("keys") }

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "keys")
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("key-material-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
    }

    override func tearDown() async throws {
        await database?.drop()
        if let dir { try? FileManager.default.removeItem(at: dir) }
    }

    // MARK: Helpers

    private var tokenKeyPath: String { keys.appendingPathComponent("token.key").path }
    private var publicKeyPath: String { keys.appendingPathComponent("vault.pub").path }

    /// `piivault etl` of one valid record from a file.
    private func etl(tokenKey: String? = nil, publicKey: String? = nil, environment: [String: String?] = [:]) throws
        -> ProcessResult
    {
        let input = dir.appendingPathComponent("one.ndjson")
        try #"{"user_id": "u-keys", "device_type": "ios", "ip": "192.0.2.44", "device_id": "dev-keys"}"#
            .appending("\n").write(to: input, atomically: true, encoding: .utf8)
        return try runPiivault(["etl", "--from-file", input.path, "--database-url", database.url,
                                "--token-key", tokenKey ?? tokenKeyPath, "--vault-public-key", publicKey ?? publicKeyPath],
                               environment: environment)
    }

    private func loadedRows() async throws -> Int {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        return try await connection.query("SELECT count(*) FROM user_logins").first![0].requiredInt()
    }

    /// A file holding `text` with mode 0600 (a passphrase file as it should be).
    private func privateFile(_ name: String, _ text: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        XCTAssertTrue(FileManager.default.createFile(atPath: url.path, contents: Data(text.utf8),
                                                     attributes: [.posixPermissions: 0o600]))
        return url
    }

    private func assertRefused(_ result: ProcessResult, _ code: PIIVaultExitCode, _ phrase: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, code.rawValue, result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: "), result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(phrase), result.stderr, file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line: \(result.stderr)", file: file, line: line)
    }

    // MARK: Item 6: vault.pub

    func testAVaultPubOthersCanWriteIsRefused() async throws {
        for mode in [0o664, 0o646, 0o666, 0o624] {
            chmod(publicKeyPath, mode_t(mode))
            assertRefused(try etl(), .noPermission, "is writable by others (mode \(String(mode, radix: 8))), so anyone could swap the key; run chmod go-w")
        }
        let refusedRows = try await loadedRows()
        XCTAssertEqual(refusedRows, 0, "nothing was sealed to a key anyone could have swapped")
        // Readable by everyone is what a public key is for.
        for mode in [0o644, 0o444] {
            chmod(publicKeyPath, mode_t(mode))
            let result = try etl()
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        let rows = try await loadedRows()
        XCTAssertEqual(rows, 1)

        // Another user's vault.pub (only root can make one; CI runs as root, and KeyFileTests covers any user).
        if geteuid() == 0 {
            XCTAssertEqual(chown(publicKeyPath, 65534, 65534), 0)
            assertRefused(try etl(), .noPermission, "is owned by uid 65534")
            XCTAssertEqual(chown(publicKeyPath, 0, 0), 0)
            let asRoot = try etl()
            XCTAssertEqual(asRoot.status, 0, asRoot.stderr)
        }
    }

    // MARK: systemd credentials

    /// The systemd unit passes the keys with `LoadCredential=`; systemd 255 and later writes each as root, mode 0400,
    /// with an ACL for the service's user (mode 0440 as `stat` shows it). In `$CREDENTIALS_DIRECTORY` that loads; the
    /// same file anywhere else is refused as readable by others.
    func testATokenKeyPassedAsASystemdCredentialLoads() async throws {
        let credentials = dir.appendingPathComponent("credentials")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: false)
        let passed = credentials.appendingPathComponent("token.key")
        try FileManager.default.copyItem(atPath: tokenKeyPath, toPath: passed.path)
        chmod(passed.path, 0o440)
        chmod(credentials.path, 0o500)
        defer { chmod(credentials.path, 0o700) }
        assertRefused(try etl(tokenKey: passed.path), .noPermission, "is readable by others")
        let result = try etl(tokenKey: passed.path, environment: ["CREDENTIALS_DIRECTORY": credentials.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try await loadedRows()
        XCTAssertEqual(rows, 1)
    }

    // MARK: Item 6: the passphrase file

    func testAnExposedPassphraseFileIsRefused() async throws {
        let passphrase = try privateFile("passphrase", "correct horse battery staple\n")
        let locked = dir.appendingPathComponent("locked")
        for mode in [0o644, 0o640, 0o604] {
            chmod(passphrase.path, mode_t(mode))
            let keygen = try runPiivault(["keygen", "--dir", locked.path, "--passphrase"],
                                         environment: [Passphrase.fileVariable: passphrase.path])
            assertRefused(keygen, .noPermission, "\(passphrase.path) is readable by others; run chmod 600")
            XCTAssertFalse(FileManager.default.fileExists(atPath: locked.appendingPathComponent("vault.key").path))
        }
        chmod(passphrase.path, 0o600)
        let keygen = try runPiivault(["keygen", "--dir", locked.path, "--passphrase"],
                                     environment: [Passphrase.fileVariable: passphrase.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)

        // unmask refuses it too, before the database is asked (no access-log entry).
        chmod(passphrase.path, 0o620)
        let token = "ip.v1." + String(repeating: "a", count: 64)
        let unmask = try runPiivault(
            ["unmask", "--database-url", database.url, "--key-file", locked.appendingPathComponent("vault.key").path,
             "--reason", "case 6", "--token", token],
            environment: [Passphrase.fileVariable: passphrase.path])
        assertRefused(unmask, .noPermission, "\(passphrase.path) is accessible by others (mode 620); run chmod 600")
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        let entries = try await connection.query("SELECT count(*) FROM audit.access_log").first![0].requiredInt()
        XCTAssertEqual(entries, 0)

        if geteuid() == 0 {  // as root (CI), also a passphrase file of another user
            chmod(passphrase.path, 0o600)
            XCTAssertEqual(chown(passphrase.path, 65534, 65534), 0)
            let foreign = try runPiivault(["keygen", "--dir", dir.appendingPathComponent("other").path, "--passphrase"],
                                          environment: [Passphrase.fileVariable: passphrase.path])
            assertRefused(foreign, .noPermission, "is owned by uid 65534")
        }
    }

    // MARK: Item 6: not a regular file, too large

    func testAFIFOGivenAsAKeyFileIsRefusedAtOnce() async throws {
        let fifo = dir.appendingPathComponent("token.fifo").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        for (tokenKey, publicKey) in [(fifo, publicKeyPath), (tokenKeyPath, fifo)] {
            let input = dir.appendingPathComponent("one.ndjson")
            try "{}\n".write(to: input, atomically: true, encoding: .utf8)
            let run = try BackgroundProcess(try piivaultBinary(), [
                "etl", "--from-file", input.path, "--database-url", database.url,
                "--token-key", tokenKey, "--vault-public-key", publicKey,
            ])
            let exited = try await run.waitForExit(timeout: 10)
            XCTAssertTrue(exited, "a FIFO as a key file must not hang the run")
            guard exited else {
                run.send(SIGKILL)
                _ = try await run.waitForExit(timeout: 10)
                continue
            }
            XCTAssertEqual(run.status, PIIVaultExitCode.dataError.rawValue, "65: not a key file (SECURITY.md): \(run.stderr)")
            XCTAssertTrue(run.stderr.contains("\(fifo): not a regular file"), run.stderr)
        }
    }

    func testAKeyFileOver64KiBIsTooLargeNotTwoKeys() throws {
        let key = try String(contentsOfFile: tokenKeyPath, encoding: .utf8)
        let padding = String(repeating: "# padding\n", count: 7 * 1024)  // 70 KiB of comments, one key line
        let big = try privateFile("big.key", padding + key)
        let result = try etl(tokenKey: big.path)
        assertRefused(result, .dataError, "\(big.path) is too large to be a key file (over 64 KiB)")
        XCTAssertFalse(result.stderr.contains("more than one key line"), result.stderr)
    }

    // MARK: Item 9: weak passphrase settings

    func testAPassphraseShorterThan12CharactersIsRefusedAtCreation() throws {
        for (text, accepted) in [("short pass!", false), ("ÄÖÜäöüÄÖÜäö", false), ("twelve chars", true),
                                 ("ÄÖÜäöüÄÖÜäöü", true)] {
            let passphrase = try privateFile("pass-\(ScratchDatabase.randomHex(2))", text + "\n")
            let out = dir.appendingPathComponent("k-\(ScratchDatabase.randomHex(3))")
            let keygen = try runPiivault(["keygen", "--dir", out.path, "--passphrase"],
                                         environment: [Passphrase.fileVariable: passphrase.path])
            if accepted {
                XCTAssertEqual(keygen.status, 0, "\(text.count) characters: \(keygen.stderr)")
            } else {
                assertRefused(keygen, .usage, "the passphrase is shorter than 12 characters")
                let written = (try? FileManager.default.contentsOfDirectory(atPath: out.path)) ?? []
                XCTAssertEqual(written, [], "nothing is written")
            }
        }
    }

    /// A passphrase-protected vault.key made (by PyNaCl) with Argon2id limits below libsodium's interactive minimum
    /// is refused when loaded, before the database is asked.
    func testAVaultKeyWithWeakArgon2LimitsIsRefused() async throws {
        let plain = try String(contentsOfFile: keys.appendingPathComponent("vault.key").path, encoding: .utf8)
        let secretBase64 = try XCTUnwrap(plain.split(separator: "\n").first { $0.hasPrefix("PIIVAULT-VAULT-SECRET-KEY-1 ") })
            .split(separator: " ")[1]
        let script = """
            import base64, sys, nacl.bindings as b, nacl.utils
            secret = base64.b64decode(sys.argv[1]); ops, mem = int(sys.argv[2]), int(sys.argv[3])
            salt = nacl.utils.random(16); nonce = nacl.utils.random(24)
            key = b.crypto_pwhash_alg(32, b"correct horse battery staple", salt, ops, mem, b.crypto_pwhash_ALG_ARGON2ID13)
            box = b.crypto_secretbox(secret, nonce, key)  # tag || ciphertext
            payload = salt + ops.to_bytes(8, "little") + mem.to_bytes(8, "little") + nonce + box
            print("PIIVAULT-VAULT-ENCRYPTED-KEY-1 " + base64.b64encode(payload).decode())
            """
        let passphrase = try privateFile("passphrase", "correct horse battery staple\n")
        for (ops, mem, refused) in [(1, 8 * 1024, true), (2, 8 * 1024, true), (1, 64 << 20, true), (2, 64 << 20, false)] {
            let made = try runProcess("python3", ["-c", script, String(secretBase64), String(ops), String(mem)])
            XCTAssertEqual(made.status, 0, "PyNaCl is needed (scripts/install-deps): \(made.stderr)")
            let weak = try privateFile("weak-\(ops)-\(mem).key", made.stdout)
            let result = try runPiivault(
                ["unmask", "--database-url", database.url, "--key-file", weak.path, "--no-verify-tokens", "--reason", "case 9",
                 "--token", "ip.v1." + String(repeating: "b", count: 64)],
                environment: [Passphrase.fileVariable: passphrase.path])
            if refused {
                assertRefused(result, .dataError, "below libsodium's interactive minimum (2 passes, 64 MiB)")
            } else {
                // At the minimum it opens; the token is then simply not in the vault (exit 1, after an entry).
                XCTAssertEqual(result.status, PIIVaultExitCode.failure.rawValue, result.stderr)
                XCTAssertTrue(result.stderr.contains("not in the vault"), result.stderr)
            }
        }
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        let entries = try await connection.query("SELECT count(*) FROM audit.access_log").first![0].requiredInt()
        XCTAssertEqual(entries, 1, "only the key at the minimum reached the database")
    }
}
