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
    /// The keyed hash of the user id (`TombstoneHasher`): the tombstone a `forget` leaves.
    var subjectHash: String = ""
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
        /// A login of a forgotten user (its subject hash is in `vault.tombstones`): not loaded, deleted from the source.
        case suppressed
    }

    let source: SourceMessage
    var content: Content
}
