#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSodium
import Foundation

extension KeyLoading {
    /// Loads a token key in any form: `PIIVAULT-TOKEN-KEY-1`, `-2`, or KMS-wrapped (`PIIVAULT-TOKEN-KEY-KMS-1`,
    /// opened with KMS `Decrypt` through `kms`). The same mode and owner rules apply to every form.
    public static func loadTokenKey(path: String, option: String? = nil, kms: KMSKeyService) async throws -> TokenKey {
        let expected: [KeyFileLabel] = [.tokenKey, .tokenKeyVersioned, .tokenKeyKMS]
        var text = try readKeyFile(path: path, protection: .secret, option: option, expected: expected)
        defer { sodium_memzero(&text, text.count) }
        if try label(of: text, file: path, expected: expected) == .tokenKeyKMS {
            let wrapped = try KMSKeyFile.parse(text, file: path)
            guard wrapped.kind == .token else {
                throw KeyFileError.wrongLabel(file: path, expected: expected.map(\.rawValue).joined(separator: " or "),
                                              found: wrapped.kind.label.rawValue)
            }
            return try KMSKeyFile.tokenKey(from: try await wrapped.unwrap(file: path, kms: kms), file: path)
        }
        return try tokenKey(text: text, path: path)
    }

    /// Loads the vault secret key in any form: plain, passphrase-protected (`passphrase` asked only then) or
    /// KMS-wrapped (`PIIVAULT-VAULT-SECRET-KEY-KMS-1`, opened with KMS `Decrypt` through `kms`).
    public static func loadVaultSecretKey(path: String, option: String? = nil, kms: KMSKeyService,
                                          passphrase: () throws -> SecretBytes) async throws -> VaultSecretKey {
        let expected: [KeyFileLabel] = [.vaultSecretKey, .vaultEncryptedKey, .vaultSecretKeyKMS]
        var text = try readKeyFile(path: path, protection: .secret, option: option, expected: expected)
        defer { sodium_memzero(&text, text.count) }
        if try label(of: text, file: path, expected: expected) == .vaultSecretKeyKMS {
            let wrapped = try KMSKeyFile.parse(text, file: path)
            guard wrapped.kind == .vault else {
                throw KeyFileError.wrongLabel(file: path, expected: expected.map(\.rawValue).joined(separator: " or "),
                                              found: wrapped.kind.label.rawValue)
            }
            return try KMSKeyFile.vaultSecretKey(from: try await wrapped.unwrap(file: path, kms: kms), file: path)
        }
        return try vaultSecretKey(text: text, path: path, passphrase: passphrase)
    }

    /// The label of a key file's text (the key line's first word), one of `expected`; any other is reported as
    /// `KeyFile.parse` reports it.
    static func label(of text: [UInt8], file: String, expected: [KeyFileLabel]) throws -> KeyFileLabel {
        for line in text.split(separator: UInt8(ascii: "\n")) {
            let trimmed = line.drop { $0 == UInt8(ascii: " ") || $0 == 9 }
            if trimmed.isEmpty || trimmed.first == UInt8(ascii: "#") || trimmed.first == UInt8(ascii: "\r") { continue }
            let word = String(decoding: trimmed.prefix { $0 != UInt8(ascii: " ") && $0 != 9 && $0 != UInt8(ascii: "\r") },
                              as: UTF8.self)
            if let label = KeyFileLabel(rawValue: word), expected.contains(label) { return label }
            // Anything else: KeyFile.parse reports it (truncated, wrong label) without echoing key material.
            _ = try KeyFile.parse(text, file: file, expected: expected)
            throw KeyFileError.truncated(file: file)
        }
        throw KeyFileError.truncated(file: file)
    }
}

/// `piivault keys wrap` / `keys unwrap`: moving a key file into and out of KMS. Neither writes key material anywhere
/// but the requested output file, created with `O_EXCL` and mode 0600.
public enum KeyWrapping {
    /// What was written.
    public struct Result: Sendable {
        /// The kind of key.
        public let kind: WrappedKeyKind
        /// piivault's key id of the key (unchanged by wrapping).
        public let keyID: KeyID
        /// The KMS key (wrap: as given; unwrap: as the file named it).
        public let kmsKeyID: String
        /// The file written.
        public let path: String
    }

    /// Wraps a plaintext or passphrase-protected key file (token key or vault secret key) under `kmsKeyID` into
    /// `out`. `passphrase` is asked only for a passphrase-protected vault key.
    public static func wrap(file: String, kmsKeyID: String, out: String, kms: KMSKeyService,
                            passphrase: () throws -> SecretBytes, now: Date = Date()) async throws -> Result {
        try checkOutputAbsent(out)
        let all: [KeyFileLabel] = [.tokenKey, .tokenKeyVersioned, .vaultSecretKey, .vaultEncryptedKey,
                                   .tokenKeyKMS, .vaultSecretKeyKMS]
        var text = try KeyLoading.readKeyFile(path: file, protection: .secret, option: "FILE", expected: all)
        defer { sodium_memzero(&text, text.count) }
        let kind: WrappedKeyKind
        let payload: SecretBytes
        switch try KeyLoading.label(of: text, file: file, expected: all) {
        case .tokenKeyKMS, .vaultSecretKeyKMS:
            throw KMSKeyFileError.wrongForm(file: file, what: "is already wrapped by KMS; unwrap it first (piivault keys unwrap) to wrap it under another KMS key")
        case .tokenKey, .tokenKeyVersioned:
            kind = .token
            let key = try KeyLoading.tokenKey(text: text, path: file)
            payload = key.version == 1 && key.tombstoneKey.constantTimeEquals(TokenKey.derivedTombstoneKey(master: key.bytes))
                ? key.bytes : TokenKeyPayload.encode(key)
        default:
            kind = .vault
            payload = try KeyLoading.vaultSecretKey(text: text, path: file, passphrase: passphrase).bytes
        }
        let wrapped = try await KMSKeyFile.wrap(payload: payload, kind: kind, kmsKeyID: kmsKeyID, file: file, kms: kms)
        try write(wrapped: wrapped, to: out, comments: comments(kind: kind, keyID: wrapped.keyID, kmsKeyID: kmsKeyID,
                                                                 now: now, extra: "wrapped from \(file)"))
        return Result(kind: kind, keyID: wrapped.keyID, kmsKeyID: kmsKeyID, path: out)
    }

    /// Unwraps a KMS-wrapped key file into a plaintext key file `out` (for leaving KMS).
    public static func unwrap(file: String, out: String, kms: KMSKeyService, now: Date = Date()) async throws -> Result {
        try checkOutputAbsent(out)
        let all: [KeyFileLabel] = [.tokenKeyKMS, .vaultSecretKeyKMS, .tokenKey, .tokenKeyVersioned, .vaultSecretKey,
                                   .vaultEncryptedKey]
        var text = try KeyLoading.readKeyFile(path: file, protection: .secret, option: "FILE", expected: all)
        defer { sodium_memzero(&text, text.count) }
        let label = try KeyLoading.label(of: text, file: file, expected: all)
        guard label == .tokenKeyKMS || label == .vaultSecretKeyKMS else {
            throw KMSKeyFileError.wrongForm(file: file, what: "is not wrapped by KMS (its label is \(label.rawValue)); there is nothing to unwrap")
        }
        let wrapped = try KMSKeyFile.parse(text, file: file)
        let payload = try await wrapped.unwrap(file: file, kms: kms)
        let created = ISO8601DateFormatter().string(from: now)
        var plain: [UInt8]
        switch wrapped.kind {
        case .token:
            let key = try KMSKeyFile.tokenKey(from: payload, file: file)
            plain = payload.withUnsafeBytes {
                KeyFile.render(label: payload.count == TokenKey.byteCount ? .tokenKey : .tokenKeyVersioned,
                               comments: ["piivault token key: SECRET; for the ETL (and compliance, for lookup)",
                                          "created: \(created) (unwrapped from \(file))", "key id: \(key.keyID)"]
                                   + (key.version > 1 ? ["token key version: \(key.version)"] : []),
                               payload: $0)
            }
        case .vault:
            let key = try KMSKeyFile.vaultSecretKey(from: payload, file: file)
            let publicBase64 = key.publicKey.bytes.withUnsafeBytes { Sodium.base64($0) }
            plain = payload.withUnsafeBytes {
                KeyFile.render(label: .vaultSecretKey,
                               comments: ["piivault vault secret key: SECRET; for the compliance officer only, never the ETL",
                                          "created: \(created) (unwrapped from \(file))", "key id: \(key.keyID)",
                                          "public key: \(publicBase64)"],
                               payload: $0)
            }
        }
        defer { sodium_memzero(&plain, plain.count) }
        try KeyGeneration.writeNew(path: out, contents: plain, mode: 0o600) {}
        return Result(kind: wrapped.kind, keyID: wrapped.keyID, kmsKeyID: wrapped.kmsKeyID, path: out)
    }

    /// The comment lines of a wrapped file.
    static func comments(kind: WrappedKeyKind, keyID: KeyID, kmsKeyID: String, now: Date, extra: String? = nil)
        -> [String] {
        let purpose = kind == .token
            ? "piivault token key, wrapped by AWS KMS: for the ETL (and compliance, for lookup); opening it needs kms:Decrypt"
            : "piivault vault secret key, wrapped by AWS KMS: for the compliance officer only, never the ETL; opening it needs kms:Decrypt"
        return [purpose, "created: \(ISO8601DateFormatter().string(from: now))", "key id: \(keyID)",
                "kms key: \(kmsKeyID)",
                "encryption context: piivault:key=\(kind.rawValue), piivault:key-id=\(keyID)"]
            + (extra.map { [$0] } ?? [])
    }

    /// Writes a wrapped file with `O_EXCL`, mode 0600.
    static func write(wrapped: KMSKeyFile, to path: String, comments: [String]) throws {
        try KeyGeneration.writeNew(path: path, contents: wrapped.render(comments: comments), mode: 0o600) {}
    }

    /// Refuses an output that exists before KMS is asked anything.
    static func checkOutputAbsent(_ out: String) throws {
        var info = stat()
        if lstat(out, &info) == 0 { throw KeyFileError.alreadyExists(files: [out]) }
    }
}

extension KeyGeneration {
    /// What `keygen --kms-key-id` wrote.
    public struct GeneratedWrappedKeys: Sendable {
        /// The token key's id and file, unless only a vault key pair was asked for.
        public let tokenKey: (id: KeyID, path: String, version: Int)?
        /// The vault key pair, unless only a token key was asked for.
        public let vault: GeneratedVaultKeyPair?
    }

    /// Generates keys as `generate`, `generateVaultKeyPair` and `generateTokenKey` do, but writes `token.key` and
    /// `vault.key` wrapped by KMS under `kmsKeyID` (`vault.pub` stays plain). Key material exists only in memory
    /// until KMS has wrapped it; nothing is written unless every key was wrapped.
    ///
    /// - Parameters:
    ///   - tokenKey: write a token key (`version` 1 for a first keygen; 2 or more with `previous` for a rotation).
    ///   - vaultKeyPair: write a vault key pair.
    public static func generateWrapped(
        in directory: String, kmsKeyID: String, tokenKey: Bool, vaultKeyPair: Bool, tokenKeyVersion: Int = 1,
        previous: TokenKey? = nil, kms: KMSKeyService, now: Date = Date()
    ) async throws -> GeneratedWrappedKeys {
        Sodium.ensureInitialized()
        guard KMSKeyFile.isValidKMSKeyID(kmsKeyID) else { throw KMSKeyFileError.badKMSKeyID(kmsKeyID: kmsKeyID) }
        if let previous, previous.version >= tokenKeyVersion {
            throw KeyFileError.badVersion(file: "--token-key-version (the previous key is version \(previous.version))",
                                          version: tokenKeyVersion)
        }
        let p = paths(in: directory)
        var existing: [String] = []
        for path in (tokenKey ? [p.token] : []) + (vaultKeyPair ? [p.publicKey, p.secretKey] : []) {
            var info = stat()
            if lstat(path, &info) == 0 { existing.append(path) }
        }
        guard existing.isEmpty else { throw KeyFileError.alreadyExists(files: existing) }

        var files: [(path: String, text: [UInt8], mode: mode_t)] = []
        var generatedToken: (id: KeyID, path: String, version: Int)?
        var generatedVault: GeneratedVaultKeyPair?
        if tokenKey {
            let key = tokenKeyVersion == 1 ? TokenKey.generate()
                : try TokenKey.generate(version: tokenKeyVersion, previous: previous)
            let payload = tokenKeyVersion == 1 ? key.bytes : TokenKeyPayload.encode(key)
            let wrapped = try await KMSKeyFile.wrap(payload: payload, kind: .token, kmsKeyID: kmsKeyID, file: p.token,
                                                    kms: kms)
            let extra = tokenKeyVersion == 1 ? nil : "token key version: \(tokenKeyVersion)"
            files.append((p.token, wrapped.render(comments: KeyWrapping.comments(
                kind: .token, keyID: key.keyID, kmsKeyID: kmsKeyID, now: now, extra: extra)), 0o600))
            generatedToken = (key.keyID, p.token, key.version)
        }
        if vaultKeyPair {
            let key = VaultSecretKey.generate()
            let created = ISO8601DateFormatter().string(from: now)
            let wrapped = try await KMSKeyFile.wrap(payload: key.bytes, kind: .vault, kmsKeyID: kmsKeyID,
                                                    file: p.secretKey, kms: kms)
            let publicText = key.publicKey.bytes.withUnsafeBytes { payload in
                KeyFile.render(label: .vaultPublicKey,
                               comments: ["piivault vault public key: not secret; for the ETL", "created: \(created)",
                                          "key id: \(key.keyID)"], payload: payload)
            }
            let publicBase64 = key.publicKey.bytes.withUnsafeBytes { Sodium.base64($0) }
            files.append((p.publicKey, publicText, 0o644))
            files.append((p.secretKey, wrapped.render(comments: KeyWrapping.comments(
                kind: .vault, keyID: key.keyID, kmsKeyID: kmsKeyID, now: now, extra: "public key: \(publicBase64)")),
                0o600))
            generatedVault = GeneratedVaultKeyPair(vaultKeyID: key.keyID, vaultPublicKeyPath: p.publicKey,
                                                   vaultSecretKeyPath: p.secretKey, passphraseProtected: false)
        }
        // The folder only now: a KMS that refuses leaves nothing behind, not even an empty folder.
        try createDirectoryIfMissing(directory)
        var createdPaths: [String] = []
        do {
            for file in files { try writeNew(path: file.path, contents: file.text, mode: file.mode) { createdPaths.append(file.path) } }
        } catch {
            for path in createdPaths { unlink(path) }
            throw error
        }
        return GeneratedWrappedKeys(tokenKey: generatedToken, vault: generatedVault)
    }
}
