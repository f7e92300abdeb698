import CLibCrypto
import CSodium

/// HMAC-SHA-256 (RFC 2104) with its key absorbed once, over OpenSSL's SHA-256.
///
/// Why not libsodium's `crypto_auth_hmacsha256`: its SHA-256 is portable C (about 3,500 instructions a block), and
/// the ETL hashes every message three times (two tokens and the subject hash); OpenSSL's uses the CPU's SHA
/// instructions where it has them. The function is the same: `KeyedHMACTests` compares the two over keys and
/// messages of many lengths, and the cross-check tests compare tokens with Python's `hmac`.
struct KeyedHMAC: Sendable {
    /// The inner and outer SHA-256 states after the padded key, in guarded memory: as secret as the key.
    private let states: SecretBytes
    private static let stateSize = MemoryLayout<SHA256_CTX>.size

    /// `key` is at most one SHA-256 block (64 bytes); every key here is 32.
    init(key: UnsafeRawBufferPointer) {
        precondition(key.count <= 64, "KeyedHMAC takes keys of at most 64 bytes")
        states = SecretBytes(count: 2 * Self.stateSize) { out in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 64) { pad in
                for (index, padByte) in [UInt8(0x36), 0x5c].enumerated() {
                    for i in 0..<64 { pad[i] = i < key.count ? key[i] ^ padByte : padByte }
                    let state = (out.baseAddress! + index * Self.stateSize).assumingMemoryBound(to: SHA256_CTX.self)
                    _ = SHA256_Init(state)
                    _ = SHA256_Update(state, pad.baseAddress, 64)
                }
                sodium_memzero(pad.baseAddress, 64)
            }
        }
    }

    /// Writes HMAC-SHA-256(key, message) to `mac` (32 bytes).
    func authenticate(_ message: UnsafeRawBufferPointer, into mac: UnsafeMutablePointer<UInt8>) {
        withUnsafeTemporaryAllocation(of: SHA256_CTX.self, capacity: 1) { scratch in
            let state = scratch.baseAddress!
            states.withUnsafeBytes { keyed in
                UnsafeMutableRawPointer(state).copyMemory(from: keyed.baseAddress!, byteCount: Self.stateSize)
                _ = SHA256_Update(state, message.baseAddress, message.count)
                _ = SHA256_Final(mac, state)
                UnsafeMutableRawPointer(state).copyMemory(
                    from: keyed.baseAddress! + Self.stateSize, byteCount: Self.stateSize)
                _ = SHA256_Update(state, mac, 32)
                _ = SHA256_Final(mac, state)
            }
            sodium_memzero(state, Self.stateSize)
        }
    }
}
