import CSodium

/// The token master key (`token.key`): 32 random bytes, the token key version it tokenizes with, and the key of the
/// tombstone hashes. Held by the ETL; the master derives the per-field token subkeys.
///
/// A `PIIVAULT-TOKEN-KEY-1` file holds only the master: version 1, tombstone key derived from the master. A versioned
/// file (`PIIVAULT-TOKEN-KEY-2`) carries version and tombstone key, so that a rotated key keeps naming forgotten users
/// by the same hashes (SECURITY.md, "Token key rotation").
public struct TokenKey: Sendable {
    /// Length of the master key in bytes.
    public static let byteCount = 32
    /// Length of the tombstone key in bytes.
    public static let tombstoneKeyByteCount = 32
    /// The master key, in guarded memory.
    public let bytes: SecretBytes
    /// Its key id (BLAKE2b-64 of the master key).
    public let keyID: KeyID
    /// The `n` of the `ip.vn.` / `dev.vn.` tokens this key makes (1 for a `PIIVAULT-TOKEN-KEY-1` file).
    public let version: Int
    /// The HMAC key of tombstones and of each login's subject hash (`TombstoneHasher`), in guarded memory.
    public let tombstoneKey: SecretBytes

    /// Wraps 32 secret bytes as a version 1 key (for example from a `PIIVAULT-TOKEN-KEY-1` file or a test vector):
    /// the tombstone key is `crypto_kdf_derive_from_key(32, 1, "PIIV-TMB", master)`.
    public init(bytes: SecretBytes) throws {
        guard bytes.count == Self.byteCount else {
            throw KeyFileError.wrongLength(file: "token key", expected: Self.byteCount, found: bytes.count)
        }
        try self.init(bytes: bytes, version: 1, tombstoneKey: Self.derivedTombstoneKey(master: bytes))
    }

    /// A key of `version` with its own tombstone key (carried forward from the previous key).
    public init(bytes: SecretBytes, version: Int, tombstoneKey: SecretBytes) throws {
        guard bytes.count == Self.byteCount else {
            throw KeyFileError.wrongLength(file: "token key", expected: Self.byteCount, found: bytes.count)
        }
        guard tombstoneKey.count == Self.tombstoneKeyByteCount else {
            throw KeyFileError.wrongLength(file: "tombstone key", expected: Self.tombstoneKeyByteCount, found: tombstoneKey.count)
        }
        guard (1...Token.maximumVersion).contains(version) else { throw KeyFileError.badVersion(file: "token key", version: version) }
        self.bytes = bytes
        self.keyID = bytes.withUnsafeBytes { KeyID(of: $0) }
        self.version = version
        self.tombstoneKey = tombstoneKey
    }

    /// The tombstone key of a version 1 key: `crypto_kdf_derive_from_key(32, 1, "PIIV-TMB", master)`.
    static func derivedTombstoneKey(master: SecretBytes) -> SecretBytes {
        Sodium.ensureInitialized()
        return SecretBytes(count: tombstoneKeyByteCount) { out in
            let rc = master.withUInt8Pointer { m in
                crypto_kdf_derive_from_key(out.baseAddress!.assumingMemoryBound(to: UInt8.self), 32, 1,
                                           TombstoneHasher.context, m)
            }
            precondition(rc == 0, "crypto_kdf_derive_from_key failed")
        }
    }

    /// A fresh random master key (version 1).
    public static func generate() -> TokenKey {
        // The length is right by construction.
        try! TokenKey(bytes: .random(count: byteCount))
    }

    /// A fresh random master key of `version`, keeping `previous`'s tombstone key (or a fresh one without it).
    public static func generate(version: Int, previous: TokenKey?) throws -> TokenKey {
        try TokenKey(bytes: .random(count: byteCount), version: version,
                     tombstoneKey: previous?.tombstoneKey ?? .random(count: tombstoneKeyByteCount))
    }
}

/// The vault public key (X25519, 32 bytes, `vault.pub`). The ETL seals data keys to it; it cannot open anything.
public struct VaultPublicKey: Sendable, Equatable {
    /// Length of the public key in bytes.
    public static let byteCount = Int(crypto_box_PUBLICKEYBYTES)
    /// The raw public key.
    public let bytes: [UInt8]
    /// Its key id (BLAKE2b-64 of the public key).
    public let keyID: KeyID

    /// Wraps 32 public-key bytes.
    public init(bytes: [UInt8]) throws {
        guard bytes.count == Self.byteCount else {
            throw KeyFileError.wrongLength(file: "vault public key", expected: Self.byteCount, found: bytes.count)
        }
        self.bytes = bytes
        self.keyID = bytes.withUnsafeBytes { KeyID(of: $0) }
    }
}

/// The vault secret key (X25519, 32 bytes, `vault.key`), held by the compliance officer only. Its public half is
/// recomputed from it, so a secret key file cannot be paired with the wrong public key.
public struct VaultSecretKey: Sendable {
    /// Length of the secret key in bytes.
    public static let byteCount = Int(crypto_box_SECRETKEYBYTES)
    /// The secret key, in guarded memory.
    public let bytes: SecretBytes
    /// The matching public key.
    public let publicKey: VaultPublicKey
    /// The key id of the matching public key: what sealed data keys record.
    public var keyID: KeyID { publicKey.keyID }

    /// Wraps 32 secret bytes and derives the public key (`crypto_scalarmult_base`).
    public init(bytes: SecretBytes) throws {
        guard bytes.count == Self.byteCount else {
            throw KeyFileError.wrongLength(file: "vault secret key", expected: Self.byteCount, found: bytes.count)
        }
        Sodium.ensureInitialized()
        var pub = [UInt8](repeating: 0, count: VaultPublicKey.byteCount)
        let rc = bytes.withUInt8Pointer { crypto_scalarmult_base(&pub, $0) }
        guard rc == 0 else { throw KeyFileError.wrongLength(file: "vault secret key", expected: 32, found: 0) }
        self.bytes = bytes
        self.publicKey = try VaultPublicKey(bytes: pub)
    }

    /// A fresh key pair (`crypto_box_keypair`).
    public static func generate() -> VaultSecretKey {
        Sodium.ensureInitialized()
        var pub = [UInt8](repeating: 0, count: VaultPublicKey.byteCount)
        let secret = SecretBytes(count: byteCount) { buffer in
            _ = crypto_box_keypair(&pub, buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        // Lengths are right by construction.
        return try! VaultSecretKey(bytes: secret)
    }
}
