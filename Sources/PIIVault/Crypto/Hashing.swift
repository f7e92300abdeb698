import CLibCrypto

/// SHA-256, OpenSSL's (the CPU's SHA instructions where it has them: `KeyedHMAC` says why not libsodium's).
///
/// The low-level calls, as `KeyedHMAC` uses: OpenSSL 3's one-shot `SHA256()` goes through EVP, which starts the
/// library and registers its exit-time clean-up before `PostgresConnection.keepOpenSSLAtExit` can turn it off.
func sha256(_ bytes: [UInt8]) -> [UInt8] {
    var digest = [UInt8](repeating: 0, count: 32)
    var state = SHA256_CTX()
    _ = SHA256_Init(&state)
    _ = bytes.withUnsafeBytes { SHA256_Update(&state, $0.baseAddress, $0.count) }
    _ = SHA256_Final(&digest, &state)
    return digest
}

/// Lowercase hex.
func hexString(_ bytes: [UInt8]) -> String { Sodium.hex(bytes) }

/// Bytes from hex (either case); nil if the text is not an even number of hex digits.
func bytesFromHex<S: StringProtocol>(_ text: S) -> [UInt8]? { Sodium.bytes(fromHex: String(text)) }

/// Lowercase hex SHA-256.
func sha256Hex(_ bytes: [UInt8]) -> String { hexString(sha256(bytes)) }
