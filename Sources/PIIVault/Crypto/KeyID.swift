import CSodium

/// A key's public name: lowercase hex of the 8-byte BLAKE2b digest (`crypto_generichash`, no key) of the vault
/// public key or of the token master key. Safe to print, log and store; it does not reveal the key.
public struct KeyID: Hashable, Sendable, CustomStringConvertible {
    /// 16 lowercase hex characters.
    public let hex: String

    /// A key id read back from storage; nil unless it is 16 hex characters.
    public init?(hex: String) {
        let lower = hex.lowercased()
        guard lower.utf8.count == 16, Sodium.bytes(fromHex: lower) != nil else { return nil }
        self.hex = lower
    }

    /// The key id of `bytes` (a public key or a token master key).
    public init(of bytes: UnsafeRawBufferPointer) {
        Sodium.ensureInitialized()
        var digest = [UInt8](repeating: 0, count: 8)
        _ = crypto_generichash(
            &digest, 8, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count), nil, 0)
        self.hex = Sodium.hex(digest)
    }

    public var description: String { hex }
}
