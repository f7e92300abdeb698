/// Why a compliance action (`unmask`, `lookup`, `forget`, `retention`, `rewrap`, `retokenize`) did nothing, or
/// printed nothing: the refusals the runner and the value checks decide for every action. Each case that reached the
/// database names the access-log entry that records it; messages name tokens, key ids and entry numbers, never a
/// value. (What one action leaves undone while the rest went through is its own shortfall type.)
public enum ComplianceError: PIIVaultReportableError, Equatable {
    /// `--reason` is missing or blank.
    case reasonRequired
    /// More rows than `--max-rows` would be returned; the refusal was logged.
    case overRowCap(outcome: String, logSeq: Int)
    /// The login is not a member of `piivault_compliance`. `logSeq` is nil when even the refusal could not be logged
    /// (a login in no piivault role).
    case notPermitted(logSeq: Int?)
    /// Another session holds the access log's append lock (an open transaction that appended and did not end).
    /// `holders` are `pid N (login L)` of each holder found; empty when it let go meanwhile or could not be seen.
    case accessLogBusy(holders: [String])
    /// A request function returned no row (they always return one): the database is behind the binary.
    case protocolError(action: String)
    /// A data key was sealed to another vault key than the key file's.
    case wrongVaultKey(recorded: String, given: KeyID, logSeq: Int)
    /// A sealed data key does not open with the right vault key.
    case dataKeyDamaged(keyID: String, logSeq: Int)
    /// The value stored for `token` opens only under `originalToken`: the database was tampered with.
    case valueMoved(token: String, originalToken: String, logSeq: Int)
    /// The value stored for `token` (or the body of a quarantined message) does not open at all.
    case valueDamaged(subject: String, logSeq: Int)
    /// Dual control refused the access asked with `--request N` (not approved yet, expired, denied, executed, of
    /// another login or other parameters); `outcome` is the logged refusal.
    case dualControlRefused(outcome: String, logSeq: Int)
    /// An approval or denial the database refused (by the requester, twice by one login, of a request no longer
    /// pending, by a login outside compliance); `outcome` is the logged refusal.
    case decisionRefused(outcome: String, logSeq: Int)

    public var message: String {
        switch self {
        case .reasonRequired:
            return "a reason is required for every access to sealed values; pass --reason with the case or request number"
        case let .overRowCap(outcome, seq):
            return "the vault \(outcome) (access-log entry \(seq)); if the request justifies it, raise --max-rows"
        case .notPermitted(let seq):
            let logged = seq.map { "the attempt is logged as access-log entry \($0)" } ?? "the attempt could not be logged"
            return "this database login may not unmask, look up, forget or delete by retention: it is not a member of piivault_compliance (\(logged)); ask the database owner to GRANT piivault_compliance TO your login"
        case .accessLogBusy(let holders):
            let who = holders.isEmpty ? "another session" : holders.joined(separator: ", ")
            return "the access log is locked by \(who), an open transaction that appended an entry; nothing was logged or released: retry, or ask the database owner to end it (SELECT pg_terminate_backend(PID))"
        case .protocolError(let action):
            return "the vault's \(action) request returned no row; run `piivault migrate` to bring the database up to date"
        case let .wrongVaultKey(recorded, given, seq):
            return "the values were sealed to vault key \(recorded), but --key-file holds vault key \(given); use the vault.key with key id \(recorded) (refusal logged as access-log entry \(seq))"
        case let .dataKeyDamaged(keyID, seq):
            return "a sealed data key for vault key \(keyID) does not open: the vault is damaged; restore it from a backup (logged as access-log entry \(seq))"
        case let .valueMoved(token, original, seq):
            return "the value stored for token \(token) belongs to token \(original): it was moved between rows, so the vault was tampered with; nothing printed (logged as access-log entry \(seq))"
        case let .valueDamaged(subject, seq):
            return "the sealed value for \(subject) does not open: it is damaged; restore the vault from a backup (logged as access-log entry \(seq))"
        case let .dualControlRefused(outcome, seq):
            return "\(outcome.dropRefusedPrefix); nothing was released or changed (refusal logged as access-log entry \(seq)); see piivault requests"
        case let .decisionRefused(outcome, seq):
            return "\(outcome.dropRefusedPrefix) (refusal logged as access-log entry \(seq)); see piivault requests"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .reasonRequired: return .usage
        case .overRowCap, .protocolError: return .failure
        case .accessLogBusy: return .unavailable
        case .notPermitted, .wrongVaultKey, .dualControlRefused, .decisionRefused: return .noPermission
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
        case .reasonRequired, .overRowCap, .notPermitted, .accessLogBusy, .protocolError, .dualControlRefused,
             .decisionRefused:
            return nil
        }
    }

    /// The same error, naming the entry that logged it.
    func logged(as seq: Int) -> ComplianceError {
        switch self {
        case let .wrongVaultKey(recorded, given, _): return .wrongVaultKey(recorded: recorded, given: given, logSeq: seq)
        case let .dataKeyDamaged(keyID, _): return .dataKeyDamaged(keyID: keyID, logSeq: seq)
        case let .valueMoved(token, original, _): return .valueMoved(token: token, originalToken: original, logSeq: seq)
        case let .valueDamaged(subject, _): return .valueDamaged(subject: subject, logSeq: seq)
        case .reasonRequired, .overRowCap, .notPermitted, .accessLogBusy, .protocolError, .dualControlRefused,
             .decisionRefused:
            return self
        }
    }
}

/// A compliance action whose policy asks for approvals recorded request `requestID` (its access-log entry) instead
/// of acting: nothing was released or changed. Exit 75 (EX_TEMPFAIL): run it again with `--request N` once
/// `approvals` other compliance officers approved it.
public struct ApprovalPending: PIIVaultReportableError, Equatable {
    public let requestID: Int
    public let action: String
    public let approvals: Int

    public var message: String {
        "request \(requestID) waits for \(approvals) approval(s) by other compliance officers: piivault approve \(requestID)"
    }

    public var exitCode: PIIVaultExitCode { .tempFail }
}

extension String {
    /// A logged refusal's outcome without its `refused: ` (and `dual control: `) prefix, for a message.
    var dropRefusedPrefix: String {
        var text = Substring(self)
        for prefix in ["refused: ", "dual control: "] where text.hasPrefix(prefix) { text = text.dropFirst(prefix.count) }
        return "dual control: " + text
    }
}
