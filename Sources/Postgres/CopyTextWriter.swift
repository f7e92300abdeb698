/// Builds `COPY ... FROM STDIN` data in PostgreSQL's default text format: tab-separated columns, one row a line,
/// `\N` for NULL, backslash escapes for tab, newline, carriage return and backslash.
public struct CopyTextWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8] = []
    /// The number of rows finished with `endRow()`.
    public private(set) var rowCount = 0
    private var columnInRow = 0

    public init(reservingCapacity capacity: Int = 0) {
        bytes.reserveCapacity(capacity)
    }

    /// Appends a text value (nil is NULL).
    public mutating func append(_ value: String?) {
        separate()
        guard let value else { bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "N")]); return }
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            default: bytes.append(byte)
            }
        }
    }

    /// Appends an integer value (nil is NULL).
    public mutating func append(_ value: Int?) {
        guard let value else { append(nil as String?); return }
        separate()
        bytes.append(contentsOf: String(value).utf8)
    }

    /// Appends a `bytea` value in hex form (nil is NULL).
    public mutating func append(bytes value: [UInt8]?) {
        guard let value else { append(nil as String?); return }
        separate()
        // `\\x` in COPY text is the escaped backslash of bytea's `\x` hex prefix.
        bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\"), UInt8(ascii: "x")])
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        for byte in value {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0x0f)])
        }
    }

    /// Ends the current row.
    public mutating func endRow() {
        bytes.append(UInt8(ascii: "\n"))
        rowCount += 1
        columnInRow = 0
    }

    /// Empties the buffer, keeping its capacity.
    public mutating func reset() {
        bytes.removeAll(keepingCapacity: true)
        rowCount = 0
        columnInRow = 0
    }

    private mutating func separate() {
        if columnInRow > 0 { bytes.append(UInt8(ascii: "\t")) }
        columnInRow += 1
    }
}
