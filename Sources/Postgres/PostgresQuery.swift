import Foundation

/// A value bound to a query parameter.
public enum PostgresBind: Sendable, Equatable {
    case null
    /// Sent in text format with the type left for the server to infer.
    case text(String)
    /// Sent in binary format as `bytea`.
    case bytes([UInt8])
}

/// A Swift value that can be bound as a query parameter.
public protocol PostgresEncodable {
    /// The value as it is sent to the server.
    var postgresBind: PostgresBind { get }
}

extension String: PostgresEncodable { public var postgresBind: PostgresBind { .text(self) } }
extension Substring: PostgresEncodable { public var postgresBind: PostgresBind { .text(String(self)) } }
extension Int: PostgresEncodable { public var postgresBind: PostgresBind { .text(String(self)) } }
extension Int32: PostgresEncodable { public var postgresBind: PostgresBind { .text(String(self)) } }
extension Int64: PostgresEncodable { public var postgresBind: PostgresBind { .text(String(self)) } }
extension Double: PostgresEncodable { public var postgresBind: PostgresBind { .text(String(self)) } }
extension Bool: PostgresEncodable { public var postgresBind: PostgresBind { .text(self ? "true" : "false") } }
extension Array: PostgresEncodable where Element == UInt8 { public var postgresBind: PostgresBind { .bytes(self) } }
extension Data: PostgresEncodable { public var postgresBind: PostgresBind { .bytes([UInt8](self)) } }
extension Optional: PostgresEncodable where Wrapped: PostgresEncodable {
    public var postgresBind: PostgresBind { self?.postgresBind ?? .null }
}

/// A SQL statement whose interpolated values become bound parameters (`$1`, `$2`, ...), never SQL text.
///
///     let rows = try await connection.query("SELECT token FROM vault.secrets WHERE token = \(token)")
///
/// Identifiers that cannot be parameters (table names chosen by the program, never by input) are added with
/// `\(identifier: name)`, which quotes them.
public struct PostgresQuery: Sendable, ExpressibleByStringInterpolation {
    /// The statement with `$n` placeholders.
    public var sql: String
    /// The values bound to `$1...$n`.
    public var binds: [PostgresBind]

    /// A statement with explicit binds.
    public init(unsafeSQL sql: String, binds: [PostgresBind] = []) {
        self.sql = sql
        self.binds = binds
    }

    public init(stringLiteral value: String) {
        self.sql = value
        self.binds = []
    }

    public init(stringInterpolation: StringInterpolation) {
        self.sql = stringInterpolation.sql
        self.binds = stringInterpolation.binds
    }

    public struct StringInterpolation: StringInterpolationProtocol {
        var sql = ""
        var binds: [PostgresBind] = []

        public init(literalCapacity: Int, interpolationCount: Int) {
            sql.reserveCapacity(literalCapacity + interpolationCount * 3)
        }

        public mutating func appendLiteral(_ literal: String) { sql += literal }

        /// Binds a value as the next parameter.
        public mutating func appendInterpolation(_ value: some PostgresEncodable) {
            binds.append(value.postgresBind)
            sql += "$\(binds.count)"
        }

        /// Binds an optional value as the next parameter; nil is SQL NULL.
        public mutating func appendInterpolation<Value: PostgresEncodable>(_ value: Value?) {
            binds.append(value?.postgresBind ?? .null)
            sql += "$\(binds.count)"
        }

        /// Binds an explicit `PostgresBind`.
        public mutating func appendInterpolation(bind: PostgresBind) {
            binds.append(bind)
            sql += "$\(binds.count)"
        }

        /// Adds a quoted SQL identifier (a name chosen by the program).
        public mutating func appendInterpolation(identifier: String) {
            sql += "\"" + identifier.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
    }
}
