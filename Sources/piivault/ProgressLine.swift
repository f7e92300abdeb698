import Foundation
import NIOConcurrencyHelpers
import PIIVault

/// A progress line that rewrites itself on a terminal (stderr), and stays silent otherwise.
final class ProgressLine: Sendable {
    private let enabled = isatty(STDERR_FILENO) == 1
    /// Whether a line is on screen; held while writing, so that lines from two tasks do not interleave.
    private let shown = NIOLockedValueBox(false)

    func show(_ progress: ETLProgress) {
        guard enabled else { return }
        let s = progress.summary
        var line = String(format: "received %d, loaded %d, quarantined %d, %.0f messages/s", s.received, s.loaded,
                          s.quarantined, s.messagesPerSecond)
        if let depth = progress.queueDepth { line += ", ~\(depth) queued" }
        shown.withLockedValue { shown in
            FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
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
