#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSodium
import Foundation

/// Reads a passphrase into guarded memory: from the file named by `PIIVAULT_PASSPHRASE_FILE` (automation, tests),
/// else from the terminal with echo off.
public enum Passphrase {
    /// The variable naming a file that holds the passphrase (one trailing newline is ignored).
    public static let fileVariable = "PIIVAULT_PASSPHRASE_FILE"
    static let maxBytes = 1024

    /// Reads the passphrase; with `confirm`, asks twice on a terminal and refuses two different entries.
    public static func read(prompt: String, confirm: Bool) throws -> SecretBytes {
        if let file = ProcessInfo.processInfo.environment[fileVariable], !file.isEmpty {
            return try fromFile(path: file)
        }
        let first = try fromTerminal(prompt: prompt)
        if confirm {
            let second = try fromTerminal(prompt: "Repeat the passphrase: ")
            guard first.constantTimeEquals(second) else { throw KeyFileError.passphraseMismatch }
        }
        return first
    }

    /// The contents of `path` without one trailing `\n` or `\r\n`.
    public static func fromFile(path: String) throws -> SecretBytes {
        var bytes: [UInt8]
        do {
            bytes = try KeyLoading.readKeyFile(path: path, secret: false)
        } catch KeyFileError.cannotRead(_, let reason) {
            throw KeyFileError.passphraseUnavailable(reason: "\(fileVariable) names \(path): \(reason)")
        }
        defer { sodium_memzero(&bytes, bytes.count) }
        var length = bytes.count
        if length > 0 && bytes[length - 1] == UInt8(ascii: "\n") { length -= 1 }
        if length > 0 && bytes[length - 1] == UInt8(ascii: "\r") { length -= 1 }
        guard length > 0 else { throw KeyFileError.emptyPassphrase }
        return bytes.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
    }

    /// One line from the controlling terminal, echo off, read straight into guarded memory.
    static func fromTerminal(prompt: String) throws -> SecretBytes {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KeyFileError.passphraseUnavailable(
                reason: "no terminal; set \(fileVariable) to a file that holds the passphrase")
        }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else {
            throw KeyFileError.passphraseUnavailable(reason: "cannot turn off echo on the terminal")
        }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        quiet.c_lflag |= tcflag_t(ECHONL)
        _ = tcsetattr(fd, TCSAFLUSH, &quiet)
        defer { _ = tcsetattr(fd, TCSAFLUSH, &saved) }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }

        var length = 0
        var failed = false
        let buffer = SecretBytes(count: maxBytes) { out in
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(fd, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 || byte == UInt8(ascii: "\n") { break }
                guard length < maxBytes else { failed = true; break }
                out[length] = byte
                length += 1
            }
            byte = 0
        }
        guard !failed else { throw KeyFileError.passphraseUnavailable(reason: "longer than \(maxBytes) bytes") }
        guard length > 0 else { throw KeyFileError.emptyPassphrase }
        return buffer.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
    }
}
