import Foundation

/// Tuning of an ETL run; ``ETLSettings`` resolves each field from a flag or a `PIIVAULT_*` variable.
public struct ETLConfiguration: Sendable, Equatable {
    /// Messages per database transaction.
    public var batchSize = 10_000
    /// Concurrent receive calls (pollers).
    public var concurrency = 4
    /// Stop after receiving this many messages.
    public var maxMessages: Int?
    /// How long the queue must stay empty to count as drained, in seconds.
    public var idleExit: Double = 5
    /// The longest a batch may collect before it is loaded, in seconds; kept well under the visibility timeout so
    /// that no message becomes visible again while its batch is still in hand.
    public var maxBatchAge: Double = 5
    /// Stop after this many seconds, as on SIGTERM (the batches in hand are loaded; what was not received stays in
    /// the queue): a queue that keeps receiving messages never stays empty for `idleExit`. Nil: no limit.
    public var maxDuration: Double?

    public init() {}
}

/// Counts of one run; the summary line and `--summary-json` show them.
public struct ETLSummary: Sendable, Codable, Equatable {
    public var received = 0
    public var loaded = 0
    public var duplicates = 0
    public var quarantined = 0
    public var valuesSealed = 0
    /// Messages of forgotten users (`piivault forget`): not loaded, deleted from the source.
    public var suppressed = 0
    /// Messages the queue refused to delete after their batch committed (they will be redelivered and skipped).
    public var deleteFailures = 0
    /// The run's whole time, the final wait for an empty queue (`--idle-exit`) included.
    public var seconds = 0.0
    /// The time spent working: until the last message arrived or the last batch committed, whichever came later.
    public var workingSeconds = 0.0
    /// Messages received per working second.
    public var messagesPerSecond = 0.0
    /// `completed`, `interrupted`, `failed`.
    public var outcome = "running"
    /// Why the run failed, without PII; nil when it did not.
    public var error: String?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case received, loaded, duplicates, quarantined, suppressed, seconds, outcome, error
        case valuesSealed = "values_sealed"
        case workingSeconds = "working_seconds"
        case deleteFailures = "delete_failures"
        case messagesPerSecond = "messages_per_second"
    }

    /// Adds what one committed batch did.
    mutating func add(_ batch: LoadOutcome, deleteFailures: Int) {
        loaded += batch.loaded
        duplicates += batch.duplicates
        quarantined += batch.quarantined
        valuesSealed += batch.valuesSealed
        suppressed += batch.suppressed
        self.deleteFailures += deleteFailures
    }

    /// Sets `seconds` to the time since `started`, `workingSeconds` to the time from `started` to `workEnded` (the
    /// run's last receive or commit; nil: all of it), and `messagesPerSecond` to the messages received per working
    /// second.
    mutating func updateRate(since started: Date, workEnded: Date? = nil) {
        let now = Date()
        seconds = now.timeIntervalSince(started)
        workingSeconds = min(seconds, max(0, (workEnded ?? now).timeIntervalSince(started)))
        messagesPerSecond = workingSeconds > 0 ? Double(received) / workingSeconds : 0
    }

    /// The one-line summary that ends every run.
    public var line: String {
        String(format: "%@: received %d, loaded %d, duplicates %d, quarantined %d, values sealed %d, %.2f s (%.2f s working), %.0f messages/s",
               outcome, received, loaded, duplicates, quarantined, valuesSealed, seconds, workingSeconds, messagesPerSecond)
            + (suppressed > 0 ? ", suppressed \(suppressed)" : "")
            + (deleteFailures > 0 ? ", \(deleteFailures) not deleted" : "")
    }

    /// The summary as one line of JSON (sorted keys), newline-terminated.
    public var json: [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // Encoding a struct of numbers and strings cannot fail.
        return Array((try? encoder.encode(self)) ?? Data()) + [UInt8(ascii: "\n")]
    }
}

/// Progress after each batch (the run's `progress` callback).
public struct ETLProgress: Sendable {
    public let summary: ETLSummary
    /// Approximate messages still queued, when the source knows.
    public let queueDepth: Int?
}

/// Why a run could not complete. Messages hold no PII.
public enum ETLError: PIIVaultReportableError {
    case inputFile(String)
    /// The database has no piivault schema (or an older one).
    case notMigrated
    /// `vault.pub` is not the key `--vault-key-id` names.
    case vaultKeyMismatch(expected: String, actual: String)
    case failed(String, ETLSummary)

    public var message: String {
        switch self {
        case .inputFile(let text): return text
        case .notMigrated:
            return "the database has no piivault tables (public.etl_runs is missing); run `piivault migrate` first"
        case let .vaultKeyMismatch(expected, actual):
            return "the vault public key has key id \(actual), not \(expected) as --vault-key-id says; check which vault.pub this job was given (someone who can write it decides who can read tonight's values)"
        case .failed(let text, _): return text
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .inputFile, .notMigrated: return .dataError
        case .failed: return .failure
        case .vaultKeyMismatch: return .noPermission
        }
    }

    /// The counts so far, when the run had started.
    public var partialSummary: ETLSummary? {
        if case .failed(_, let summary) = self { return summary }
        return nil
    }
}

/// Writes the summary JSON of `--summary-json`.
public enum SummaryFile {
    /// Writes `bytes` to `path`: `-` is standard output; a regular file (or none yet) is replaced atomically (a
    /// temporary file beside it, then a rename), so a reader never sees half a summary; anything else (a symlink, a
    /// FIFO, a device such as `/dev/stdout`) is opened and written in place, never replaced.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        if path == "-" {
            fflush(nil)  // after whatever the command already printed, such as the summary line
            FileHandle.standardOutput.write(Data(bytes))
            return
        }
        var status = stat()
        if lstat(path, &status) == 0, (status.st_mode & S_IFMT) != S_IFREG {
            try writeInPlace(bytes, to: path)
            return
        }
        do {
            try AtomicFile.replace(path, with: bytes, mode: 0o644)
        } catch {
            throw SummaryFileError(path: path, reason: error.reason)
        }
    }

    private static func writeInPlace(_ bytes: [UInt8], to path: String) throws {
        // O_NONBLOCK: a FIFO nobody reads refuses at once (ENXIO) instead of hanging the end of the run.
        let descriptor = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw SummaryFileError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(descriptor) }
        // A regular file behind a symlink is truncated first; a FIFO or a device ignores it.
        _ = ftruncate(descriptor, 0)
        if let code = writeAll(bytes, to: descriptor, retryingWouldBlock: true) {
            throw SummaryFileError(path: path, reason: String(cString: strerror(code)))
        }
    }
}

/// The summary could not be written; the run's own outcome is unchanged.
public struct SummaryFileError: PIIVaultReportableError {
    public let path: String
    public let reason: String
    public var message: String { "cannot write the summary to \(path): \(reason); check the path and its folder" }
    public var exitCode: PIIVaultExitCode { .failure }
}
