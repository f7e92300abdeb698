import Foundation

extension OutputFormat {
    /// What an unmask printed: its rows in this format, or "" when there are none.
    public func render(_ report: UnmaskReport) -> String {
        switch report.rows {
        case .tokens(let tokens): return render(tokens)
        case .logins(let logins): return render(logins)
        case .message(let message): return render(message)
        case nil: return ""
        }
    }

    /// `unmask --token`: token, field and original value, one per token found.
    public func render(_ tokens: UnmaskedTokens) -> String {
        let header = ["token", "field", "value"]
        let rows = tokens.values.map { [$0.token, $0.field, $0.value] }
        switch self {
        case .table: return TextOutput.table(header: header, rows: rows)
        case .csv: return TextOutput.csv(header: header, rows: rows)
        case .json: return TextOutput.json(rows.map { Dictionary(uniqueKeysWithValues: zip(header, $0)) })
        }
    }

    /// `unmask --user-id`: each login with the original ip and device_id beside its tokens.
    public func render(_ logins: [UnmaskedLogin]) -> String {
        let header = ["user_id", "create_date", "device_type", "ip", "device_id", "locale", "app_version",
                      "app_version_text", "masked_ip", "masked_device_id", "message_id"]
        func fields(_ login: UnmaskedLogin) -> [String?] {
            [login.userID, login.createDate, login.deviceType, login.ip, login.deviceID, login.locale,
             login.appVersion.map(String.init), login.appVersionText, login.maskedIP, login.maskedDeviceID,
             login.messageID]
        }
        switch self {
        case .json:
            return TextOutput.json(logins.map { login -> [String: Any] in
                var object: [String: Any] = [:]
                for (name, value) in zip(header, fields(login)) { object[name] = value ?? NSNull() }
                object["app_version"] = login.appVersion ?? NSNull()
                if login.ipWithheld { object["ip_withheld"] = true }
                if login.deviceIDWithheld { object["device_id_withheld"] = true }
                return object
            })
        case .table, .csv:
            // In a table, a token without a sealed value says so; in CSV it is an empty field.
            let missing = self == .table ? "(not in vault)" : ""
            let withheld = self == .table ? "(withheld)" : ""
            let rows = logins.map { login -> [String] in
                var cells = fields(login).map { $0 ?? "" }
                if login.maskedIP != nil && login.ip == nil { cells[3] = login.ipWithheld ? withheld : missing }
                if login.maskedDeviceID != nil && login.deviceID == nil {
                    cells[4] = login.deviceIDWithheld ? withheld : missing
                }
                return cells
            }
            return self == .table ? TextOutput.table(header: header, rows: rows) : TextOutput.csv(header: header, rows: rows)
        }
    }

    /// `unmask --quarantined`: the message's id, time and reason, and its body exactly as received. JSON and CSV
    /// carry the body in base64 too, since a quarantined body need not be valid UTF-8.
    public func render(_ message: UnmaskedMessage) -> String {
        let bodyText = String(decoding: message.body, as: UTF8.self)
        let bodyBase64 = Data(message.body).base64EncodedString()
        switch self {
        case .table:
            return TextOutput.table(header: ["message_id", "received_at", "reason"],
                                    rows: [[message.messageID, message.receivedAt, message.reason]])
                + "body (\(message.body.count) bytes):\n" + TextOutput.escapingControlCharacters(bodyText) + "\n"
        case .csv:
            return TextOutput.csv(header: ["message_id", "received_at", "reason", "body", "body_base64"],
                                  rows: [[message.messageID, message.receivedAt, message.reason, bodyText, bodyBase64]])
        case .json:
            let isUTF8 = String(validating: message.body, as: UTF8.self) != nil
            return TextOutput.json([
                "message_id": message.messageID, "received_at": message.receivedAt, "reason": message.reason,
                "body": isUTF8 ? bodyText : NSNull(), "body_base64": bodyBase64,
            ] as [String: Any])
        }
    }
}
