import Foundation

/// A login row ready for `user_logins`: tokens only, no plaintext PII.
struct PreparedLogin: Sendable {
    let messageID: String
    let userID: String
    let deviceType: String
    let ipToken: String
    let deviceToken: String
    let locale: String?
    let appVersion: Int?
    let appVersionText: String?
    let createDate: String
}

/// A sealed original for `vault.secrets`.
struct PreparedSecret: Sendable {
    let token: String
    let field: PIIField
    let sealed: [UInt8]
}

/// A message that goes to `vault.quarantine`, its body sealed.
struct PreparedQuarantine: Sendable {
    let messageID: String
    let reason: String
    let sealedBody: [UInt8]
}

/// One message's share of a batch, kept together so a failing batch can be split by message.
struct PreparedMessage: Sendable {
    enum Content: Sendable {
        case login(PreparedLogin, secrets: [PreparedSecret])
        case quarantine(PreparedQuarantine)
    }

    let source: SourceMessage
    var content: Content
}
