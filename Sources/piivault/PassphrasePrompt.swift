#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PIIVault

/// The signals that end a process at a prompt (Ctrl-C, Ctrl-\\, a kill, a closed terminal).
private let terminatingSignals = [SIGINT, SIGQUIT, SIGTERM, SIGHUP]
/// The terminal whose echo a prompt turned off (-1: none), and its settings before: read by the signal handler.
nonisolated(unsafe) private var echoOffTerminal: Int32 = -1
nonisolated(unsafe) private var echoOffSettings = termios()

/// Puts the terminal's settings back, then ends the process by the same signal (its default action). Only
/// async-signal-safe calls.
private func restoreTerminalThenDie(_ number: Int32) {
    if echoOffTerminal >= 0 { _ = tcsetattr(echoOffTerminal, TCSANOW, &echoOffSettings) }
    signal(number, SIG_DFL)
    raise(number)
}

/// The executable's passphrase provider: the file named by `PIIVAULT_PASSPHRASE_FILE` (automation, tests), else the
/// controlling terminal with echo off. Read straight into guarded memory.
enum PassphrasePrompt {
    /// Reads the passphrase; with `confirm`, asks twice on a terminal and refuses two different entries.
    static func read(prompt: String, confirm: Bool) throws -> SecretBytes {
        if let file = ProcessInfo.processInfo.environment[Passphrase.fileVariable], !file.isEmpty {
            return try Passphrase.fromFile(path: file)
        }
        let first = try fromTerminal(prompt: prompt)
        if confirm {
            let second = try fromTerminal(prompt: "Repeat the passphrase: ")
            guard first.constantTimeEquals(second) else { throw KeyFileError.passphraseMismatch }
        }
        return first
    }

    /// One line from the controlling terminal, echo off.
    private static func fromTerminal(prompt: String) throws -> SecretBytes {
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else {
            throw KeyFileError.passphraseUnavailable(
                reason: "no terminal; set \(Passphrase.fileVariable) to a file that holds the passphrase")
        }
        defer { close(fd) }
        var saved = termios()
        guard tcgetattr(fd, &saved) == 0 else {
            throw KeyFileError.passphraseUnavailable(reason: "cannot turn off echo on the terminal")
        }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        quiet.c_lflag |= tcflag_t(ECHONL)
        // Ctrl-C (or a kill) while echo is off must not leave the user's shell without echo: until the settings are
        // back, those signals put them back first, then end the process as they would have.
        echoOffTerminal = fd
        echoOffSettings = saved
        let previous = terminatingSignals.map { ($0, signal($0, restoreTerminalThenDie)) }
        _ = tcsetattr(fd, TCSAFLUSH, &quiet)
        defer {
            _ = tcsetattr(fd, TCSAFLUSH, &saved)
            for (number, handler) in previous { signal(number, handler) }
            echoOffTerminal = -1
        }
        _ = prompt.withCString { write(fd, $0, strlen($0)) }

        let maxBytes = Passphrase.maxBytes
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
