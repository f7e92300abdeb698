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
