import CSodium

/// The keyed hash that names a data subject (the tombstone, the `forget` log entry, and `user_logins.subject_hash`,
/// which the ETL writes with each row so that forget's subject can be checked): `hex(HMAC-SHA-256(subkey, utf8(user_id)))` with
/// `subkey` the token key's tombstone key: `crypto_kdf_derive_from_key(32, 1, "PIIV-TMB", token master key)` of a
/// version 1 key, carried forward unchanged into later versions (`TokenKey.tombstoneKey`). Its own kdf context, so it is no
/// token of any field; keyed, so a user id cannot be checked against a tombstone without the token key.
public struct TombstoneHasher: Sendable {
    /// The kdf context (8 bytes, part of the contract).
    public static let context = "PIIV-TMB"
    /// The HMAC already keyed with the tombstone key (both pads absorbed), in guarded memory: as secret as the key.
    /// Keying once saves two of the four SHA-256 compressions of each hash (the ETL hashes every message's user).
    private let hmac: KeyedHMAC

    /// The hasher of `key`'s tombstone key (derived from the master for a version 1 key, carried in a versioned file).
    public init(key: TokenKey) {
        Sodium.ensureInitialized()
        let subkey = key.tombstoneKey
        hmac = subkey.withUnsafeBytes { KeyedHMAC(key: $0) }
    }

    /// 64 lowercase hex digits.
    public func hash(userID: String) -> String {
        var userID = userID
        return userID.withUTF8 { input in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { macPointer in
                let mac = macPointer.baseAddress!
                hmac.authenticate(UnsafeRawBufferPointer(input), into: mac)
                return String(unsafeUninitializedCapacity: 64) { out in
                    for index in 0..<32 {
                        out[2 * index] = lowercaseHexDigit(mac[index] >> 4)
                        out[2 * index + 1] = lowercaseHexDigit(mac[index] & 0x0f)
                    }
                    return 64
                }
            }
        }
    }
}

@inline(__always)
func lowercaseHexDigit(_ nibble: UInt8) -> UInt8 {
    nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble  // '0'..'9', 'a'..'f'
}
