#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSodium

/// Loads key files. Secret key files (`token.key`, `vault.key`, the passphrase file) must be private to their owner:
/// a file that is group- or world-accessible, or owned by another user, is refused before it is read, with the
/// command that fixes it. `vault.pub` may be read by anyone but written only by its owner (the user or root). Only
/// regular files up to 64 KiB are read.
public enum KeyLoading {
    /// Key files are a few hundred bytes; anything much larger is not one.
    static let maxFileBytes = 64 * 1024

    /// Loads a token key: `PIIVAULT-TOKEN-KEY-1` (the master only: version 1, tombstone key derived from it) or
    /// `PIIVAULT-TOKEN-KEY-2` (version, master and tombstone key; `TokenKeyPayload`).
    /// `option` names the flag that gave the path, for the message when the file does not exist.
    public static func loadTokenKey(path: String, option: String? = nil) throws -> TokenKey {
        var text = try readKeyFile(path: path, protection: .secret, option: option,
                                   expected: [.tokenKey, .tokenKeyVersioned])
        defer { sodium_memzero(&text, text.count) }
        return try tokenKey(text: text, path: path)
    }

    /// The token key of a plaintext token key file's text.
    static func tokenKey(text: [UInt8], path: String) throws -> TokenKey {
        let (label, payload) = try KeyFile.parse(text, file: path, expected: [.tokenKey, .tokenKeyVersioned])
        if label == .tokenKeyVersioned { return try TokenKeyPayload.decode(payload, file: path) }
        guard payload.count == TokenKey.byteCount else {
            throw KeyFileError.wrongLength(file: path, expected: TokenKey.byteCount, found: payload.count)
        }
        return try TokenKey(bytes: payload)
    }

    /// Loads the vault public key (`PIIVAULT-VAULT-PUBLIC-KEY-1`). Readable by anyone, but refused when group- or
    /// world-writable or owned by another user than the current one or root: its writer chooses where originals go.
    public static func loadVaultPublicKey(path: String, option: String? = nil) throws -> VaultPublicKey {
        let text = try readKeyFile(path: path, protection: .publicKey, option: option)
        return try vaultPublicKey(text: text, path: path)
    }

    /// The vault public key of a vault public key file's text.
    static func vaultPublicKey(text: [UInt8], path: String) throws -> VaultPublicKey {
        let (_, payload) = try KeyFile.parse(text, file: path, expected: [.vaultPublicKey])
        guard payload.count == VaultPublicKey.byteCount else {
            throw KeyFileError.wrongLength(file: path, expected: VaultPublicKey.byteCount, found: payload.count)
        }
        return try VaultPublicKey(bytes: payload.withUnsafeBytes { Array($0) })
    }

    /// Loads the vault secret key, plain (`PIIVAULT-VAULT-SECRET-KEY-1`) or passphrase-protected
    /// (`PIIVAULT-VAULT-ENCRYPTED-KEY-1`); `passphrase` is asked only for the latter.
    public static func loadVaultSecretKey(path: String, option: String? = nil, passphrase: () throws -> SecretBytes)
        throws -> VaultSecretKey
    {
        var text = try readKeyFile(path: path, protection: .secret, option: option,
                                   expected: [.vaultSecretKey, .vaultEncryptedKey])
        defer { sodium_memzero(&text, text.count) }
        return try vaultSecretKey(text: text, path: path, passphrase: passphrase)
    }

    /// The vault secret key of a plain or passphrase-protected vault secret key file's text.
    static func vaultSecretKey(text: [UInt8], path: String, passphrase: () throws -> SecretBytes) throws
        -> VaultSecretKey
    {
        let (label, payload) = try KeyFile.parse(text, file: path, expected: [.vaultSecretKey, .vaultEncryptedKey])
        switch label {
        case .vaultEncryptedKey:
            guard payload.count == PassphraseKey.payloadBytes else {
                throw KeyFileError.wrongLength(file: path, expected: PassphraseKey.payloadBytes, found: payload.count)
            }
            return try VaultSecretKey(bytes: try PassphraseKey.decrypt(payload, passphrase: try passphrase(), file: path))
        default:
            guard payload.count == VaultSecretKey.byteCount else {
                throw KeyFileError.wrongLength(file: path, expected: VaultSecretKey.byteCount, found: payload.count)
            }
            return try VaultSecretKey(bytes: payload)
        }
    }

    /// Whether `opened` (the descriptor's `fstat`) is the file `path` names directly in systemd's credentials folder
    /// of this service: `credentialsDirectory` absolute, a folder owned by root or `currentUser` that others can
    /// neither read nor write, and the resolved path the very file that was opened.
    static func isSystemdCredential(_ path: String, opened: stat, credentialsDirectory: String?,
                                    currentUser: UInt32) -> Bool {
        guard let credentialsDirectory, credentialsDirectory.hasPrefix("/"),
              let file = realPath(path), let folder = realPath(credentialsDirectory),
              let slash = file.lastIndex(of: "/"), file[..<slash] == folder[...], folder != "/"
        else { return false }
        var folderInfo = stat(), fileInfo = stat()
        guard stat(folder, &folderInfo) == 0, (folderInfo.st_mode & S_IFMT) == S_IFDIR,
              folderInfo.st_uid == 0 || folderInfo.st_uid == currentUser,
              UInt32(folderInfo.st_mode) & 0o027 == 0,
              stat(file, &fileInfo) == 0, fileInfo.st_dev == opened.st_dev, fileInfo.st_ino == opened.st_ino
        else { return false }
        return true
    }

    /// `path` with every symbolic link, `.` and `..` resolved; nil when it does not resolve.
    private static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Whether a vault secret key file is passphrase-protected (so that a caller can ask for the passphrase up front).
    public static func isPassphraseProtected(path: String, option: String? = nil) throws -> Bool {
        var text = try readKeyFile(path: path, protection: .secret, option: option,
                                   expected: [.vaultSecretKey, .vaultEncryptedKey])
        defer { sodium_memzero(&text, text.count) }
        return try KeyFile.parse(text, file: path, expected: [.vaultSecretKey, .vaultEncryptedKey]).0 == .vaultEncryptedKey
    }

    /// Reads a key file, checking type, size, owner and mode on the opened descriptor (no window between check and
    /// read). `currentUser` is the user the file must belong to: the effective user (a test may name another).
    /// `option` names the flag that gave the path (for a missing file's message); `expected` are the labels the
    /// caller accepts: a secret key file readable by others that is another kind of key file (`vault.pub` given as
    /// the secret key) is refused for its label, not its mode.
    ///
    /// A file that systemd passed as a credential (`LoadCredential=`; directly in `$CREDENTIALS_DIRECTORY`) is
    /// accepted owned by root and readable by the group: systemd since version 255 writes it as root, mode 0400, and
    /// lets the service's user read it with an ACL, which shows as group bits (0440). The folder must be one others
    /// can neither read nor write, and the file may give others nothing; `chmod` could not be run there anyway.
    static func readKeyFile(
        path: String, protection: KeyFileProtection, option: String? = nil, expected: [KeyFileLabel] = [],
        currentUser: UInt32 = UInt32(geteuid()),
        credentialsDirectory: String? = getenv("CREDENTIALS_DIRECTORY").map { String(cString: $0) }
    ) throws -> [UInt8] {
        // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever; it changes nothing for a regular file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else {
            if errno == ENOENT { throw KeyFileError.missing(file: path, option: option) }
            throw KeyFileError.cannotRead(file: path, reason: String(cString: strerror(errno)))
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw KeyFileError.cannotRead(file: path, reason: String(cString: strerror(errno)))
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw KeyFileError.cannotRead(file: path, reason: "not a regular file (a FIFO, device or folder); name the key file itself")
        }
        let mode = UInt32(info.st_mode) & 0o7777, owner = UInt32(info.st_uid)
        switch protection {
        case .secret where isSystemdCredential(path, opened: info, credentialsDirectory: credentialsDirectory,
                                               currentUser: currentUser):
            // Group read is the ACL's mask; nothing for others, and no one else may write it.
            if mode & 0o027 != 0 { throw KeyFileError.accessibleByOthers(file: path, mode: mode) }
            if owner != currentUser && owner != 0 {
                throw KeyFileError.wrongOwner(file: path, owner: owner, currentUser: currentUser)
            }
        case .secret:
            if mode & 0o077 != 0 {
                if mode & 0o044 != 0, info.st_size <= maxFileBytes, let label = readLabel(fd: fd),
                   !expected.isEmpty, !expected.contains(label)
                {
                    // Anyone may read it already, and it is not the key asked for: say so, not "chmod 600".
                    throw KeyFileError.wrongLabel(file: path, expected: expected.map(\.rawValue).joined(separator: " or "),
                                                  found: label.rawValue)
                }
                throw KeyFileError.accessibleByOthers(file: path, mode: mode)
            }
            if owner != currentUser {
                throw KeyFileError.wrongOwner(file: path, owner: owner, currentUser: currentUser)
            }
        case .publicKey:
            // Anyone may read a public key, but whoever can write it decides which key the ETL seals to.
            if mode & 0o022 != 0 { throw KeyFileError.writableByOthers(file: path, mode: mode) }
            if owner != currentUser && owner != 0 {
                throw KeyFileError.wrongOwner(file: path, owner: owner, currentUser: currentUser)
            }
        }
        guard info.st_size <= maxFileBytes else { throw KeyFileError.tooLarge(file: path, limit: maxFileBytes) }
        var data = [UInt8](repeating: 0, count: maxFileBytes + 1)
        var used = 0
        while used < data.count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 {
                if errno == EINTR { continue }
                let reason = String(cString: strerror(errno))
                sodium_memzero(&data, data.count)
                throw KeyFileError.cannotRead(file: path, reason: reason)
            }
            if n == 0 { break }
            used += n
        }
        guard used <= maxFileBytes else {  // grew after the size check
            sodium_memzero(&data, data.count)
            throw KeyFileError.tooLarge(file: path, limit: maxFileBytes)
        }
        let text = Array(data[0..<used])
        sodium_memzero(&data, data.count)
        return text
    }
}

extension KeyLoading {
    /// The label of the key file open on `fd` (read from its start; the text is wiped), nil when it has none of
    /// piivault's labels.
    fileprivate static func readLabel(fd: Int32) -> KeyFileLabel? {
        var data = [UInt8](repeating: 0, count: maxFileBytes)
        defer { sodium_memzero(&data, data.count) }
        let n = data.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { return nil }
        for line in data[0..<n].split(separator: UInt8(ascii: "\n")) {
            let text = line.drop { $0 == UInt8(ascii: " ") || $0 == 9 }
            if text.isEmpty || text.first == UInt8(ascii: "#") || text.first == UInt8(ascii: "\r") { continue }
            let label = text.prefix { $0 != UInt8(ascii: " ") && $0 != 9 && $0 != UInt8(ascii: "\r") }
            return KeyFileLabel(rawValue: String(decoding: label, as: UTF8.self))
        }
        return nil
    }
}

/// How a key file must be protected on disk.
enum KeyFileProtection {
    /// `token.key`, `vault.key` and the passphrase file: no access for group or others; owned by the current user.
    case secret
    /// `vault.pub`: anyone may read it; only its owner may write it, and its owner is the current user or root.
    case publicKey
}

/// The `PIIVAULT-TOKEN-KEY-2` payload (68 bytes): `version (u32 little-endian) || master key (32) || tombstone key (32)`.
enum TokenKeyPayload {
    static let byteCount = 4 + TokenKey.byteCount + TokenKey.tombstoneKeyByteCount

    /// The payload of `key`, in guarded memory.
    static func encode(_ key: TokenKey) -> SecretBytes {
        SecretBytes(count: byteCount) { out in
            let version = UInt32(key.version)
            for i in 0..<4 { out[i] = UInt8(truncatingIfNeeded: version >> (8 * UInt32(i))) }
            key.bytes.withUnsafeBytes { out.baseAddress!.advanced(by: 4).copyMemory(from: $0.baseAddress!, byteCount: 32) }
            key.tombstoneKey.withUnsafeBytes {
                out.baseAddress!.advanced(by: 36).copyMemory(from: $0.baseAddress!, byteCount: 32)
            }
        }
    }

    static func decode(_ payload: SecretBytes, file: String) throws -> TokenKey {
        guard payload.count == byteCount else {
            throw KeyFileError.wrongLength(file: file, expected: byteCount, found: payload.count)
        }
        let version = payload.withUnsafeBytes { bytes in
            (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[$1]) << (8 * UInt32($1)) }
        }
        guard version >= 1, version <= UInt32(Token.maximumVersion) else {
            throw KeyFileError.badVersion(file: file, version: Int(version))
        }
        let master = payload.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[4..<36])) }
        let tombstone = payload.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[36..<68])) }
        return try TokenKey(bytes: master, version: Int(version), tombstoneKey: tombstone)
    }
}
