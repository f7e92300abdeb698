import ArgumentParser
import Foundation
import PIIVault

/// The `piivault` command tree. Each subcommand parses its arguments, calls the core and prints; nothing more.
@main
struct Piivault: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "piivault",
        abstract: "A reversible PII vault: keyed tokens for analysts, sealed originals for compliance.",
        discussion: """
            Exit status: 0 success; 1 failure (an audit chain that does not verify, a run that did not load \
            everything); 64 usage error; 65 bad input data or key file; 69 a service (database, SQS, KMS) is \
            unavailable; 75 not done yet (dual control recorded a request for approval); 77 permission refused (key \
            file mode, wrong passphrase, another vault's key, KMS refusing a wrapped key, database role). \
            `piivault unmask --help` details its own.
            """,
        version: PIIVaultInfo.version,
        subcommands: [
            Keygen.self,
            Keys.self,
            Migrate.self,
            ETL.self,
            Unmask.self,
            Lookup.self,
            Forget.self,
            Retention.self,
            Rewrap.self,
            Retokenize.self,
            Policy.self,
            Approve.self,
            Deny.self,
            Requests.self,
            Runs.self,
            Audit.self,
        ]
    )

    /// ArgumentParser's own `main`, except that a usage error starts with the line every other error has
    /// (`piivault: error: WHAT; WHAT TO DO`), followed by the command's usage, instead of an `Error:` block.
    static func main() async {
        PIIVaultProcess.prepare()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            // A command's own errors were printed already and come here as a bare ExitCode.
            let text = fullMessage(for: error)
            guard !(error is ExitCode), exitCode(for: error) == .validationFailure, !text.isEmpty else {
                exit(withError: error)
            }
            let usage = text.hasPrefix("Error: ") ? String(text.dropFirst("Error: ".count)) : text
            FileHandle.standardError.write(Data("piivault: error: \(usage)\n".utf8))
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
    }
}
