import CSodium
import Foundation
import NIOConcurrencyHelpers

/// A data key sealed to a vault public key, as stored in `vault.data_keys` (`key_id`, `sealed_key`).
public struct SealedDataKey: Sendable, Equatable {
    /// The key id of the vault public key it was sealed to.
    public let keyID: KeyID
    /// `crypto_box_seal(data key, vault public key)`: 32 + 48 = 80 bytes.
    public let sealed: [UInt8]

    public init(keyID: KeyID, sealed: [UInt8]) {
        self.keyID = keyID
        self.sealed = sealed
    }
}

/// Layout constants of a sealed value: `nonce (24) || XChaCha20-Poly1305 ciphertext (message length + 16)`.
public enum SealedValueFormat {
    /// The random nonce in front of each sealed value.
    public static let nonceBytes = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    /// The Poly1305 tag at the end.
    public static let tagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
    /// The data key length.
    public static let keyBytes = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    /// Bytes added to each message.
    public static var overhead: Int { nonceBytes + tagBytes }
}

/// Seals values for one ETL run (envelope encryption): a fresh random data key, itself sealed once to the vault
/// public key (`crypto_box_seal`), then each value sealed with XChaCha20-Poly1305 under it, with the token (or the
/// quarantined message's id) as additional data. Sealing costs microseconds instead of an X25519 operation per value.
///
/// One sealer serves at most `valueLimit` values (2^24, the contract's rotation point): `seal` throws
/// `SealingError.dataKeyExhausted` after that; check `isExhausted` and start a new sealer. Safe to share across
/// threads. The data key is wiped when the sealer is released.
public final class DataKeySealer: Sendable {
    /// How many values one data key may seal.
    public static let valueLimit = 1 << 24
    /// The data key sealed to the vault public key, for `vault.data_keys`.
    public let sealedDataKey: SealedDataKey
    private let dataKey: SecretBytes
    private let count = NIOLockedValueBox(0)

    /// A fresh data key sealed to `vaultPublicKey`.
    public init(vaultPublicKey: VaultPublicKey) throws {
        Sodium.ensureInitialized()
        let key = SecretBytes(count: SealedValueFormat.keyBytes) { out in
            crypto_aead_xchacha20poly1305_ietf_keygen(out.baseAddress!.assumingMemoryBound(to: UInt8.self))
        }
        var sealed = [UInt8](repeating: 0, count: SealedValueFormat.keyBytes + crypto_box_sealbytes())
        let rc = key.withUInt8Pointer { crypto_box_seal(&sealed, $0, UInt64(key.count), vaultPublicKey.bytes) }
        guard rc == 0 else { throw SealingError.sealFailed }
        self.dataKey = key
        self.sealedDataKey = SealedDataKey(keyID: vaultPublicKey.keyID, sealed: sealed)
    }

    /// How many values this data key has sealed.
    public var sealedCount: Int { count.withLockedValue { $0 } }

    /// Whether the data key has sealed `valueLimit` values and must be replaced.
    public var isExhausted: Bool { sealedCount >= Self.valueLimit }

    /// Seals a canonical value bound to its token.
    public func seal(_ value: String, token: String) throws -> [UInt8] {
        var value = value, token = token
        return try value.withUTF8 { v in
            try token.withUTF8 { t in try seal(UnsafeRawBufferPointer(v), additionalData: UnsafeRawBufferPointer(t)) }
        }
    }

    /// Seals a quarantined message body bound to its message id.
    public func sealQuarantined(body: some Collection<UInt8>, messageID: String) throws -> [UInt8] {
        var id = messageID
        let bytes = Array(body)
        return try bytes.withUnsafeBytes { b in
            try id.withUTF8 { try seal(b, additionalData: UnsafeRawBufferPointer($0)) }
        }
    }

    /// `nonce || crypto_aead_xchacha20poly1305_ietf_encrypt(message, additionalData, nonce, data key)`.
    public func seal(_ message: UnsafeRawBufferPointer, additionalData: UnsafeRawBufferPointer) throws -> [UInt8] {
        try count.withLockedValue { count in
            guard count < Self.valueLimit else { throw SealingError.dataKeyExhausted }
            count += 1
        }
        let nonceBytes = SealedValueFormat.nonceBytes
        let total = nonceBytes + message.count + SealedValueFormat.tagBytes
        return try [UInt8](unsafeUninitializedCapacity: total) { out, initialized in
            let base = out.baseAddress!
            randombytes_buf(base, nonceBytes)
            var written: UInt64 = 0
            let rc = dataKey.withUInt8Pointer { key in
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    base + nonceBytes, &written,
                    message.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(message.count),
                    additionalData.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(additionalData.count),
                    nil, base, key)
            }
            guard rc == 0 else { initialized = 0; throw SealingError.sealFailed }
            initialized = nonceBytes + Int(written)
        }
    }
}

/// What `DataKeyOpener.diagnose` found about a sealed value that should belong to a token.
public enum SealedValueDiagnosis: Sendable, Equatable {
    /// It opens with its own token.
    case intact
    /// It opens only with another token: it was moved from that token's row.
    case moved(originalToken: String)
    /// It opens with none of the tokens tried: its bytes were changed (or it belongs to a token not offered).
    case damaged
}

/// Opens values sealed under one data key (for `unmask`). The data key is opened once with the vault secret key,
/// after checking that the recorded key id is that key's; it is wiped when the opener is released.
public final class DataKeyOpener: Sendable {
    private let dataKey: SecretBytes

    /// Opens `sealedDataKey` with `secretKey`. Throws `SealingError.wrongVaultKey` when the data key records another
    /// vault key id, `SealingError.dataKeyDamaged` when it does not open.
    public init(sealedDataKey: SealedDataKey, secretKey: VaultSecretKey) throws {
        guard sealedDataKey.keyID == secretKey.keyID else {
            throw SealingError.wrongVaultKey(recorded: sealedDataKey.keyID, given: secretKey.keyID)
        }
        let sealed = sealedDataKey.sealed
        guard sealed.count == SealedValueFormat.keyBytes + crypto_box_sealbytes() else {
            throw SealingError.dataKeyDamaged(keyID: sealedDataKey.keyID)
        }
        var failed = false
        let key = SecretBytes(count: SealedValueFormat.keyBytes) { out in
            let rc = secretKey.bytes.withUInt8Pointer { sk in
                crypto_box_seal_open(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), sealed, UInt64(sealed.count),
                    secretKey.publicKey.bytes, sk)
            }
            failed = rc != 0
        }
        guard !failed else { throw SealingError.dataKeyDamaged(keyID: sealedDataKey.keyID) }
        self.dataKey = key
    }

    /// The same data key sealed again, to `publicKey` (`crypto_box_seal`): what `rewrap` stores in place of the old
    /// sealed bytes. The data key itself stays in guarded memory.
    public func sealed(to publicKey: VaultPublicKey) throws -> SealedDataKey {
        var sealed = [UInt8](repeating: 0, count: SealedValueFormat.keyBytes + crypto_box_sealbytes())
        let rc = dataKey.withUInt8Pointer { crypto_box_seal(&sealed, $0, UInt64(dataKey.count), publicKey.bytes) }
        guard rc == 0 else { throw SealingError.sealFailed }
        return SealedDataKey(keyID: publicKey.keyID, sealed: sealed)
    }

    /// Opens a sealed value with its row's token as additional data. Throws `.malformed` for bytes too short to be
    /// a sealed value, `.authenticationFailed` when it does not open (moved or damaged: see `open(_:token:candidates:)`).
    public func open(_ sealed: [UInt8], token: String) throws -> [UInt8] {
        var token = token
        return try token.withUTF8 { try open(sealed, additionalData: UnsafeRawBufferPointer($0)) }
    }

    /// Opens a sealed value as a UTF-8 string (canonical values are strings).
    public func openString(_ sealed: [UInt8], token: String) throws -> String {
        var bytes = try open(sealed, token: token)
        defer { sodium_memzero(&bytes, bytes.count) }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Opens a value and, when it fails, says why: `.valueMoved(originalToken:)` when it opens under one of
    /// `candidates` (other tokens whose values were sealed under the same data key, for instance), else
    /// `.valueDamaged` (or `.malformed`).
    public func open(_ sealed: [UInt8], token: String, candidates: some Sequence<String>) throws -> [UInt8] {
        do {
            return try open(sealed, token: token)
        } catch SealingError.authenticationFailed {
            switch diagnose(sealed, expectedToken: token, candidates: candidates) {
            case .moved(let original): throw SealingError.valueMoved(originalToken: original)
            case .damaged, .intact: throw SealingError.valueDamaged
            }
        }
    }

    /// Tells a moved value from a damaged one. A moved value is well-formed and opens, but with another row's token
    /// as additional data; since the token is only additional data, the opener can only find that row among tokens
    /// it is offered.
    public func diagnose(_ sealed: [UInt8], expectedToken: String, candidates: some Sequence<String>)
        -> SealedValueDiagnosis
    {
        if let bytes = try? open(sealed, token: expectedToken) {
            var wipe = bytes
            sodium_memzero(&wipe, wipe.count)
            return .intact
        }
        for candidate in candidates where candidate != expectedToken {
            if var bytes = try? open(sealed, token: candidate) {
                sodium_memzero(&bytes, bytes.count)
                return .moved(originalToken: candidate)
            }
        }
        return .damaged
    }

    /// Opens a sealed quarantined message body with its message id as additional data.
    public func openQuarantined(_ sealed: [UInt8], messageID: String) throws -> [UInt8] {
        var id = messageID
        return try id.withUTF8 { try open(sealed, additionalData: UnsafeRawBufferPointer($0)) }
    }

    /// Opens `nonce || ciphertext` with `additionalData`.
    public func open(_ sealed: [UInt8], additionalData: UnsafeRawBufferPointer) throws -> [UInt8] {
        let nonceBytes = SealedValueFormat.nonceBytes
        guard sealed.count >= SealedValueFormat.overhead else { throw SealingError.malformed }
        let messageLength = sealed.count - SealedValueFormat.overhead
        return try sealed.withUnsafeBufferPointer { input in
            let base = input.baseAddress!
            return try [UInt8](unsafeUninitializedCapacity: max(messageLength, 1)) { out, initialized in
                var written: UInt64 = 0
                let rc = dataKey.withUInt8Pointer { key in
                    crypto_aead_xchacha20poly1305_ietf_decrypt(
                        out.baseAddress, &written, nil,
                        base + nonceBytes, UInt64(input.count - nonceBytes),
                        additionalData.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(additionalData.count),
                        base, key)
                }
                guard rc == 0 else { initialized = 0; throw SealingError.authenticationFailed }
                initialized = Int(written)
            }
        }
    }
}
