import Foundation

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
        guard var value else { appendNull(); return }
        value.withUTF8 { append(utf8: $0) }
    }

    /// Appends a text value given as UTF-8 bytes.
    public mutating func append(utf8 value: UnsafeBufferPointer<UInt8>) {
        separate()
        // Most values need no escape: looked for with memchr (a byte-by-byte scan cost more than the rest of the
        // row), copied whole; byte by byte only from the first byte that needs one.
        guard let base = value.baseAddress,
              memchr(base, Int32(UInt8(ascii: "\\")), value.count) != nil
                || memchr(base, Int32(UInt8(ascii: "\t")), value.count) != nil
                || memchr(base, Int32(UInt8(ascii: "\n")), value.count) != nil
                || memchr(base, Int32(UInt8(ascii: "\r")), value.count) != nil,
              let first = value.firstIndex(where: Self.needsEscape)
        else {
            bytes.append(contentsOf: value)
            return
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: value[..<first]))
        for byte in value[first...] {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "\\"))
            case UInt8(ascii: "\t"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "t"))
            case UInt8(ascii: "\n"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): bytes.append(UInt8(ascii: "\\")); bytes.append(UInt8(ascii: "r"))
            default: bytes.append(byte)
            }
        }
    }

    @inline(__always)
    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "\\") || byte == UInt8(ascii: "\t") || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r")
    }

    /// Appends an integer value (nil is NULL).
    public mutating func append(_ value: Int?) {
        guard let value else { appendNull(); return }
        separate()
        // Decimal digits written backwards into a small stack buffer (no String per number).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var magnitude = value.magnitude
            var start = 20
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") &+ UInt8(magnitude % 10)
                magnitude /= 10
            } while magnitude > 0
            if value < 0 { bytes.append(UInt8(ascii: "-")) }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Appends a `bytea` value in hex form (nil is NULL).
    public mutating func append(bytes value: [UInt8]?) {
        guard let value else { appendNull(); return }
        separate()
        // `\\x` in COPY text is the escaped backslash of bytea's `\x` hex prefix.
        bytes.append(UInt8(ascii: "\\"))
        bytes.append(UInt8(ascii: "\\"))
        bytes.append(UInt8(ascii: "x"))
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 2 * value.count))
        bytes.withUnsafeMutableBufferPointer { out in
            var index = start
            for byte in value {
                out[index] = Self.hexDigit(byte >> 4)
                out[index + 1] = Self.hexDigit(byte & 0x0f)
                index += 2
            }
        }
    }

    @inline(__always)
    private static func hexDigit(_ nibble: UInt8) -> UInt8 {
        nibble < 10 ? 0x30 &+ nibble : 0x57 &+ nibble  // '0'..'9', 'a'..'f'
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

    private mutating func appendNull() {
        separate()
        bytes.append(UInt8(ascii: "\\"))
        bytes.append(UInt8(ascii: "N"))
    }

    private mutating func separate() {
        if columnInRow > 0 { bytes.append(UInt8(ascii: "\t")) }
        columnInRow += 1
    }
}
