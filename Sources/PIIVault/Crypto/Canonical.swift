#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The two PII fields of a login event.
public enum PIIField: String, Sendable, CaseIterable {
    case ip
    case deviceID = "device_id"
}

/// Canonical forms, so that one address (or device) gives one token. Part of the key-and-format contract
/// (SECURITY.md, "Tokens"): changing a rule here changes tokens.
public enum Canonical {
    /// The canonical form of `value` for `field`.
    public static func canonicalize(_ value: String, as field: PIIField) throws -> String {
        switch field {
        case .ip: return try ip(value)
        case .deviceID: return try deviceID(value)
        }
    }

    /// `device_id`: surrounding whitespace (and newlines) trimmed, otherwise exactly as sent; empty is invalid.
    public static func deviceID(_ value: String) throws -> String {
        // Fast path: nothing to trim (the common case) keeps the original string and allocates nothing. An ASCII
        // byte at both ends is decided without the Unicode tables (White_Space in ASCII: U+0009-U+000D, U+0020).
        guard let firstByte = value.utf8.first, let lastByte = value.utf8.last else { throw TokenError.emptyDeviceID }
        func isASCIIOtherThanWhitespace(_ byte: UInt8) -> Bool { byte < 0x80 && byte != 0x20 && !(0x09...0x0D).contains(byte) }
        if isASCIIOtherThanWhitespace(firstByte) && isASCIIOtherThanWhitespace(lastByte) { return value }
        guard let first = value.unicodeScalars.first, let last = value.unicodeScalars.last else {
            throw TokenError.emptyDeviceID
        }
        if !first.properties.isWhitespace && !last.properties.isWhitespace { return value }
        let scalars = value.unicodeScalars
        guard let start = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let end = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { throw TokenError.emptyDeviceID }
        return String(scalars[start...end])
    }

    /// `ip`: IPv4 in dotted decimal (each octet 0-255 without leading zeros: `010` is ambiguous, octal to some
    /// parsers), IPv6 in RFC 5952 form (lowercase, no leading zeros in a group, the longest run of two or more zero
    /// groups compressed to `::`, the leftmost on a tie), and an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as
    /// its IPv4 address. Anything else (host names, zones such as `%eth0`, surrounding spaces, CIDR suffixes) is
    /// invalid.
    public static func ip(_ value: String) throws -> String {
        // Native strings expose their UTF-8 bytes directly; bridged ones are copied once.
        let result: String? =
            value.utf8.withContiguousStorageIfAvailable { ipBytes(UnsafeRawBufferPointer($0), original: value) }
            ?? Array(value.utf8).withUnsafeBytes { ipBytes($0, original: value) }
        guard let result else { throw TokenError.invalidIP }
        return result
    }

    private static func ipBytes(_ bytes: UnsafeRawBufferPointer, original: String) -> String? {
        // 45 characters is the longest textual IPv6 address (INET6_ADDRSTRLEN - 1).
        guard !bytes.isEmpty, bytes.count <= 45 else { return nil }
        var hasColon = false
        for byte in bytes {
            if byte == UInt8(ascii: ":") { hasColon = true }
            // Only hex digits, dots and colons can appear; this also keeps NUL bytes away from inet_pton.
            let ok = (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) || (byte >= 0x61 && byte <= 0x66)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: ":")
            if !ok { return nil }
        }
        if !hasColon {
            // A strictly parsed IPv4 address is already canonical: return the caller's string unchanged.
            return ipv4Octets(bytes) != nil ? original : nil
        }
        var address = in6_addr()
        let rc = withUnsafeMutableBytes(of: &address) { out -> Int32 in
            var text = [CChar](repeating: 0, count: bytes.count + 1)
            for (i, byte) in bytes.enumerated() { text[i] = CChar(bitPattern: byte) }
            return inet_pton(AF_INET6, text, out.baseAddress)
        }
        guard rc == 1 else { return nil }
        // inet_pton accepts leading zeros in an embedded IPv4 part on some C libraries; refuse them here too.
        if let lastColon = bytes.lastIndex(of: UInt8(ascii: ":")), bytes[(lastColon + 1)...].contains(UInt8(ascii: ".")) {
            let tail = UnsafeRawBufferPointer(rebasing: bytes[(lastColon + 1)...])
            guard ipv4Octets(tail) != nil else { return nil }
        }
        return withUnsafeBytes(of: &address) { formatIPv6(Array($0)) }
    }

    /// Strict dotted decimal: exactly four octets, 1-3 digits each, no leading zero, at most 255.
    static func parseIPv4(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        ipv4Octets(bytes).map { [$0.0, $0.1, $0.2, $0.3] }
    }

    /// `parseIPv4` without an array (every message's ip goes through it).
    private static func ipv4Octets(_ bytes: UnsafeRawBufferPointer) -> (UInt8, UInt8, UInt8, UInt8)? {
        var octets: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        var count = 0
        var value = 0, digits = 0, leadingZero = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                guard digits > 0, count < 3 else { return nil }
                switch count {
                case 0: octets.0 = UInt8(value)
                case 1: octets.1 = UInt8(value)
                default: octets.2 = UInt8(value)
                }
                count += 1
                value = 0; digits = 0; leadingZero = false
            } else if byte >= 0x30 && byte <= 0x39 {
                if leadingZero { return nil }
                if digits == 0 && byte == 0x30 { leadingZero = true }
                value = value * 10 + Int(byte - 0x30)
                digits += 1
                guard digits <= 3, value <= 255 else { return nil }
            } else {
                return nil
            }
        }
        guard digits > 0, count == 3 else { return nil }
        octets.3 = UInt8(value)
        return octets
    }

    /// RFC 5952 text for 16 address bytes; IPv4-mapped addresses become dotted decimal.
    static func formatIPv6(_ b: [UInt8]) -> String {
        if b[0..<10].allSatisfy({ $0 == 0 }) && b[10] == 0xff && b[11] == 0xff {
            return "\(b[12]).\(b[13]).\(b[14]).\(b[15])"
        }
        var groups = [Int](repeating: 0, count: 8)
        for i in 0..<8 { groups[i] = Int(b[2 * i]) << 8 | Int(b[2 * i + 1]) }
        // The longest run of zero groups, at least two long; strict `>` keeps the leftmost on a tie.
        var bestStart = -1, bestLength = 0, i = 0
        while i < 8 {
            if groups[i] == 0 {
                var j = i
                while j < 8 && groups[j] == 0 { j += 1 }
                if j - i > bestLength { bestStart = i; bestLength = j - i }
                i = j
            } else {
                i += 1
            }
        }
        if bestLength < 2 { bestStart = -1 }
        var out = ""
        i = 0
        while i < 8 {
            if i == bestStart {
                out += "::"
                i += bestLength
                continue
            }
            if !out.isEmpty && !out.hasSuffix(":") { out += ":" }
            out += String(groups[i], radix: 16)
            i += 1
        }
        return out
    }
}
