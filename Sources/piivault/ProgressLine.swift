import Foundation
import PIIVault

/// A progress line that rewrites itself on a terminal (stderr), and stays silent otherwise.
final class ProgressLine: @unchecked Sendable {
    // @unchecked: `shown` is only read and written under `lock`.
    /// Whether standard error is a terminal (else the progress goes to the log).
    let isTerminal = isatty(STDERR_FILENO) == 1
    private let lock = NSLock()
    private var shown = false

    func show(_ progress: ETLProgressSnapshot) {
        guard isTerminal else { return }
        lock.withLock {
            FileHandle.standardError.write(Data("\r\u{1B}[K\(progress.line)".utf8))
            shown = true
        }
    }

    func clear() {
        lock.withLock {
            if shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            shown = false
        }
    }
}
