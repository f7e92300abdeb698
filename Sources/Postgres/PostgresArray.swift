import Foundation

/// Array literals in PostgreSQL's text format (`{...}`), for binding a whole array as one text parameter and casting
/// it in SQL (`\(PostgresArray.texts(tokens))::text[]`): the values stay data, never SQL.
public enum PostgresArray {
    /// `{1,2,3}`.
    public static func bigints(_ values: [Int]) -> String {
        "{" + values.map(String.init).joined(separator: ",") + "}"
    }

    /// Every element quoted, with `\` and `"` escaped.
    public static func texts(_ values: [String]) -> String {
        "{" + values.map { "\"" + $0.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }

    /// bytea elements in hex form (`\x...`, the backslash escaped inside the quoted element).
    public static func bytes(_ values: [[UInt8]]) -> String {
        let digits = Array("0123456789abcdef")
        return "{" + values.map { value in
            "\"\\\\x" + String(value.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] }) + "\""
        }.joined(separator: ",") + "}"
    }
}
