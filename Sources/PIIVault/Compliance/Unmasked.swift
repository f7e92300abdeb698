/// One original value recovered by `unmask --token`.
public struct UnmaskedValue: Sendable, Equatable {
    public let token: String
    /// `ip` or `device_id`.
    public let field: String
    /// The canonical original value.
    public let value: String

    public init(token: String, field: String, value: String) {
        self.token = token
        self.field = field
        self.value = value
    }
}

/// What `unmask --token` recovered, and which of the tokens asked for the vault does not hold.
public struct UnmaskedTokens: Sendable, Equatable {
    /// In the order the tokens were asked for.
    public let values: [UnmaskedValue]
    /// Tokens asked for that have no sealed value (mistyped, or never loaded).
    public let unknownTokens: [String]
}

/// One login of a user with the originals beside the tokens (`unmask --user-id`).
public struct UnmaskedLogin: Sendable, Equatable {
    public let userID: String
    public let deviceType: String?
    public let maskedIP: String?
    /// nil when the token has no sealed value (a row adopted from the seed table, for instance) or the value was
    /// withheld.
    public let ip: String?
    /// The value was withheld (forged, or sealed to another vault key; the report says which).
    public let ipWithheld: Bool
    public let maskedDeviceID: String?
    /// nil when the token has no sealed value or the value was withheld.
    public let deviceID: String?
    /// The value was withheld (forged, or sealed to another vault key).
    public let deviceIDWithheld: Bool
    public let locale: String?
    public let appVersion: Int?
    public let appVersionText: String?
    /// `YYYY-MM-DD`.
    public let createDate: String?
    public let messageID: String?

    init(userID: String, deviceType: String?, maskedIP: String?, ip: String?, ipWithheld: Bool = false,
         maskedDeviceID: String?, deviceID: String?, deviceIDWithheld: Bool = false, locale: String?,
         appVersion: Int?, appVersionText: String?, createDate: String?, messageID: String?) {
        self.userID = userID
        self.deviceType = deviceType
        self.maskedIP = maskedIP
        self.ip = ip
        self.ipWithheld = ipWithheld
        self.maskedDeviceID = maskedDeviceID
        self.deviceID = deviceID
        self.deviceIDWithheld = deviceIDWithheld
        self.locale = locale
        self.appVersion = appVersion
        self.appVersionText = appVersionText
        self.createDate = createDate
        self.messageID = messageID
    }
}

/// A quarantined message recovered by `unmask --quarantined`: its body exactly as it was received.
public struct UnmaskedMessage: Sendable, Equatable {
    public let messageID: String
    /// As Postgres prints a `timestamptz`.
    public let receivedAt: String
    /// Why it was quarantined (never contains PII).
    public let reason: String
    public let body: [UInt8]
}

/// What one logged access gave. An `Unmasked` exists only once its access-log entry is committed.
public struct Unmasked<Rows: Sendable>: Sendable {
    public let rows: Rows
    /// The sequence number of the access-log entry that records this access.
    public let logSeq: Int
    /// The logged outcome: `ok`, `unknown tokens: ...` or `not found: ...`.
    public let outcome: String
}
