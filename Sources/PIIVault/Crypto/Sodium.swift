import CSodium

/// libsodium's one-time initialisation. Every entry point that touches libsodium calls `Sodium.ensureInitialized()`
/// first; `sodium_init` is idempotent, and a Swift global is initialised exactly once and thread-safely.
enum Sodium {
    private static let initialized: Bool = sodium_init() >= 0

    /// Initialises libsodium once. A library that cannot initialise (no entropy source) is not safe to use at all.
    static func ensureInitialized() {
        guard initialized else { fatalError("libsodium could not be initialised (sodium_init failed)") }
    }

    /// Fills `buffer` with random bytes from the operating system's CSPRNG.
    static func randomBytes(_ buffer: UnsafeMutableRawBufferPointer) {
        ensureInitialized()
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        randombytes_buf(base, buffer.count)
    }

    /// `count` random bytes; for public values (nonces, salts), not for secrets.
    static func randomBytes(count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        bytes.withUnsafeMutableBytes { randomBytes($0) }
        return bytes
    }

    /// Standard base64 with padding, of an array.
    static func base64(_ bytes: [UInt8]) -> String {
        bytes.withUnsafeBytes { base64($0) }
    }

    /// Bytes from standard base64 with padding; nil when the text is not that. For public data (key ids, public
    /// keys, signatures); secret key files decode into guarded memory instead (KeyFile).
    static func bytes(fromBase64 text: String) -> [UInt8]? {
        ensureInitialized()
        let input = Array(text.utf8)
        guard !input.isEmpty else { return [] }
        var out = [UInt8](repeating: 0, count: input.count / 4 * 3 + 3)
        var length = 0
        let status = input.withUnsafeBufferPointer { inputPointer in
            sodium_base642bin(&out, out.count,
                              UnsafeRawPointer(inputPointer.baseAddress!).assumingMemoryBound(to: CChar.self),
                              inputPointer.count, nil, &length, nil, Int32(sodium_base64_VARIANT_ORIGINAL))
        }
        guard status == 0 else { return nil }
        return Array(out[0..<length])
    }

    /// Standard base64 with padding (`sodium_base64_VARIANT_ORIGINAL`).
    static func base64(_ bytes: UnsafeRawBufferPointer) -> String {
        ensureInitialized()
        let variant = Int32(sodium_base64_VARIANT_ORIGINAL)
        let length = sodium_base64_encoded_len(bytes.count, variant)  // includes the NUL terminator
        var out = [CChar](repeating: 0, count: length)
        out.withUnsafeMutableBufferPointer { out in
            _ = sodium_bin2base64(
                out.baseAddress!, length, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count, variant)
        }
        let result = String(decoding: out.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        sodium_memzero(&out, out.count)
        return result
    }

    /// Lowercase hex.
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses lowercase or uppercase hex; nil when it is not hex.
    static func bytes(fromHex hex: String) -> [UInt8]? {
        let chars = Array(hex.utf8)
        guard chars.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
            default: return nil
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let hi = nibble(chars[i]), let lo = nibble(chars[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
