/// A token as stored in `user_logins` and `vault.secrets` and printed by every command:
/// `<field>.v<version>.<digest>`, where
/// - `field` is `ip` or `dev` (device_id),
/// - `version` is the token key version: decimal, 1 to 999999999, without leading zeros (so one token has one
///   spelling; `v01` and `v0` are not tokens),
/// - `digest` is the HMAC-SHA-256 as 64 lowercase hex digits.
///
/// The same rule is `audit.is_token` in SQL (migration 0010), which the database applies before a token reaches the
/// access log; `TokenShapeTests` feeds one list of strings to both.
public struct Token: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// The field whose value this token stands for.
    public let field: PIIField
    /// The token key version.
    public let version: Int
    /// 64 lowercase hex digits.
    public let digest: String

    /// The largest version a token may carry (nine decimal digits).
    public static let maximumVersion = 999_999_999

    /// The prefix of `field` without the version (`ip`, `dev`).
    public static func prefix(for field: PIIField) -> String {
        switch field {
        case .ip: return "ip"
        case .deviceID: return "dev"
        }
    }

    /// Parses a token; nil for anything else (never echo the text: it may be a value typed by mistake).
    public init?(parsing text: String) {
        let parts = text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        switch String(decoding: parts[0], as: UTF8.self) {
        case "ip": field = .ip
        case "dev": field = .deviceID
        default: return nil
        }
        let versionBytes = parts[1]
        guard versionBytes.first == UInt8(ascii: "v") else { return nil }
        let digits = versionBytes.dropFirst()
        guard (1...9).contains(digits.count), digits.first != UInt8(ascii: "0"),
              digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
              let version = Int(String(decoding: digits, as: UTF8.self))
        else { return nil }
        self.version = version
        let hex = parts[2]
        guard hex.count == 64,
              hex.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
        else { return nil }
        digest = String(decoding: hex, as: UTF8.self)
    }

    /// A token from its parts; nil unless `version` is in range and `digest` is 64 lowercase hex digits.
    public init?(field: PIIField, version: Int, digest: String) {
        self.init(parsing: "\(Token.prefix(for: field)).v\(version).\(digest)")
    }

    /// True when `text` is a token.
    public static func isToken(_ text: String) -> Bool { Token(parsing: text) != nil }

    /// `ip.v1.<64 hex>` / `dev.v1.<64 hex>`.
    public var description: String { "\(Token.prefix(for: field)).v\(version).\(digest)" }

    /// Ordered as their printed forms compare byte by byte (as `ORDER BY ... COLLATE "C"`).
    public static func < (lhs: Token, rhs: Token) -> Bool {
        lhs.description.utf8.lexicographicallyPrecedes(rhs.description.utf8)
    }
}
