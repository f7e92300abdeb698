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
        return try await body()
    } catch let error as ExitCode {
        throw error
    } catch let error as ValidationError {
        // Found while running (a setting from the environment, a file of arguments): still a usage error.
        printError(error.message)
        throw ExitCode(PIIVaultExitCode.usage.rawValue)
    } catch let error as any PIIVaultReportableError {
        printError(error.message)
        throw ExitCode(error.exitCode.rawValue)
    } catch {
        // Never Foundation's `Error Domain=NSCocoaErrorDomain ...` text: the system's reason instead.
        printError(FileErrorReason.describe(error))
        throw ExitCode(PIIVaultExitCode.failure.rawValue)
    }
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

/// `--format table|json|csv` for `audit log` and `unmask`.
extension OutputFormat: ExpressibleByArgument {}

/// Prints rendered output. On a terminal, control and format characters other than line ends (escape sequences,
/// bidi overrides) are shown as `\u{..}`: stored text must not drive or reorder the terminal. Redirected to a file or
/// a pipe, the output is written exactly.
func printOutput(_ text: String) {
    guard isatty(STDOUT_FILENO) == 1 else {
        print(text, terminator: "")
        return
    }
    var out = ""
    for scalar in text.unicodeScalars {
        let category = scalar.properties.generalCategory
        if scalar != "\n" && scalar != "\r" && (category == .control || category == .format) {
            out += "\\u{\(String(scalar.value, radix: 16))}"
        } else {
            out.unicodeScalars.append(scalar)
        }
    }
    print(out, terminator: "")
}

/// `--safe-csv`, for every command that prints CSV.
struct CSVSafetyOptions: ParsableArguments {
    @Flag(help: "In CSV, prefix cells starting with =, +, -, @ (formulas to a spreadsheet) with ' and quote them.")
    var safeCSV = false

    /// `render` with the CSV renderer guarding formulas when asked to.
    func rendering(_ render: () -> String) -> String {
        CSVOptions.$guardFormulas.withValue(safeCSV) { render() }
    }
}
