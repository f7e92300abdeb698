/// Why a key file could not be written or loaded. `file` is the path as the user gave it; messages never contain
/// key bytes or passphrases.
public enum KeyFileError: PIIVaultReportableError, Equatable {
    /// `keygen` found key files already there; nothing was written.
    case alreadyExists(files: [String])
    /// The file could not be opened or read.
    case cannotRead(file: String, reason: String)
    /// The file does not exist; `option` is the flag that named it, when known.
    case missing(file: String, option: String?)
    /// The file could not be created or written.
    case cannotWrite(file: String, reason: String)
    /// A secret key file is group- or world-accessible.
    case accessibleByOthers(file: String, mode: UInt32)
    /// A secret key file belongs to another user, or a public key file to another user than root.
    case wrongOwner(file: String, owner: UInt32, currentUser: UInt32)
    /// A public key file is group- or world-writable.
    case writableByOthers(file: String, mode: UInt32)
    /// The file is larger than any key file (`limit` bytes).
    case tooLarge(file: String, limit: Int)
    /// The file ends before its key line is complete.
    case truncated(file: String)
    /// The key line carries another label than the one expected.
    case wrongLabel(file: String, expected: String, found: String?)
    /// The key line is not standard base64 with padding.
    case badBase64(file: String)
    /// The decoded key has the wrong length.
    case wrongLength(file: String, expected: Int, found: Int)
    /// A token key version outside 1 to 999999999 (or below 2 where a new version is asked for).
    case badVersion(file: String, version: Int)
    /// More than one key line.
    case extraContent(file: String)
    /// The passphrase does not open the encrypted key (or the file was altered).
    case wrongPassphrase(file: String)
    /// The encrypted key asks for Argon2id limits outside the accepted range.
    case unsafeParameters(file: String)
    /// The encrypted key was protected with Argon2id limits below libsodium's interactive minimum.
    case weakParameters(file: String)
    /// A new passphrase shorter than `minimum` characters.
    case passphraseTooShort(minimum: Int)
    /// The passphrase could not be read.
    case passphraseUnavailable(reason: String)
    /// The two passphrase entries differ.
    case passphraseMismatch
    /// An empty passphrase.
    case emptyPassphrase

    public var message: String {
        switch self {
        case let .alreadyExists(files):
            return "\(files.joined(separator: ", ")) already \(files.count == 1 ? "exists" : "exist"); piivault never overwrites a key file: move \(files.count == 1 ? "it" : "them") away or write elsewhere (--dir, --out)"
        case let .cannotRead(file, reason):
            return "cannot read \(file): \(reason)"
        case let .missing(file, option):
            return "\(file) does not exist; give the key file's path\(option.map { " with \($0)" } ?? "") (piivault keygen writes the key files)"
        case let .cannotWrite(file, reason):
            return "cannot write \(file): \(reason)"
        case let .accessibleByOthers(file, mode):
            let what = mode & 0o044 != 0 ? "readable by others" : "accessible by others (mode \(String(mode & 0o777, radix: 8)))"
            return "\(file) is \(what); run chmod 600 \(file)"
        case let .wrongOwner(file, owner, currentUser):
            return "\(file) is owned by uid \(owner), not by the current user (uid \(currentUser)); run chown \(currentUser) \(file), or load it as its owner"
        case let .writableByOthers(file, mode):
            return "\(file) is writable by others (mode \(String(mode & 0o777, radix: 8))), so anyone could swap the key; run chmod go-w \(file)"
        case let .tooLarge(file, limit):
            return "\(file) is too large to be a key file (over \(limit / 1024) KiB); is this the right file?"
        case let .truncated(file):
            return "\(file) is truncated: its key line is missing or incomplete; restore it from your copy"
        case let .wrongLabel(file, expected, found):
            let seen = found.map { "label \($0)" } ?? "an unknown label"
            return "\(file) has \(seen), expected \(expected); is this the right key file?"
        case let .badBase64(file):
            return "\(file) is damaged: its key line is not valid base64"
        case let .wrongLength(file, expected, found):
            return "\(file) is damaged: the key is \(found) bytes long, expected \(expected)"
        case let .badVersion(file, version):
            return "\(file) names token key version \(version); versions are 1 to \(Token.maximumVersion) (keygen --token-key-version needs 2 or more)"
        case let .extraContent(file):
            return "\(file) has more than one key line"
        case let .wrongPassphrase(file):
            return "wrong passphrase for \(file) (or the file was altered)"
        case let .unsafeParameters(file):
            return "\(file) asks for password-hashing limits outside the accepted range; it is damaged or not from piivault"
        case let .weakParameters(file):
            return "\(file) is protected with password-hashing limits below libsodium's interactive minimum (\(PassphraseKey.minimumOpsLimit) passes, \(PassphraseKey.minimumMemLimit >> 20) MiB), too cheap to guess; it was not written by piivault keygen: restore your copy or make a new key"
        case let .passphraseTooShort(minimum):
            return "the passphrase is shorter than \(minimum) characters; choose a longer one (nothing was written)"
        case let .passphraseUnavailable(reason):
            return "cannot read the passphrase: \(reason)"
        case .passphraseMismatch:
            return "the two passphrases differ; nothing was written"
        case .emptyPassphrase:
            return "the passphrase is empty"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .accessibleByOthers, .wrongOwner, .writableByOthers, .wrongPassphrase: return .noPermission
        case .truncated, .wrongLabel, .badBase64, .wrongLength, .extraContent, .tooLarge, .unsafeParameters, .badVersion,
             .weakParameters, .missing, .cannotRead:
            return .dataError
        case .passphraseMismatch, .emptyPassphrase, .passphraseUnavailable, .passphraseTooShort: return .usage
        case .alreadyExists, .cannotWrite: return .failure
        }
    }
}
