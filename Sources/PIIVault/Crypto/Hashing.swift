import CLibCrypto

/// SHA-256, OpenSSL's (the CPU's SHA instructions where it has them: `KeyedHMAC` says why not libsodium's).
func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    _ = SHA256(bytes, bytes.count, &digest)
    return digest
}

/// Lowercase hex.
func hexString(_ bytes: [UInt8]) -> String { Sodium.hex(bytes) }

/// Bytes from hex (either case); nil if the text is not an even number of hex digits.
func bytesFromHex<S: StringProtocol>(_ text: S) -> [UInt8]? { Sodium.bytes(fromHex: String(text)) }

/// Lowercase hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String { hexString(sha256(bytes)) }
