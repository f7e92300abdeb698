import CSodium

/// Passphrases for `vault.key`. The core never prompts: commands take a passphrase provider (a closure); the
/// executable's provider reads the file named by `PIIVAULT_PASSPHRASE_FILE`, else the terminal.
public enum Passphrase {
    /// The variable naming a file that holds the passphrase (one trailing newline is ignored).
    public static let fileVariable = "PIIVAULT_PASSPHRASE_FILE"
    /// The longest passphrase read from a terminal, in bytes.
    public static let maxBytes = 1024
    /// The fewest characters (Unicode scalars) a new passphrase may have.
    public static let minimumLength = 12

    /// The contents of `path` without one trailing `\n` or `\r\n`. The file is a secret like a key file: refused
    /// when group- or world-accessible or owned by another user.
    public static func fromFile(path: String) throws -> SecretBytes {
        var bytes: [UInt8]
        do {
            bytes = try KeyLoading.readKeyFile(path: path, protection: .secret)
        } catch KeyFileError.cannotRead(_, let reason) {
            throw KeyFileError.passphraseUnavailable(reason: "\(fileVariable) names \(path): \(reason)")
        } catch KeyFileError.missing {
            throw KeyFileError.passphraseUnavailable(reason: "\(fileVariable) names \(path), which does not exist")
        }
        defer { sodium_memzero(&bytes, bytes.count) }
        var length = bytes.count
        if length > 0 && bytes[length - 1] == UInt8(ascii: "\n") { length -= 1 }
        if length > 0 && bytes[length - 1] == UInt8(ascii: "\r") { length -= 1 }
        guard length > 0 else { throw KeyFileError.emptyPassphrase }
        return bytes.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
    }

    /// Refuses a new passphrase shorter than `minimumLength` characters (counted as UTF-8 lead bytes, so without
    /// copying the passphrase into a String).
    static func checkNew(_ passphrase: SecretBytes) throws {
        let characters = passphrase.withUnsafeBytes { bytes in bytes.reduce(0) { $0 + ($1 & 0xC0 == 0x80 ? 0 : 1) } }
        guard characters >= minimumLength else { throw KeyFileError.passphraseTooShort(minimum: minimumLength) }
    }
}
