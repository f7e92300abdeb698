#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSodium
import Foundation

/// What `keygen` wrote.
public struct GeneratedKeys: Sendable {
    /// The token master key's id.
    public let tokenKeyID: KeyID
    /// The vault key's id (of its public key).
    public let vaultKeyID: KeyID
    /// Paths as written (relative to the current directory when the folder was).
    public let tokenKeyPath: String
    public let vaultPublicKeyPath: String
    public let vaultSecretKeyPath: String
    /// Whether `vault.key` is passphrase-protected.
    public let passphraseProtected: Bool
}

/// Creates the three key files. Never overwrites: if any exists nothing is written, files are created with
/// `O_EXCL`, and when a later file fails the ones this run created are removed again.
public enum KeyGeneration {
    public static let tokenKeyFileName = "token.key"
    public static let vaultPublicKeyFileName = "vault.pub"
    public static let vaultSecretKeyFileName = "vault.key"

    /// The three paths in `directory`.
    public static func paths(in directory: String) -> (token: String, publicKey: String, secretKey: String) {
        func join(_ name: String) -> String {
            directory == "." || directory.isEmpty ? name : (directory.hasSuffix("/") ? directory + name : directory + "/" + name)
        }
        return (join(tokenKeyFileName), join(vaultPublicKeyFileName), join(vaultSecretKeyFileName))
    }

    /// Throws `KeyFileError.alreadyExists` when any of the three files (or a symlink by that name) exists
    /// (`token.key` only when `includingTokenKey`).
    public static func checkNoneExist(in directory: String, includingTokenKey: Bool = true) throws {
        let p = paths(in: directory)
        let candidates = (includingTokenKey ? [p.token] : []) + [p.publicKey, p.secretKey]
        let existing = candidates.filter { path in
            var info = stat()
            return lstat(path, &info) == 0
        }
        if !existing.isEmpty { throw KeyFileError.alreadyExists(files: existing) }
    }

    /// Creates `directory` with mode 0700 when it does not exist (its parent must). Every keygen does this first.
    public static func createDirectoryIfMissing(_ directory: String) throws {
        var info = stat()
        if !directory.isEmpty && stat(directory, &info) != 0 {
            guard mkdir(directory, 0o700) == 0 else {
                throw KeyFileError.cannotWrite(file: directory, reason: String(cString: strerror(errno)))
            }
        }
    }

    /// Generates a token key and a vault key pair into `directory` (created with mode 0700 when missing).
    /// `passphrase`, when given, is asked after the existence check and protects `vault.key`; it must have at least
    /// `Passphrase.minimumLength` characters.
    public static func generate(
        in directory: String, passphrase: (() throws -> SecretBytes)? = nil, now: Date = Date()
    ) throws -> GeneratedKeys {
        let written = try generateFiles(in: directory, passphrase: passphrase, vaultKeyOnly: false, now: now)
        return GeneratedKeys(
            tokenKeyID: written.tokenKeyID!, vaultKeyID: written.vault.vaultKeyID, tokenKeyPath: written.tokenKeyPath!,
            vaultPublicKeyPath: written.vault.vaultPublicKeyPath, vaultSecretKeyPath: written.vault.vaultSecretKeyPath,
            passphraseProtected: written.vault.passphraseProtected)
    }

    /// What `keygen --vault-key-only` wrote.
    public struct GeneratedVaultKeyPair: Sendable {
        public let vaultKeyID: KeyID
        public let vaultPublicKeyPath: String
        public let vaultSecretKeyPath: String
        public let passphraseProtected: Bool

        public init(vaultKeyID: KeyID, vaultPublicKeyPath: String, vaultSecretKeyPath: String, passphraseProtected: Bool) {
            self.vaultKeyID = vaultKeyID
            self.vaultPublicKeyPath = vaultPublicKeyPath
            self.vaultSecretKeyPath = vaultSecretKeyPath
            self.passphraseProtected = passphraseProtected
        }
    }

    /// Generates only a vault key pair (`vault.pub`, `vault.key`) into `directory`, as ``generate(in:passphrase:now:)``
    /// does: a vault key rotation must not hand out a token key nobody should use. A `token.key` already there is
    /// left alone.
    public static func generateVaultKeyPair(
        in directory: String, passphrase: (() throws -> SecretBytes)? = nil, now: Date = Date()
    ) throws -> GeneratedVaultKeyPair {
        try generateFiles(in: directory, passphrase: passphrase, vaultKeyOnly: true, now: now).vault
    }

    private static func generateFiles(
        in directory: String, passphrase: (() throws -> SecretBytes)?, vaultKeyOnly: Bool, now: Date
    ) throws -> (tokenKeyID: KeyID?, tokenKeyPath: String?, vault: GeneratedVaultKeyPair) {
        Sodium.ensureInitialized()
        let p = paths(in: directory)
        try createDirectoryIfMissing(directory)
        try checkNoneExist(in: directory, includingTokenKey: !vaultKeyOnly)
        let pass = try passphrase?()
        if let pass { try Passphrase.checkNew(pass) }

        let tokenKey = TokenKey.generate()
        let vaultKey = VaultSecretKey.generate()
        let created = ISO8601DateFormatter().string(from: now)
        let publicBase64 = vaultKey.publicKey.bytes.withUnsafeBytes { Sodium.base64($0) }

        var tokenText = tokenKey.bytes.withUnsafeBytes { payload in
            KeyFile.render(
                label: .tokenKey,
                comments: [
                    "piivault token key: SECRET; for the ETL (and compliance, for lookup)",
                    "created: \(created)", "key id: \(tokenKey.keyID)",
                ], payload: payload)
        }
        defer { sodium_memzero(&tokenText, tokenText.count) }
        let publicText = vaultKey.publicKey.bytes.withUnsafeBytes { payload in
            KeyFile.render(
                label: .vaultPublicKey,
                comments: [
                    "piivault vault public key: not secret; for the ETL",
                    "created: \(created)", "key id: \(vaultKey.keyID)",
                ], payload: payload)
        }
        let secretComments = [
            "piivault vault secret key: SECRET; for the compliance officer only, never the ETL",
            "created: \(created)", "key id: \(vaultKey.keyID)", "public key: \(publicBase64)",
        ]
        var secretText: [UInt8]
        if let pass {
            let payload = try PassphraseKey.encrypt(vaultKey, passphrase: pass, file: p.secretKey)
            secretText = payload.withUnsafeBytes {
                KeyFile.render(
                    label: .vaultEncryptedKey, comments: secretComments + ["passphrase-protected (Argon2id)"], payload: $0)
            }
        } else {
            secretText = vaultKey.bytes.withUnsafeBytes {
                KeyFile.render(label: .vaultSecretKey, comments: secretComments, payload: $0)
            }
        }
        defer { sodium_memzero(&secretText, secretText.count) }

        var createdPaths: [String] = []
        do {
            for (path, text, mode) in (vaultKeyOnly ? [] : [(p.token, tokenText, mode_t(0o600))]) + [
                (p.publicKey, publicText, mode_t(0o644)), (p.secretKey, secretText, mode_t(0o600)),
            ] {
                var text = text
                defer { sodium_memzero(&text, text.count) }
                try writeNew(path: path, contents: text, mode: mode) { createdPaths.append(path) }
            }
        } catch {
            for path in createdPaths { unlink(path) }
            throw error
        }
        let vault = GeneratedVaultKeyPair(vaultKeyID: vaultKey.keyID, vaultPublicKeyPath: p.publicKey,
                                          vaultSecretKeyPath: p.secretKey, passphraseProtected: pass != nil)
        return (vaultKeyOnly ? nil : tokenKey.keyID, vaultKeyOnly ? nil : p.token, vault)
    }

    /// What `keygen --token-key-version` wrote.
    public struct GeneratedTokenKey: Sendable {
        public let keyID: KeyID
        public let version: Int
        public let path: String
        /// Whether the tombstone key was carried forward from a previous token key.
        public let tombstoneKeyCarried: Bool
    }

    /// Writes a new versioned token key (`PIIVAULT-TOKEN-KEY-2`) of `version` (2 or more) to `directory/token.key`,
    /// carrying `previous`'s tombstone key forward so that users forgotten under earlier keys stay forgotten. Never
    /// overwrites; writes no vault key pair.
    public static func generateTokenKey(
        in directory: String, version: Int, previous: TokenKey?, now: Date = Date()
    ) throws -> GeneratedTokenKey {
        Sodium.ensureInitialized()
        guard (2...Token.maximumVersion).contains(version) else {
            throw KeyFileError.badVersion(file: "--token-key-version", version: version)
        }
        if let previous, previous.version >= version {
            throw KeyFileError.badVersion(file: "--token-key-version (the previous key is version \(previous.version))", version: version)
        }
        try createDirectoryIfMissing(directory)
        var info = stat()
        let path = paths(in: directory).token
        if lstat(path, &info) == 0 { throw KeyFileError.alreadyExists(files: [path]) }
        let key = try TokenKey.generate(version: version, previous: previous)
        let created = ISO8601DateFormatter().string(from: now)
        let payload = TokenKeyPayload.encode(key)
        var text = payload.withUnsafeBytes { bytes in
            KeyFile.render(
                label: .tokenKeyVersioned,
                comments: [
                    "piivault token key: SECRET; for the ETL (and compliance, for lookup and retokenize)",
                    "created: \(created)", "key id: \(key.keyID)", "token key version: \(version)",
                    previous.map { "tombstone key carried forward from token key \($0.keyID) (version \($0.version))" }
                        ?? "new tombstone key (no previous token key given)",
                ], payload: bytes)
        }
        defer { sodium_memzero(&text, text.count) }
        try writeNew(path: path, contents: text, mode: 0o600) {}
        return GeneratedTokenKey(keyID: key.keyID, version: version, path: path, tombstoneKeyCarried: previous != nil)
    }

    /// Creates `path` with `O_EXCL` (never replacing anything, not even through a symlink), sets the exact mode
    /// (the umask could only narrow it, but 0644 must stay 0644), writes and syncs; then calls `created` (a caller
    /// writing several files removes those already written when a later one fails). A file this call created and
    /// could not finish (a full disk, an I/O error) is removed before it throws: a half-written key, or a whole one
    /// the command said it did not write, never stays behind.
    static func writeNew(path: String, contents: [UInt8], mode: mode_t, created: () -> Void) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else {
            if errno == EEXIST { throw KeyFileError.alreadyExists(files: [path]) }
            throw KeyFileError.cannotWrite(file: path, reason: String(cString: strerror(errno)))
        }
        var failure: Int32?
        if fchmod(fd, mode) != 0 {
            failure = errno
        } else if let code = writeAll(contents, to: fd) {
            failure = code
        } else if fsync(fd) != 0 {
            failure = errno
        }
        close(fd)
        if let failure {
            unlink(path)
            throw KeyFileError.cannotWrite(file: path, reason: String(cString: strerror(failure)))
        }
        created()
    }
}
