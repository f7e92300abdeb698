import ArgumentParser
import Foundation
import PIIVault

/// Writes one line to standard error in piivault's terse voice.
func printError(_ message: String) {
    FileHandle.standardError.write(Data("piivault: error: \(message)\n".utf8))
}

/// Writes one warning line to standard error.
func printWarning(_ message: String) {
    FileHandle.standardError.write(Data("piivault: warning: \(message)\n".utf8))
}

/// Runs a subcommand body, turning core errors into one line on stderr and a documented exit code.
func reportingErrors<T>(_ body: () async throws -> T) async throws -> T {
    do {
        let result = try await body()
        try flushStandardOutput()
        return result
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        // Found while running (a setting from the environment, a file of arguments): still a usage error.
        printError(error.message)
        throw ExitCode(PIIVaultExitCode.usage.rawValue)
    } catch let pending as ApprovalPending {
        // Not an error: the command did what the policy asks (recorded a request); one line, no data.
        FileHandle.standardError.write(Data("piivault: \(pending.message)\n".utf8))
        throw ExitCode(pending.exitCode.rawValue)
    } catch let error as any PIIVaultReportableError {
        printError(error.message)
        throw ExitCode(error.exitCode.rawValue)
    } catch {
        // Never Foundation's `Error Domain=NSCocoaErrorDomain ...` text: the system's reason instead.
        printError(FileErrorReason.describe(error))
        throw ExitCode(PIIVaultExitCode.failure.rawValue)
    }
}

/// Standard output could not be written (a full disk, an I/O error): what the command printed there may
/// be short or missing, so the command must not exit 0.
struct StandardOutputUnwritable: PIIVaultReportableError {
    let reason: String
    var message: String { "cannot write standard output (\(reason)); what the command printed there may be incomplete" }
    var exitCode: PIIVaultExitCode { .failure }
}

/// The first failed flush of standard output, kept until the command ends (`flushBeforeNote`).
nonisolated(unsafe) private var earlierOutputFailure: StandardOutputUnwritable?

/// Flushes standard output before a note on standard error (so that both keep their order in one file), keeping a
/// failure for the end of the command: stdio drops the buffer of a failed write, so a later flush would succeed.
func flushBeforeNote() {
    errno = 0
    guard fflush(nil) != 0 else { return }
    let code = errno
    if earlierOutputFailure == nil {
        earlierOutputFailure = StandardOutputUnwritable(reason: code != 0 ? String(cString: strerror(code)) : "write error")
    }
}

/// Flushes standard output (every stdio stream: `stdout` itself is a C global Swift 6 will not read) and throws when
/// this flush or an earlier one (`flushBeforeNote`) failed: `print` cannot report a failed write.
func flushStandardOutput() throws {
    flushBeforeNote()
    guard let failure = earlierOutputFailure else { return }
    earlierOutputFailure = nil
    throw failure
}

/// Options every database-touching subcommand shares.
struct DatabaseOptions: ParsableArguments {
    @Option(
        name: .customLong("database-url"),
        help: ArgumentHelp(
            "A libpq connection string or URI (also PIIVAULT_DATABASE_URL); default: libpq's own (PG* variables, ~/.pgpass).",
            valueName: "URL"))
    var databaseURL: String?

    /// The connection string to hand libpq: the flag, then `PIIVAULT_DATABASE_URL`, else empty (libpq defaults).
    var resolved: String {
        DatabaseSettings.connectionString(flag: databaseURL, environment: ProcessInfo.processInfo.environment)
    }
}

/// `--format table|json|csv`.
extension OutputFormat: ExpressibleByArgument {}

/// Whether standard output is a terminal (then control characters in printed text are escaped).
var standardOutputIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

/// Prints text a command made (a summary, JSON lines) through the core's terminal escaping: on a terminal, control
/// and format characters other than line ends are shown as `\u{..}`; to a file or a pipe, exactly.
func printOutput(_ text: String) {
    print(RenderedOutput.terminalSafe(text, forTerminal: standardOutputIsTerminal), terminator: "")
}

/// `--safe-csv`, for every command that prints CSV; and the one way a command prints its rows.
struct CSVSafetyOptions: ParsableArguments {
    @Flag(help: "In CSV, prefix cells starting with =, +, -, @ (formulas to a spreadsheet) with ' and quote them.")
    var safeCSV = false

    /// Prints `value` in `format` through `RenderedOutput.render`: formulas guarded when asked to, terminal
    /// controls escaped when standard output is a terminal.
    func print(_ value: some Renderable, as format: OutputFormat) {
        Swift.print(RenderedOutput.render(value, as: format, guardingFormulas: safeCSV,
                                          forTerminal: standardOutputIsTerminal), terminator: "")
    }
}
