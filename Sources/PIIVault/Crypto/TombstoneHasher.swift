import CSodium

/// The keyed hash that names a data subject (the tombstone, the `forget` log entry, and `user_logins.subject_hash`,
/// which the ETL writes with each row so that forget's subject can be checked): `hex(HMAC-SHA-256(subkey, utf8(user_id)))` with
/// `subkey` the token key's tombstone key: `crypto_kdf_derive_from_key(32, 1, "PIIV-TMB", token master key)` of a
/// version 1 key, carried forward unchanged into later versions (`TokenKey.tombstoneKey`). Its own kdf context, so it is no
/// token of any field; keyed, so a user id cannot be checked against a tombstone without the token key.
public struct TombstoneHasher: Sendable {
    /// The kdf context (8 bytes, part of the contract).
    public static let context = "PIIV-TMB"
    private let subkey: SecretBytes

    /// The hasher of `key`'s tombstone key (derived from the master for a version 1 key, carried in a versioned file).
    public init(key: TokenKey) {
        Sodium.ensureInitialized()
        subkey = key.tombstoneKey
    }

    /// 64 lowercase hex digits.
    public func hash(userID: String) -> String {
        var mac = [UInt8](repeating: 0, count: 32)
        let input = Array(userID.utf8)
        _ = subkey.withUInt8Pointer { key in
            hmacSHA256(&mac, input, UInt64(input.count), key)
        }
        return hexString(mac)
    }
}

private func hmacSHA256(
    _ out: UnsafeMutablePointer<UInt8>, _ input: [UInt8], _ length: UInt64, _ key: UnsafePointer<UInt8>
) -> Int32 {
    var state = crypto_auth_hmacsha256_state()
    crypto_auth_hmacsha256_init(&state, key, 32)
    crypto_auth_hmacsha256_update(&state, input, length)
    return crypto_auth_hmacsha256_final(&state, out)
}
