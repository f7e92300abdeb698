/// A token or a subject hash as a set element, hashed by its last 8 bytes instead of all 64-70.
///
/// Both end in the hex of an HMAC-SHA-256 under a key the messages' senders do not have, so those 8 bytes are as
/// evenly spread as the whole string and cannot be steered into collisions; equality still compares whole strings.
/// The ETL's per-batch sets hash each token several times (about 15 hashes a message), and hashing all 70 bytes was
/// 6% of its instructions.
struct DigestKey: Hashable {
    let text: String

    init(_ text: String) { self.text = text }

    static func == (lhs: DigestKey, rhs: DigestKey) -> Bool { lhs.text == rhs.text }

    func hash(into hasher: inout Hasher) {
        let tail: UInt64? = text.utf8.withContiguousStorageIfAvailable { bytes in
            bytes.count >= 8 ? UnsafeRawPointer(bytes.baseAddress! + bytes.count - 8).loadUnaligned(as: UInt64.self) : nil
        } ?? nil
        if let tail { hasher.combine(tail) } else { hasher.combine(text) }
    }
}

/// A token reduced to the last 128 bits of its HMAC (its last 32 hex digits), for the run's set of tokens known to be
/// in the vault: 16 bytes an entry instead of a 70-byte string (about 130 bytes with its heap object), so that set, up
/// to 262,144 tokens, costs a few MiB instead of tens as a run grows. Two tokens of different values share one with
/// odds of 2^-128 (about 2^-90 over a run's look-ups), which would leave one login's value unsealed: far below the
/// odds of the hardware failing first.
struct TokenFingerprint: Hashable {
    let high: UInt64
    let low: UInt64

    /// Nil unless `token` ends in at least 32 lowercase hex digits (every token does).
    init?(_ token: String) {
        guard let halves = token.utf8.withContiguousStorageIfAvailable({ bytes -> (UInt64, UInt64)? in
            guard bytes.count >= 32 else { return nil }
            var halves: (UInt64, UInt64) = (0, 0)
            for index in 0..<32 {
                let byte = bytes[bytes.count - 32 + index]
                let nibble: UInt8
                switch byte {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): nibble = byte &- UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): nibble = byte &- UInt8(ascii: "a") &+ 10
                default: return nil
                }
                if index < 16 { halves.0 = halves.0 << 4 | UInt64(nibble) } else { halves.1 = halves.1 << 4 | UInt64(nibble) }
            }
            return halves
        }), let (high, low) = halves else { return nil }
        self.high = high
        self.low = low
    }
}
