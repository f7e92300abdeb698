/// A value that cannot be tokenized. The message names the field, never the value.
public enum TokenError: PIIVaultReportableError, Equatable {
    /// The `ip` field is not an IPv4 or IPv6 address (in strict form: no leading zeros, no zone, no surrounding space).
    case invalidIP
    /// The `device_id` field is empty once surrounding whitespace is trimmed.
    case emptyDeviceID

    public var message: String {
        switch self {
        case .invalidIP: return "ip is not a valid IPv4 or IPv6 address"
        case .emptyDeviceID: return "device_id is empty"
        }
    }

    public var exitCode: PIIVaultExitCode { .dataError }
}

/// Sealing and opening failures. Three are kept apart on purpose, because they call for different actions: the wrong
/// vault key (use the right key file), a value moved to another row (the database was tampered with), a damaged value.
/// Messages name key ids and tokens (public), never key bytes or values.
public enum SealingError: PIIVaultReportableError, Equatable {
    /// The data key was sealed to another vault key than the one given.
    case wrongVaultKey(recorded: KeyID, given: KeyID)
    /// The sealed data key does not open with the right vault secret key: it was damaged.
    case dataKeyDamaged(keyID: KeyID)
    /// The bytes are too short to be a sealed value (nonce and tag are missing).
    case malformed
    /// The value does not open with the token (or message id) given as additional data. Use
    /// `DataKeyOpener.diagnose` to tell a moved value from a damaged one.
    case authenticationFailed
    /// The value opens, but under another row's token: it was moved from that row.
    case valueMoved(originalToken: String)
    /// The value opens under no known token: its bytes were changed.
    case valueDamaged
    /// This data key has sealed its share of values (2^24); start a new one.
    case dataKeyExhausted
    /// The data key bytes could not be sealed (should not happen).
    case sealFailed

    public var message: String {
        switch self {
        case let .wrongVaultKey(recorded, given):
            return "this data key was sealed to vault key \(recorded), but the vault key given is \(given); use the vault.key with key id \(recorded)"
        case let .dataKeyDamaged(keyID):
            return "a sealed data key for vault key \(keyID) does not open: it is damaged"
        case .malformed:
            return "a sealed value is too short to be valid: it is damaged"
        case .authenticationFailed:
            return "a sealed value does not open with its token: it was moved or damaged"
        case let .valueMoved(originalToken):
            return "a sealed value was moved: it belongs to token \(originalToken), not to the row it is stored in"
        case .valueDamaged:
            return "a sealed value does not open: it is damaged"
        case .dataKeyExhausted:
            return "this data key has sealed 2^24 values; start a new data key"
        case .sealFailed:
            return "sealing failed"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .wrongVaultKey: return .noPermission
        case .dataKeyExhausted, .sealFailed: return .failure
        default: return .dataError
        }
    }
}
