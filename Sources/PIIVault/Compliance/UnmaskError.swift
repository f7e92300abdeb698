/// Why `unmask` printed nothing. Each case that reached the database names the access-log entry that records it;
/// messages name tokens, key ids and entry numbers, never a value.
public enum UnmaskError: PIIVaultReportableError, Equatable {
    /// `--reason` is missing or blank.
    case reasonRequired
    /// More rows than `--max-rows` would be returned; the refusal was logged.
    case overRowCap(outcome: String, logSeq: Int)
    /// The login is not a member of `piivault_compliance`. `logSeq` is nil when even the refusal could not be logged
    /// (a login in no piivault role).
    case notPermitted(logSeq: Int?)
    /// A data key was sealed to another vault key than the key file's.
    case wrongVaultKey(recorded: String, given: KeyID, logSeq: Int)
    /// A sealed data key does not open with the right vault key.
    case dataKeyDamaged(keyID: String, logSeq: Int)
    /// The value stored for `token` opens only under `originalToken`: the database was tampered with.
    case valueMoved(token: String, originalToken: String, logSeq: Int)
    /// The value stored for `token` (or the body of a quarantined message) does not open at all.
    case valueDamaged(subject: String, logSeq: Int)

    public var message: String {
        switch self {
        case .reasonRequired:
            return "a reason is required for every access to sealed values; pass --reason with the case or request number"
        case let .overRowCap(outcome, seq):
            return "the vault \(outcome) (access-log entry \(seq)); if the request justifies it, raise --max-rows"
        case .notPermitted(let seq):
            let logged = seq.map { "the attempt is logged as access-log entry \($0)" } ?? "the attempt could not be logged"
            return "this database login may not unmask, look up, forget or delete by retention: it is not a member of piivault_compliance (\(logged)); ask the database owner to GRANT piivault_compliance TO your login"
        case let .wrongVaultKey(recorded, given, seq):
            return "the values were sealed to vault key \(recorded), but --key-file holds vault key \(given); use the vault.key with key id \(recorded) (refusal logged as access-log entry \(seq))"
        case let .dataKeyDamaged(keyID, seq):
            return "a sealed data key for vault key \(keyID) does not open: the vault is damaged; restore it from a backup (logged as access-log entry \(seq))"
        case let .valueMoved(token, original, seq):
            return "the value stored for token \(token) belongs to token \(original): it was moved between rows, so the vault was tampered with; nothing printed (logged as access-log entry \(seq))"
        case let .valueDamaged(subject, seq):
            return "the sealed value for \(subject) does not open: it is damaged; restore the vault from a backup (logged as access-log entry \(seq))"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .reasonRequired: return .usage
        case .overRowCap: return .failure
        case .notPermitted, .wrongVaultKey: return .noPermission
        case .dataKeyDamaged, .valueMoved, .valueDamaged: return .dataError
        }
    }

    /// The outcome written to the access log for a refusal the client decided (after `refused: `).
    var loggedOutcome: String? {
        switch self {
        case let .wrongVaultKey(recorded, given, _):
            return "vault key mismatch (sealed to \(recorded), key file is \(given))"
        case let .dataKeyDamaged(keyID, _):
            return "data key damaged (vault key \(keyID))"
        case let .valueMoved(token, original, _):
            return "value moved (\(token) holds the value of \(original))"
        case let .valueDamaged(subject, _):
            return "value damaged (\(subject))"
        case .reasonRequired, .overRowCap, .notPermitted:
            return nil
        }
    }

    /// The same error, naming the entry that logged it.
    func logged(as seq: Int) -> UnmaskError {
        switch self {
        case let .wrongVaultKey(recorded, given, _): return .wrongVaultKey(recorded: recorded, given: given, logSeq: seq)
        case let .dataKeyDamaged(keyID, _): return .dataKeyDamaged(keyID: keyID, logSeq: seq)
        case let .valueMoved(token, original, _): return .valueMoved(token: token, originalToken: original, logSeq: seq)
        case let .valueDamaged(subject, _): return .valueDamaged(subject: subject, logSeq: seq)
        case .reasonRequired, .overRowCap, .notPermitted: return self
        }
    }
}
