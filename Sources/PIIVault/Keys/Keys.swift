import CSodium

/// The token master key (32 random bytes, `token.key`). Held by the ETL; it derives the per-field token subkeys.
public struct TokenKey: Sendable {
    /// Length of the master key in bytes.
    public static let byteCount = 32
    /// The master key, in guarded memory.
    public let bytes: SecretBytes
    /// Its key id (BLAKE2b-64 of the master key).
    public let keyID: KeyID

    /// Wraps 32 secret bytes (for example from a key file or a test vector).
    public init(bytes: SecretBytes) throws {
        guard bytes.count == Self.byteCount else {
            throw KeyFileError.wrongLength(file: "token key", expected: Self.byteCount, found: bytes.count)
        }
        self.bytes = bytes
        self.keyID = bytes.withUnsafeBytes { KeyID(of: $0) }
    }

    /// A fresh random master key.
    public static func generate() -> TokenKey {
        // The length is right by construction.
        try! TokenKey(bytes: .random(count: byteCount))
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
