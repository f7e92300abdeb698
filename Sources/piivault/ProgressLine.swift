import Foundation
import NIOConcurrencyHelpers
import PIIVault

/// A progress line that rewrites itself on a terminal (stderr), and stays silent otherwise.
final class ProgressLine: Sendable {
    /// Whether standard error is a terminal (else the progress goes to the log).
    let isTerminal = isatty(STDERR_FILENO) == 1
    /// Whether a line is on screen; held while writing, so that lines from two tasks do not interleave.
    private let shown = NIOLockedValueBox(false)

    func show(_ progress: ETLProgressSnapshot) {
        guard isTerminal else { return }
        shown.withLockedValue { shown in
            FileHandle.standardError.write(Data("\r\u{1B}[K\(progress.line)".utf8))
            shown = true
        }
    }

    func clear() {
        shown.withLockedValue { shown in
            if shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            shown = false
        }
    }
}
