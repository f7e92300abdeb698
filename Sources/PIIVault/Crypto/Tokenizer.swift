import CSodium

/// A token and the canonical value it was computed from (the value is what gets sealed).
public struct TokenizedValue: Sendable, Equatable {
    /// `ip.v1.<64 hex>` or `dev.v1.<64 hex>`.
    public let token: String
    /// The canonical value (PII: never log it).
    public let canonical: String
}

/// Keyed, deterministic tokens:
/// `token = "ip.v" + n + "." + hex(HMAC-SHA-256(subkey(ip, n), canonical(value)))` (and `dev.v...` for device_id),
/// with `subkey(f, n) = crypto_kdf_derive_from_key(32, n, ctx(f), master)`.
///
/// The subkeys are derived once, and the HMAC is keyed once: each token then costs two SHA-256 compressions for a
/// short value and one string allocation. Immutable, so one tokenizer can serve many threads.
public final class Tokenizer: Sendable {
    /// The key version `n` in `ip.v<n>.`.
    public let version: Int
    /// The token master key's id.
    public let keyID: KeyID
    // HMACs already keyed with each field's subkey (inner and outer pads absorbed, in guarded memory).
    private let ipHMAC: KeyedHMAC
    private let deviceHMAC: KeyedHMAC
    private let ipPrefix: [UInt8]
    private let devicePrefix: [UInt8]

    /// The kdf context of each field (8 bytes, part of the contract).
    public static func context(for field: PIIField) -> String {
        switch field {
        case .ip: return "PIIV-IP_"
        case .deviceID: return "PIIV-DEV"
        }
    }

    /// The token prefix of each field without the version (`ip`, `dev`): `Token`'s.
    public static func prefix(for field: PIIField) -> String { Token.prefix(for: field) }

    /// A tokenizer for the key's own version (`key.version`); `version` overrides it only for test vectors.
    public init(key: TokenKey, version: Int? = nil) {
        let version = version ?? key.version
        precondition((1...Token.maximumVersion).contains(version), "token key versions are 1 to \(Token.maximumVersion)")
        Sodium.ensureInitialized()
        self.version = version
        self.keyID = key.keyID
        func keyedHMAC(_ field: PIIField) -> KeyedHMAC {
            let subkey = SecretBytes(count: 32) { out in
                let rc = key.bytes.withUInt8Pointer { master in
                    crypto_kdf_derive_from_key(
                        out.baseAddress!.assumingMemoryBound(to: UInt8.self), 32, UInt64(version),
                        Tokenizer.context(for: field), master)
                }
                precondition(rc == 0, "crypto_kdf_derive_from_key failed")
            }
            return subkey.withUnsafeBytes { KeyedHMAC(key: $0) }
        }
        ipHMAC = keyedHMAC(.ip)
        deviceHMAC = keyedHMAC(.deviceID)
        // The printed form is `Token.description`'s; written here byte by byte for speed (the ETL's hot path), and
        // checked against `Token(parsing:)` by TokenTests.
        ipPrefix = Array("\(Token.prefix(for: .ip)).v\(version).".utf8)
        devicePrefix = Array("\(Token.prefix(for: .deviceID)).v\(version).".utf8)
    }

    /// Canonicalises `value` as `field` and returns its token with the canonical value.
    public func tokenize(_ value: String, as field: PIIField) throws -> TokenizedValue {
        let canonical = try Canonical.canonicalize(value, as: field)
        return TokenizedValue(token: token(forCanonical: canonical, field: field), canonical: canonical)
    }

    /// The token of a value that is already canonical, as a `Token`.
    public func tokenValue(forCanonical canonical: String, field: PIIField) -> Token {
        // The string is built from a valid prefix and 64 hex digits, so it always parses.
        Token(parsing: token(forCanonical: canonical, field: field))!
    }

    /// The token of a value that is already canonical.
    public func token(forCanonical canonical: String, field: PIIField) -> String {
        var canonical = canonical
        return canonical.withUTF8 { token(forCanonicalBytes: UnsafeRawBufferPointer($0), field: field) }
    }

    /// The token of canonical UTF-8 bytes.
    public func token(forCanonicalBytes bytes: UnsafeRawBufferPointer, field: PIIField) -> String {
        let hmac = field == .ip ? ipHMAC : deviceHMAC
        let prefix = field == .ip ? ipPrefix : devicePrefix
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { macPtr in
            let mac = macPtr.baseAddress!
            hmac.authenticate(bytes, into: mac)
            // Prefix and hex written straight into the string's own storage: one allocation per token.
            return String(unsafeUninitializedCapacity: prefix.count + 64) { out in
                var i = 0
                for byte in prefix { out[i] = byte; i += 1 }
                for j in 0..<32 {
                    let byte = mac[j]
                    out[i] = lowercaseHexDigit(byte >> 4)
                    out[i + 1] = lowercaseHexDigit(byte & 0x0f)
                    i += 2
                }
                return i
            }
        }
    }
}
