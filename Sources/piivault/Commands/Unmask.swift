import ArgumentParser
import Foundation
import PIIVault

struct Unmask: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unmask",
        abstract: "Recover original values (compliance; every access is logged first).",
        discussion: """
            Run as a login in role piivault_compliance, with the vault secret key file. The key file is loaded and \
            checked first (mode 0600, owner, passphrase from the terminal or PIIVAULT_PASSPHRASE_FILE); then the \
            sealed values are read through the database function that appends the access-log entry; they are opened \
            and printed only once that entry is committed. A refusal (no permission, another vault's key, a value \
            moved between rows or damaged, over --max-rows) prints no value and is logged with its own outcome.

            Exit status: 0 all found and printed; 1 some tokens unknown (the others are printed), no such user or \
            message, or over --max-rows; 64 usage (no --reason, not exactly one of --token/--user-id/--quarantined); \
            65 key file malformed, or a value moved or damaged; 69 database unavailable; 77 key file mode/owner, \
            wrong passphrase, another vault's key, or a login outside piivault_compliance.
            """)

    @OptionGroup var database: DatabaseOptions

    @Option(help: ArgumentHelp("The vault secret key file (also PIIVAULT_VAULT_KEY).", valueName: "FILE"))
    var keyFile: String?

    @Option(help: ArgumentHelp("Why this access is needed (case or request number); logged.", valueName: "TEXT"))
    var reason: String?

    @Option(name: .customLong("token"), parsing: .upToNextOption,
            help: ArgumentHelp("Tokens to recover (ip.v1.… or dev.v1.…).", valueName: "TOKEN"))
    var tokens: [String] = []

    @Option(help: ArgumentHelp("Read tokens from FILE, one per line (- for standard input).", valueName: "FILE"))
    var tokenFile: String?

    @Option(help: ArgumentHelp("Recover every login of this user id.", valueName: "ID"))
    var userID: String?

    @Option(help: ArgumentHelp("Recover the body of this quarantined message.", valueName: "MESSAGE_ID"))
    var quarantined: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Option(help: "Refuse (and log the refusal) when more rows than this would be returned.")
    var maxRows: Int = 100

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: say why this access is needed (case or request number); it is logged")
        }
        let modes = [!tokens.isEmpty || tokenFile != nil, userID != nil, quarantined != nil].filter { $0 }.count
        guard modes == 1 else {
            throw ValidationError("give exactly one of --token (or --token-file), --user-id, --quarantined")
        }
        guard maxRows >= 1 else { throw ValidationError("--max-rows must be 1 or more") }
        try Self.checkTokens(tokens, source: "--token")
    }

    /// Refuses anything that is not shaped like a token, without echoing it: a value typed or pasted by mistake
    /// must not reach the terminal's scrollback or the access log.
    static func checkTokens(_ tokens: [String], source: String) throws {
        let bad = tokens.filter { !Self.isToken($0) }.count
        guard bad == 0 else {
            throw ValidationError("\(source): \(bad) of \(tokens.count) arguments are not tokens (ip.v1.<64 hex digits> or dev.v1.<64 hex digits>); not shown, in case they are values")
        }
    }

    private static func isToken(_ text: String) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "ip" || parts[0] == "dev", parts[1].count >= 2, parts[1].first == "v",
              parts[1].dropFirst().allSatisfy(\.isASCII), parts[1].dropFirst().allSatisfy(\.isNumber),
              parts[2].utf8.count == 64
        else { return false }
        return parts[2].utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    func run() async throws {
        try await reportingErrors {
            let reason = self.reason ?? ""
            guard let keyPath = keyFile ?? ProcessInfo.processInfo.environment["PIIVAULT_VAULT_KEY"], !keyPath.isEmpty
            else {
                throw ValidationError("--key-file is required (or PIIVAULT_VAULT_KEY): the vault secret key file")
            }
            // The key first: a missing, exposed or locked key file stops here, before the database is asked.
            let secretKey = try KeyLoading.loadVaultSecretKey(path: keyPath) {
                try PassphrasePrompt.read(prompt: "Passphrase for \(keyPath): ", confirm: false)
            }
            let wanted = try tokens + readTokenFile()
            try await Database.withConnection(database.resolved) { connection in
                let unmasker = Unmasker(connection: connection, secretKey: secretKey)
                if let userID {
                    let result = try await unmasker.unmask(userID: userID, reason: reason, maxRows: maxRows)
                    guard !result.rows.isEmpty else {
                        throw NotFound("no logins for user id \(userID) (access logged as entry \(result.logSeq))")
                    }
                    print(format.render(result.rows), terminator: "")
                    logged(result.logSeq)
                } else if let quarantined {
                    let result = try await unmasker.unmask(quarantinedMessageID: quarantined, reason: reason)
                    guard let message = result.rows else {
                        throw NotFound("no quarantined message with id \(quarantined) (access logged as entry \(result.logSeq))")
                    }
                    print(format.render(message), terminator: "")
                    logged(result.logSeq)
                } else {
                    let result = try await unmasker.unmask(tokens: wanted, reason: reason, maxRows: maxRows)
                    if !result.rows.values.isEmpty { print(format.render(result.rows), terminator: "") }
                    logged(result.logSeq)
                    let unknown = result.rows.unknownTokens
                    if !unknown.isEmpty {
                        throw NotFound("\(unknown.count) of \(Set(wanted).count) tokens are not in the vault: \(unknown.joined(separator: " ")); check them (a value that was never loaded has no token)")
                    }
                }
            }
        }
    }

    private func logged(_ seq: Int) {
        fflush(nil)  // stdout first (the values), then the note, also when both go to one file
        FileHandle.standardError.write(Data("piivault: access logged as entry \(seq)\n".utf8))
    }

    /// Tokens from `--token-file`, one per line; blank lines and surrounding spaces ignored.
    private func readTokenFile() throws -> [String] {
        guard let tokenFile else { return [] }
        let data: Data
        if tokenFile == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: tokenFile) else {
                throw ValidationError("cannot read --token-file \(tokenFile); check the path")
            }
            data = contents
        }
        let tokens = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline)
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !tokens.isEmpty else { throw ValidationError("--token-file \(tokenFile) holds no tokens") }
        try Self.checkTokens(tokens, source: "--token-file")
        return tokens
    }
}

/// Nothing matched what was asked for; the access is logged all the same.
private struct NotFound: PIIVaultReportableError {
    let message: String
    init(_ message: String) { self.message = message }
    var exitCode: PIIVaultExitCode { .failure }
}
