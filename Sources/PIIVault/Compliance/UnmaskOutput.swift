import Foundation

extension UnmaskReport.Rows: Renderable {
    private var rows: any Renderable {
        switch self {
        case .tokens(let tokens): return tokens
        case .logins(let logins): return UnmaskedLogins(logins)
        case .message(let message): return message
        }
    }

    public var tableRows: TextRows { rows.tableRows }
    public var csvRows: TextRows { rows.csvRows }
    public var jsonValue: Any { rows.jsonValue }
    public var tableText: String { rows.tableText }
}

/// `unmask --token`: token, field and original value, one per token found.
extension UnmaskedTokens: Renderable {
    public var tableRows: TextRows {
        TextRows(header: ["token", "field", "value"], rows: values.map { [$0.token, $0.field, $0.value] })
    }
}

/// `unmask --user-id`: each login with the original ip and device_id beside its tokens.
public struct UnmaskedLogins: Renderable, Sendable {
    public let logins: [UnmaskedLogin]

    public init(_ logins: [UnmaskedLogin]) { self.logins = logins }

    private static let header = ["user_id", "create_date", "device_type", "ip", "device_id", "locale", "app_version",
                                 "app_version_text", "masked_ip", "masked_device_id", "message_id"]

    private static func fields(_ login: UnmaskedLogin) -> [String?] {
        [login.userID, login.createDate, login.deviceType, login.ip, login.deviceID, login.locale,
         login.appVersion.map(String.init), login.appVersionText, login.maskedIP, login.maskedDeviceID,
         login.messageID]
    }

    /// In a table, a token without a sealed value says so; in CSV it is an empty field.
    private func rows(missing: String, withheld: String) -> TextRows {
        TextRows(header: Self.header, rows: logins.map { login -> [String] in
            var cells = Self.fields(login).map { $0 ?? "" }
            if login.maskedIP != nil && login.ip == nil { cells[3] = login.ipWithheld ? withheld : missing }
            if login.maskedDeviceID != nil && login.deviceID == nil {
                cells[4] = login.deviceIDWithheld ? withheld : missing
            }
            return cells
        })
    }

    public var tableRows: TextRows { rows(missing: "(not in vault)", withheld: "(withheld)") }
    public var csvRows: TextRows { rows(missing: "", withheld: "") }

    public var jsonValue: Any {
        logins.map { login -> [String: Any] in
            var object: [String: Any] = [:]
            for (name, value) in zip(Self.header, Self.fields(login)) { object[name] = value ?? NSNull() }
            object["app_version"] = login.appVersion ?? NSNull()
            if login.ipWithheld { object["ip_withheld"] = true }
            if login.deviceIDWithheld { object["device_id_withheld"] = true }
            return object
        }
    }
}

/// `unmask --quarantined`: the message's id, time and reason, and its body exactly as received. JSON and CSV carry
/// the body in base64 too, since a quarantined body need not be valid UTF-8.
extension UnmaskedMessage: Renderable {
    private var bodyText: String { String(decoding: body, as: UTF8.self) }
    private var bodyBase64: String { Data(body).base64EncodedString() }

    public var tableRows: TextRows {
        TextRows(header: ["message_id", "received_at", "reason"], rows: [[messageID, receivedAt, reason]])
    }

    public var tableText: String {
        TextOutput.table(header: tableRows.header, rows: tableRows.rows)
            + "body (\(body.count) bytes):\n" + TextOutput.escapingControlCharacters(bodyText) + "\n"
    }

    public var csvRows: TextRows {
        TextRows(header: ["message_id", "received_at", "reason", "body", "body_base64"],
                 rows: [[messageID, receivedAt, reason, bodyText, bodyBase64]])
    }

    public var jsonValue: Any {
        let isUTF8 = String(validating: body, as: UTF8.self) != nil
        return [
            "message_id": messageID, "received_at": receivedAt, "reason": reason,
            "body": isUTF8 ? bodyText : NSNull(), "body_base64": bodyBase64,
        ] as [String: Any]
    }
}

extension OutputFormat {
    /// `unmask --user-id`'s logins in this format.
    public func render(_ logins: [UnmaskedLogin]) -> String { render(UnmaskedLogins(logins)) }
}
