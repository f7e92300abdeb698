/// A login event as sent to the queue, validated against the message rules (docs/ARCHITECTURE.md, "The ETL") but not yet tokenized.
///
/// `ip` and `deviceID` are plaintext PII: they live only in memory, long enough to be tokenized and sealed.
public struct LoginEvent: Sendable, Equatable {
    public var userID: String
    public var deviceType: String
    public var ip: String
    public var deviceID: String
    public var locale: String?
    /// `app_version` exactly as sent.
    public var appVersionText: String?
    /// `app_version` as `major*1_000_000 + minor*1_000 + patch`, or nil when it does not fit.
    public var appVersion: Int?
    /// The message's own `create_date` (`YYYY-MM-DD`), if it has one.
    public var createDate: String?

    /// Field limits of `user_logins` (characters, as `varchar(n)` counts them).
    public static let maxUserIDLength = 128
    public static let maxDeviceTypeLength = 32
    public static let maxLocaleLength = 32
    /// Limits on fields stored only as text or sealed, to keep one message from bloating the vault.
    public static let maxDeviceIDLength = 256
    public static let maxAppVersionLength = 64

    /// Parses and validates a message body. The rejection's reason names fields and rules, never values.
    public static func parse(body: [UInt8]) throws(MessageRejection) -> LoginEvent {
        // The common shape is read straight from the bytes (LoginEventFastPath.swift); anything else, valid or not,
        // goes the full way, which gives the same event or names the rule the body breaks.
        if let event = body.withUnsafeBufferPointer({ parseCommonShape($0) }) { return event }
        return try parseFully(body: body)
    }

    /// The full parse: strict JSON into a tree, then the field rules.
    static func parseFully(body: [UInt8]) throws(MessageRejection) -> LoginEvent {
        if body.isEmpty { throw MessageRejection("empty body") }
        let value: JSONValue
        do {
            value = try StrictJSONParser.parse(body)
        } catch {
            throw MessageRejection("not valid JSON: \(error.reason) at byte \(error.offset)")
        }
        guard case .object(let members) = value else {
            throw MessageRejection("not a JSON object (got \(value.typeName))")
        }
        let fields = Fields(members)

        let missing = ["user_id", "device_type", "ip", "device_id"].filter { fields[$0] == nil }
        if !missing.isEmpty { throw MessageRejection("missing required fields: \(missing.joined(separator: ", "))") }

        let userID = try requiredString(fields, "user_id", maxLength: maxUserIDLength, storedInClear: true)
        let deviceType = try requiredString(fields, "device_type", maxLength: maxDeviceTypeLength, storedInClear: true)
        let ip = try requiredString(fields, "ip", maxLength: 100, storedInClear: false)
        let deviceID = try requiredString(fields, "device_id", maxLength: maxDeviceIDLength, storedInClear: false)
        let locale = try optionalString(fields, "locale", maxLength: maxLocaleLength)

        var appVersionText: String?
        switch fields["app_version"] {
        case nil, .null?: appVersionText = nil
        case .string(let text)?: appVersionText = text
        case .number(let text)?: appVersionText = text  // some producers send 2 or 2.3 as numbers
        case let other?: throw MessageRejection("field app_version: expected a string, got \(other.typeName)")
        }
        if let text = appVersionText {
            try checkText(text, field: "app_version", maxLength: maxAppVersionLength, storedInClear: true)
        }

        let createDate = try optionalString(fields, "create_date", maxLength: 10)
        if let createDate, !isValidDate(createDate) {
            throw MessageRejection("field create_date: not a valid YYYY-MM-DD date")
        }

        return LoginEvent(
            userID: userID, deviceType: deviceType, ip: ip, deviceID: deviceID, locale: locale,
            appVersionText: appVersionText, appVersion: appVersionText.flatMap(appVersionNumber),
            createDate: createDate)
    }

    /// `"2.3.0"` -> 2_003_000, `"0.96"` -> 96_000, `"2"` -> 2_000_000; nil for a non-numeric part, a part of 1000
    /// or more, or more than three parts.
    public static func appVersionNumber(_ text: String) -> Int? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard (1...3).contains(parts.count) else { return nil }
        var result = 0
        for (position, part) in parts.enumerated() {
            guard !part.isEmpty, part.utf8.count <= 3, part.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                  let number = Int(part), number < 1000 else { return nil }
            result += number * [1_000_000, 1_000, 1][position]
        }
        return result
    }

    /// True for a real calendar date written `YYYY-MM-DD` (years 0001-9999).
    public static func isValidDate(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return false }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard bytes[index] >= 0x30 && bytes[index] <= 0x39 else { return nil }
                value = value * 10 + Int(bytes[index] - 0x30)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              year >= 1, (1...12).contains(month), day >= 1 else { return false }
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return day <= days
    }

    private static func requiredString(_ fields: Fields, _ name: String, maxLength: Int, storedInClear: Bool)
        throws(MessageRejection) -> String
    {
        guard case .string(let text)? = fields[name] else {
            throw MessageRejection("field \(name): expected a string, got \(fields[name]?.typeName ?? "nothing")")
        }
        try checkText(text, field: name, maxLength: maxLength, storedInClear: storedInClear)
        if text.isEmpty { throw MessageRejection("field \(name): empty") }
        return text
    }

    private static func optionalString(_ fields: Fields, _ name: String, maxLength: Int)
        throws(MessageRejection) -> String?
    {
        switch fields[name] {
        case nil, .null?: return nil
        case .string(let text)?:
            try checkText(text, field: name, maxLength: maxLength, storedInClear: true)
            return text
        case let other?: throw MessageRejection("field \(name): expected a string or null, got \(other.typeName)")
        }
    }

    /// Length and characters. A field stored in clear (user_id, device_type, locale, app_version) reaches analysts'
    /// terminals through psql and exports: control characters (C0, DEL, C1) and format characters (Unicode category
    /// Cf: the bidirectional ones reorder what a terminal shows, the others, such as U+200B, are invisible, so that
    /// `alice` and `alice` followed by U+200B look alike but are different users) are refused there, naming the code
    /// point. Sealed fields (ip, device_id)
    /// only refuse NUL; `unmask` escapes what it prints.
    private static func checkText(_ text: String, field: String, maxLength: Int, storedInClear: Bool)
        throws(MessageRejection)
    {
        var count = 0
        for scalar in text.unicodeScalars {
            if scalar.value == 0 { throw MessageRejection("field \(field): contains a NUL character") }
            if storedInClear && isRefusedInClear(scalar) {
                let hex = String(scalar.value, radix: 16, uppercase: true)
                let codePoint = "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
                throw MessageRejection("field \(field): contains \(refusedKind(scalar)) \(codePoint), not allowed in a field stored in clear")
            }
            count += 1
        }
        if count > maxLength { throw MessageRejection("field \(field): longer than \(maxLength) characters") }
    }
}

/// C0 controls, DEL, C1 controls, and format characters (category Cf, the bidirectional ones among them). ASCII
/// letters are decided without the Unicode tables (the common case on the ETL's path).
private func isRefusedInClear(_ scalar: Unicode.Scalar) -> Bool {
    let value = scalar.value
    if value < 0x7F { return value < 0x20 }
    return value <= 0x9F || scalar.properties.generalCategory == .format
}

/// How a refused character is named in the quarantine reason.
private func refusedKind(_ scalar: Unicode.Scalar) -> String {
    if isBidiControl(scalar.value) { return "bidirectional formatting character" }
    return scalar.properties.generalCategory == .format ? "invisible format character" : "control character"
}

/// U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069: they reorder or hide text on a terminal.
private func isBidiControl(_ value: UInt32) -> Bool {
    value == 0x061C || value == 0x200E || value == 0x200F || (0x202A...0x202E).contains(value)
        || (0x2066...0x2069).contains(value)
}

/// Why a message goes to quarantine. The reason names fields and rules, never the values sent.
public struct MessageRejection: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// The members of a parsed object, by name: a scan for the handful a login event has, a dictionary for more.
private struct Fields {
    private let members: [(String, JSONValue)]
    private let byName: [String: JSONValue]?

    init(_ members: [(String, JSONValue)]) {
        self.members = members
        byName = members.count > 16 ? Dictionary(members, uniquingKeysWith: { first, _ in first }) : nil
    }

    subscript(name: String) -> JSONValue? {
        if let byName { return byName[name] }
        return members.first { $0.0 == name }?.1
    }
}
