/// The ETL's fast path for the message almost every producer sends: one JSON object whose members are only the login
/// event's own fields, each a string of printable ASCII without escapes (or null). It reads the fields straight from
/// the body's bytes, with no JSON tree and no Unicode tables.
///
/// It accepts nothing the full parse (`StrictJSONParser` and the field rules) would refuse, and gives the same event:
/// anything else, valid or not (an unknown or repeated member, a number, an escape, a byte outside 0x20-0x7E, a missing,
/// empty or over-long field, an invalid date), returns nil and goes the full way, which accepts it or names the rule it
/// breaks. `LoginEventFastPathTests` compares both ways on the same bodies.
extension LoginEvent {
    /// The members the fast path knows; any other name sends the body the full way.
    private enum Member: Int {
        case userID, deviceType, ip, deviceID, locale, appVersion, createDate

        /// The member's JSON name, and the most characters its value may have (`parse`'s limits).
        var nameAndLimit: (StaticString, Int) {
            switch self {
            case .userID: return ("user_id", LoginEvent.maxUserIDLength)
            case .deviceType: return ("device_type", LoginEvent.maxDeviceTypeLength)
            case .ip: return ("ip", 100)
            case .deviceID: return ("device_id", LoginEvent.maxDeviceIDLength)
            case .locale: return ("locale", LoginEvent.maxLocaleLength)
            case .appVersion: return ("app_version", LoginEvent.maxAppVersionLength)
            case .createDate: return ("create_date", 10)
            }
        }

        /// How many members there are.
        static let count = 7

        /// The member named by `bytes`, if it is one of the event's.
        init?(name bytes: UnsafeBufferPointer<UInt8>) {
            let candidates: [Member]
            switch bytes.count {
            case 2: candidates = [.ip]
            case 6: candidates = [.locale]
            case 7: candidates = [.userID]
            case 9: candidates = [.deviceID]
            case 11: candidates = [.deviceType, .appVersion, .createDate]
            default: return nil
            }
            for member in candidates {
                let name = member.nameAndLimit.0.utf8Start
                if (0..<bytes.count).allSatisfy({ name[$0] == bytes[$0] }) {
                    self = member
                    return
                }
            }
            return nil
        }
    }

    /// The event, when `body` has the common shape; nil when it must go the full way (`parse(body:)`).
    static func parseCommonShape(_ body: UnsafeBufferPointer<UInt8>) -> LoginEvent? {
        // Each member's value as (offset, length) in `body`: offset -1 while absent, -2 for null. On the stack.
        withUnsafeTemporaryAllocation(of: (offset: Int, length: Int).self, capacity: Member.count) { slots in
            slots.initialize(repeating: (-1, 0))
            guard parseMembers(body, into: slots) else { return nil }
            func text(_ member: Member) -> String? {
                let slot = slots[member.rawValue]
                guard slot.offset >= 0 else { return nil }
                return String(decoding: UnsafeBufferPointer(rebasing: body[slot.offset..<slot.offset + slot.length]),
                              as: UTF8.self)
            }
            // Required fields: present, not null, not empty.
            guard let userID = text(.userID), !userID.isEmpty, let deviceType = text(.deviceType), !deviceType.isEmpty,
                  let ip = text(.ip), !ip.isEmpty, let deviceID = text(.deviceID), !deviceID.isEmpty
            else { return nil }
            let createDate = text(.createDate)
            if let createDate, !isValidDate(createDate) { return nil }
            let appVersionText = text(.appVersion)
            return LoginEvent(
                userID: userID, deviceType: deviceType, ip: ip, deviceID: deviceID, locale: text(.locale),
                appVersionText: appVersionText, appVersion: appVersionText.flatMap(appVersionNumber),
                createDate: createDate)
        }
    }

    /// Reads the members of a common-shape body into `slots`; false when the body has another shape.
    private static func parseMembers(
        _ body: UnsafeBufferPointer<UInt8>, into slots: UnsafeMutableBufferPointer<(offset: Int, length: Int)>
    ) -> Bool {
        guard let base = body.baseAddress else { return false }
        let end = body.count
        var index = 0
        func skipWhitespace() {
            while index < end {
                switch base[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }
        /// A string's length from after its opening quote to the closing one (which it skips); nil for an escape,
        /// a byte outside printable ASCII, or no closing quote (the full way decides those).
        func plainString() -> Int? {
            let start = index
            while index < end {
                let byte = base[index]
                if byte == UInt8(ascii: "\"") {
                    index += 1
                    return index - 1 - start
                }
                guard byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") else { return nil }
                index += 1
            }
            return nil
        }

        skipWhitespace()
        guard index < end, base[index] == UInt8(ascii: "{") else { return false }
        index += 1
        while true {
            skipWhitespace()
            guard index < end, base[index] == UInt8(ascii: "\"") else { return false }
            index += 1
            let nameStart = index
            guard let nameLength = plainString(),
                  let member = Member(name: UnsafeBufferPointer(rebasing: body[nameStart..<nameStart + nameLength])),
                  slots[member.rawValue].offset == -1
            else { return false }
            skipWhitespace()
            guard index < end, base[index] == UInt8(ascii: ":") else { return false }
            index += 1
            skipWhitespace()
            guard index < end else { return false }
            if base[index] == UInt8(ascii: "\"") {
                index += 1
                let start = index
                guard let length = plainString(), length <= member.nameAndLimit.1 else { return false }
                slots[member.rawValue] = (start, length)
            } else if index + 4 <= end, base[index] == UInt8(ascii: "n"), base[index + 1] == UInt8(ascii: "u"),
                      base[index + 2] == UInt8(ascii: "l"), base[index + 3] == UInt8(ascii: "l") {
                index += 4
                slots[member.rawValue] = (-2, 0)
            } else {
                return false
            }
            skipWhitespace()
            guard index < end else { return false }
            if base[index] == UInt8(ascii: ",") { index += 1; continue }
            guard base[index] == UInt8(ascii: "}") else { return false }
            index += 1
            break
        }
        skipWhitespace()
        return index == end
    }
}
