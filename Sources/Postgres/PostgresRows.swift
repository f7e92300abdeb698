/// The rows a query returned, with values as the server sent them (text format).
public struct PostgresRows: Sendable, Sequence {
    /// Column names, in order.
    public let columns: [String]
    /// Each row's raw values; nil is SQL NULL.
    public let values: [[[UInt8]?]]
    /// The number of rows a command affected (INSERT, UPDATE, DELETE, COPY), or the rows returned.
    public let affectedRows: Int

    public var count: Int { values.count }
    public var isEmpty: Bool { values.isEmpty }
    public var first: PostgresRow? { values.isEmpty ? nil : PostgresRow(columns: columns, values: values[0]) }

    /// The first row of a statement that always returns one (`INSERT ... RETURNING`, a function returning a row);
    /// throws a decoding error naming `statement` when there is none, instead of trapping.
    public func requiredFirst(_ statement: @autoclosure () -> String) throws -> PostgresRow {
        guard let first else {
            throw PostgresError(kind: .decoding, message: "\(statement()) returned no row")
        }
        return first
    }

    public subscript(index: Int) -> PostgresRow { PostgresRow(columns: columns, values: values[index]) }

    public func makeIterator() -> some IteratorProtocol<PostgresRow> {
        values.lazy.map { PostgresRow(columns: columns, values: $0) }.makeIterator()
    }
}

/// One row of a result.
public struct PostgresRow: Sendable {
    public let columns: [String]
    public let values: [[UInt8]?]

    /// The cell at `index`.
    public subscript(index: Int) -> PostgresCell {
        PostgresCell(column: columns[index], raw: values[index])
    }

    /// The cell in the column called `name`.
    public subscript(name: String) -> PostgresCell {
        guard let index = columns.firstIndex(of: name) else {
            return PostgresCell(column: name, raw: nil, missing: true)
        }
        return self[index]
    }
}

/// One value of a row, decoded on request into the Swift type the caller expects.
public struct PostgresCell: Sendable {
    public let column: String
    /// The text-format bytes; nil is SQL NULL.
    public let raw: [UInt8]?
    var missing = false

    init(column: String, raw: [UInt8]?, missing: Bool = false) {
        self.column = column
        self.raw = raw
        self.missing = missing
    }

    public var isNull: Bool { raw == nil }

    /// The value as text, or nil for NULL.
    public func string() throws -> String? {
        try checkExists()
        return raw.map { String(decoding: $0, as: UTF8.self) }
    }

    /// The value as text; NULL is an error.
    public func requiredString() throws -> String {
        guard let value = try string() else { throw nullError() }
        return value
    }

    /// The value as an integer, or nil for NULL.
    public func int() throws -> Int? {
        guard let text = try string() else { return nil }
        guard let value = Int(text) else { throw typeError("an integer") }
        return value
    }

    /// The value as an integer; NULL is an error.
    public func requiredInt() throws -> Int {
        guard let value = try int() else { throw nullError() }
        return value
    }

    /// The value as a boolean, or nil for NULL.
    public func bool() throws -> Bool? {
        guard let text = try string() else { return nil }
        switch text {
        case "t", "true": return true
        case "f", "false": return false
        default: throw typeError("a boolean")
        }
    }

    /// A `bytea` value (hex output format), or nil for NULL.
    public func bytes() throws -> [UInt8]? {
        try checkExists()
        guard let raw else { return nil }
        guard raw.count >= 2, raw[0] == UInt8(ascii: "\\"), raw[1] == UInt8(ascii: "x"), raw.count % 2 == 0 else {
            throw typeError("bytea in hex format")
        }
        var result = [UInt8]()
        result.reserveCapacity((raw.count - 2) / 2)
        var index = 2
        while index < raw.count {
            guard let high = hexValue(raw[index]), let low = hexValue(raw[index + 1]) else {
                throw typeError("bytea in hex format")
            }
            result.append(high << 4 | low)
            index += 2
        }
        return result
    }

    /// A `bytea` value; NULL is an error.
    public func requiredBytes() throws -> [UInt8] {
        guard let value = try bytes() else { throw nullError() }
        return value
    }

    private func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    private func checkExists() throws {
        if missing { throw PostgresError(kind: .decoding, message: "the result has no column \"\(column)\"") }
    }

    private func nullError() -> PostgresError {
        PostgresError(kind: .decoding, message: "column \"\(column)\" is NULL where a value was expected")
    }

    private func typeError(_ expected: String) -> PostgresError {
        PostgresError(kind: .decoding, message: "column \"\(column)\" does not hold \(expected)")
    }
}
