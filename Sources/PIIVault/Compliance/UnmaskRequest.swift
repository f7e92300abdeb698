/// One `unmask` call: what to recover, why, and the row cap.
public struct UnmaskRequest: Sendable, Equatable {
    /// What to recover.
    public enum Target: Sendable, Equatable {
        /// The original values of these tokens (duplicates asked once, in the order first given).
        case tokens([Token])
        /// Every login of this user id, with its original ip and device_id.
        case userID(String)
        /// The body of this quarantined message.
        case quarantined(messageID: String)
    }

    public let target: Target
    /// Why this access is needed (case or request number); logged. Required.
    public let reason: String
    /// More rows than this are refused (and the refusal logged). Not used for a quarantined message (one row).
    public let maxRows: Int

    public init(_ target: Target, reason: String, maxRows: Int = 100) {
        self.target = target
        self.reason = reason
        self.maxRows = maxRows
    }
}

/// What one unmask gave: the rows to print, the entry that logged the access, and what fell short.
public struct UnmaskReport: Sendable {
    /// What was recovered.
    public enum Rows: Sendable, Equatable {
        case tokens(UnmaskedTokens)
        case logins([UnmaskedLogin])
        case message(UnmaskedMessage)
    }

    /// nil when there is nothing to print (no such user or message, no token known).
    public let rows: Rows?
    /// The access-log entry of this access.
    public let logSeq: Int
    /// Its logged outcome.
    public let outcome: String
    /// What was asked for but not printed, to report after the rows (and exit with its code); nil when everything
    /// was printed.
    public let shortfall: UnmaskShortfall?
    /// Token versions whose values were printed without the check against their tokens: no token key of that
    /// version was given. Empty when every value was checked (or checks were turned off).
    public var unverifiedTokenVersions: [Int] = []
}

/// Why part (or all) of an unmask was not printed although the access went through. Decided by the core, reported
/// by the command line after the rows it did print.
public enum UnmaskShortfall: PIIVaultReportableError, Equatable {
    /// Tokens the vault does not hold.
    case unknownTokens([String], asked: Int, logSeq: Int)
    /// No logins for the user id.
    case noLogins(userID: String, logSeq: Int)
    /// No quarantined message with that id.
    case noQuarantinedMessage(messageID: String, logSeq: Int)
    /// Values withheld row by row: `forged` opened but are not the values of their tokens (HMAC under the token key
    /// differs: planted by someone who could write to the vault); `otherKey` are sealed to another vault key than
    /// the key file's (token and that key id). Logged as refusals under `refusalSeq`.
    /// `otherTokenKey` opened but do not match their tokens because the token key is not the one that made them
    /// (the vault records which key made each version): not forged.
    case withheld(forged: [String], otherKey: [OtherKeyRow], otherTokenKey: [OtherTokenKeyRow], refusalSeq: Int)

    /// A token whose value is sealed to another vault key.
    public struct OtherKeyRow: Sendable, Equatable {
        public let token: String
        public let keyID: String
    }

    /// A token whose value opens but was tokenized under another token key of its version than the one given.
    public struct OtherTokenKeyRow: Sendable, Equatable {
        public let token: String
        /// The key id of the `--token-key` given for the token's version.
        public let givenKeyID: String
        /// The key id the vault accepts for that version, when it is not the one given.
        public let acceptedKeyID: String?
        /// Other key ids earlier runs used for that version (before the vault recorded token keys).
        public let unacceptedKeyIDs: [String]
    }

    public var message: String {
        switch self {
        case let .unknownTokens(unknown, asked, seq):
            return "\(unknown.count) of \(asked) tokens are not in the vault: \(unknown.joined(separator: " ")); check them (a value that was never loaded has no token) (access logged as entry \(seq))"
        case let .noLogins(userID, seq):
            return "no logins for user id \(userID) (access logged as entry \(seq))"
        case let .noQuarantinedMessage(messageID, seq):
            return "no quarantined message with id \(messageID) (access logged as entry \(seq))"
        case let .withheld(forged, otherKey, otherTokenKey, seq):
            var parts: [String] = []
            let wrongKey = otherTokenKey.filter { $0.acceptedKeyID != nil }
            if let first = wrongKey.first, let accepted = first.acceptedKeyID {
                parts.append("\(wrongKey.count) values do not match their tokens under --token-key (key id \(first.givenKeyID)), but this vault's tokens of their version were made with token key \(accepted): \(wrongKey.map(\.token).joined(separator: " ")); they are not forged, give that token key")
            }
            let unknownKey = otherTokenKey.filter { $0.acceptedKeyID == nil }
            if let first = unknownKey.first {
                parts.append("\(unknownKey.count) values do not match their tokens under the token key this vault accepts (\(first.givenKeyID)), and earlier runs tokenized with another key of the same version (\(first.unacceptedKeyIDs.joined(separator: ", "))), which this vault does not know: \(unknownKey.map(\.token).joined(separator: " ")); they are probably not forged but loaded with the wrong token key, so their tokens join nothing: erase those users with forget and load their messages again")
            }
            if !forged.isEmpty {
                parts.append("\(forged.count) values are forged (they are not the values of their tokens under --token-key): \(forged.joined(separator: " ")); the vault was written by someone who should not; investigate and restore it from a backup")
            }
            if !otherKey.isEmpty {
                let keys = Set(otherKey.map(\.keyID)).sorted().joined(separator: ", ")
                parts.append("\(otherKey.count) values are sealed to another vault key (\(keys)): \(otherKey.map(\.token).joined(separator: " ")); unmask them with that vault.key")
            }
            return parts.joined(separator: "; ") + " (not printed; refusal logged as entry \(seq))"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .unknownTokens, .noLogins, .noQuarantinedMessage: return .failure
        case let .withheld(forged, _, otherTokenKey, _):
            if !forged.isEmpty || otherTokenKey.contains(where: { $0.acceptedKeyID == nil }) { return .dataError }
            return .noPermission
        }
    }
}
