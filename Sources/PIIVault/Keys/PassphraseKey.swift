import CSodium

/// The `PIIVAULT-VAULT-ENCRYPTED-KEY-1` payload: the vault secret key sealed under a passphrase.
///
/// Byte layout (104 bytes, integers little-endian):
///
/// ```
/// offset  size  field
///      0    16  salt           (crypto_pwhash_SALTBYTES, random)
///     16     8  opslimit       (u64, Argon2id passes)
///     24     8  memlimit       (u64, bytes)
///     32    24  nonce          (crypto_secretbox_NONCEBYTES, random)
///     56    48  crypto_secretbox_easy(secret key) = Poly1305 tag (16) || XSalsa20 ciphertext (32)
/// ```
///
/// `key = crypto_pwhash(32 bytes, passphrase, salt, opslimit, memlimit, crypto_pwhash_ALG_ARGON2ID13)`. Changing salt
/// or limits changes the key, so the header is authenticated by the box.
enum PassphraseKey {
    static let saltBytes = Int(crypto_pwhash_SALTBYTES)
    static let nonceBytes = Int(crypto_secretbox_NONCEBYTES)
    static let macBytes = Int(crypto_secretbox_MACBYTES)
    static let payloadBytes = saltBytes + 8 + 8 + nonceBytes + macBytes + VaultSecretKey.byteCount
    /// libsodium's "moderate" limits: about a second and 256 MiB here, once per `unmask`.
    static let defaultOpsLimit = UInt64(crypto_pwhash_argon2id_OPSLIMIT_MODERATE)
    static let defaultMemLimit = UInt64(crypto_pwhash_argon2id_MEMLIMIT_MODERATE)
    /// A file may not ask for less than libsodium's interactive limits: anything cheaper is too cheap to guess against.
    static let minimumOpsLimit = UInt64(crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE)
    static let minimumMemLimit = UInt64(crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE)
    // A file may not demand more than this (a crafted file must not exhaust the machine).
    static let maxOpsLimit: UInt64 = 64
    static let maxMemLimit: UInt64 = 4 << 30

    static func derive(passphrase: SecretBytes, salt: ArraySlice<UInt8>, opsLimit: UInt64, memLimit: UInt64) -> SecretBytes? {
        var ok = false
        let key = SecretBytes(count: Int(crypto_secretbox_KEYBYTES)) { out in
            let salt = Array(salt)
            ok = passphrase.withUnsafeBytes { pass in
                crypto_pwhash(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(out.count),
                    pass.baseAddress!.assumingMemoryBound(to: CChar.self), UInt64(pass.count), salt,
                    opsLimit, Int(memLimit), crypto_pwhash_ALG_ARGON2ID13) == 0
            }
        }
        return ok ? key : nil
    }

    /// Encrypts the secret key under the passphrase; the payload is the layout above. The limits are the defaults
    /// except in tests (which make files with weak limits to check that they are refused).
    static func encrypt(
        _ secret: VaultSecretKey, passphrase: SecretBytes, file: String, opsLimit: UInt64 = defaultOpsLimit,
        memLimit: UInt64 = defaultMemLimit
    ) throws -> [UInt8] {
        let salt = Sodium.randomBytes(count: saltBytes)
        let nonce = Sodium.randomBytes(count: nonceBytes)
        guard let key = derive(passphrase: passphrase, salt: salt[...], opsLimit: opsLimit, memLimit: memLimit)
        else { throw KeyFileError.cannotWrite(file: file, reason: "password hashing failed (not enough memory?)") }
        var payload = salt
        withUnsafeBytes(of: opsLimit.littleEndian) { payload += $0 }
        withUnsafeBytes(of: memLimit.littleEndian) { payload += $0 }
        payload += nonce
        var box = [UInt8](repeating: 0, count: macBytes + VaultSecretKey.byteCount)
        _ = secret.bytes.withUInt8Pointer { sk in
            key.withUInt8Pointer { k in crypto_secretbox_easy(&box, sk, UInt64(VaultSecretKey.byteCount), nonce, k) }
        }
        payload += box
        return payload
    }

    /// Decrypts a payload with the passphrase.
    static func decrypt(_ payload: SecretBytes, passphrase: SecretBytes, file: String) throws -> SecretBytes {
        guard payload.count == payloadBytes else {
            throw KeyFileError.wrongLength(file: file, expected: payloadBytes, found: payload.count)
        }
        let bytes = payload.withUnsafeBytes { Array($0) }  // salt, limits, nonce, box: none of it is secret
        func u64(_ offset: Int) -> UInt64 {
            var value: UInt64 = 0
            for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
            return value
        }
        let salt = bytes[0..<saltBytes]
        let opsLimit = u64(saltBytes), memLimit = u64(saltBytes + 8)
        guard opsLimit <= maxOpsLimit, memLimit <= maxMemLimit else { throw KeyFileError.unsafeParameters(file: file) }
        guard opsLimit >= minimumOpsLimit, memLimit >= minimumMemLimit else {
            throw KeyFileError.weakParameters(file: file)
        }
        let nonce = Array(bytes[(saltBytes + 16)..<(saltBytes + 16 + nonceBytes)])
        let box = Array(bytes[(saltBytes + 16 + nonceBytes)...])
        guard let key = derive(passphrase: passphrase, salt: salt, opsLimit: opsLimit, memLimit: memLimit) else {
            throw KeyFileError.cannotRead(file: file, reason: "password hashing failed (not enough memory?)")
        }
        var ok = false
        let secret = SecretBytes(count: VaultSecretKey.byteCount) { out in
            ok = key.withUInt8Pointer { k in
                crypto_secretbox_open_easy(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), box, UInt64(box.count), nonce, k) == 0
            }
        }
        guard ok else { throw KeyFileError.wrongPassphrase(file: file) }
        return secret
    }
}
