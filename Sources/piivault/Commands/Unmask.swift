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

            Every value is checked against its token with the token key of the token's version (--token-key, \
            repeatable, or PIIVAULT_TOKEN_KEY; a version without its key is named in a warning, unchecked): a value \
            that is not the value of its token was planted by someone who could write to the vault; it is reported \
            as forged, withheld, and logged. --no-verify-tokens skips the check (for an officer without token.key). \
            Values sealed to another vault key than the key file's are withheld row by row; the rest are printed.

            When the unmask policy asks for approvals (piivault policy show), the command records a request instead, \
            prints `request N waits for M approval(s) ...` and no value, and exits 75; once other compliance \
            officers approved it (piivault approve N), run `piivault unmask --request N` with the key files: the \
            request's own target and reason are used (or give the same target again).

            Exit status: 0 all found and printed; 1 some tokens unknown (the others are printed), no such user or \
            message, or over --max-rows; 64 usage (no --reason, not exactly one of --token/--user-id/--quarantined, \
            no --token-key without --no-verify-tokens); 65 key file malformed, or a value moved, damaged or forged; \
            69 database unavailable, or the access log locked by another session; 75 a request was recorded for approval \
            (dual control); 77 a --request not approved, expired, executed or another's; key file mode/owner, wrong \
            passphrase, another vault's key, or a login outside piivault_compliance.
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var vaultKey: VaultSecretKeyOptions

    /// To check each value against its token.
    @OptionGroup var tokenKeys: TokenKeysOptions

    @Flag(help: "Do not check values against their tokens (no token key needed; a forged value goes unnoticed).")
    var noVerifyTokens = false

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

    @OptionGroup var csv: CSVSafetyOptions

    @Option(help: "Refuse (and log the refusal) when more rows than this would be returned.")
    var maxRows: Int = 100

    @OptionGroup var approval: ApprovalRequestOptions

    func validate() throws {
        let modes = [!tokens.isEmpty || tokenFile != nil, userID != nil, quarantined != nil].filter { $0 }.count
        // With --request and nothing else, the request's own target and reason are run.
        if approval.request != nil && modes == 0 && reason == nil { return }
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: say why this access is needed (case or request number); it is logged")
        }
        guard modes == 1 || (modes == 0 && approval.request != nil) else {
            throw ValidationError("give exactly one of --token (or --token-file), --user-id, --quarantined")
        }
        guard maxRows >= 1 else { throw ValidationError("--max-rows must be 1 or more") }
        _ = try Self.checkTokens(tokens, source: "--token")
    }

    /// Parses tokens, refusing anything that is not shaped like a token without echoing it: a value typed or
    /// pasted by mistake must not reach the terminal's scrollback or the access log.
    static func checkTokens(_ tokens: [String], source: String) throws -> [Token] {
        let parsed = tokens.compactMap(Token.init(parsing:))
        guard parsed.count == tokens.count else {
            throw ValidationError("\(source): \(tokens.count - parsed.count) of \(tokens.count) arguments are not tokens (ip.v1.<64 hex digits> or dev.v1.<64 hex digits>); not shown, in case they are values")
        }
        return parsed
    }

    func run() async throws {
        try await reportingErrors {
            var reason = self.reason ?? ""
            // The key first: a missing, exposed or locked key file stops here, before the database is asked.
            let secretKey = try await vaultKey.load(
                missing: "--key-file is required (or PIIVAULT_VAULT_KEY): the vault secret key file")
            let tokenKeys = noVerifyTokens ? nil : try await self.tokenKeys.load(
                missing: "--token-key is required (or PIIVAULT_TOKEN_KEY), to check each value against its token; pass --no-verify-tokens to skip the check")
            let target: UnmaskRequest.Target
            if let request = approval.request, tokens.isEmpty, tokenFile == nil, userID == nil, quarantined == nil {
                // The approved request's own target, read from its access-log entry (the database still compares).
                let asked = try await DualControlService(databaseURL: database.resolved).request(id: request)
                do {
                    target = try UnmaskRequest.Target(loggedSubject: asked.subject, request: request)
                } catch DualControlError.otherTarget(let id) where asked.action != "unmask" {
                    // A forget request, say: no target unmask could take (one it could, the database refuses).
                    throw DualControlError.otherAction(id, asked.action, "unmask")
                }
                if reason.isEmpty { reason = asked.reason }
            } else if let userID {
                target = .userID(userID)
            } else if let quarantined {
                target = .quarantined(messageID: quarantined)
            } else {
                target = .tokens(try Self.checkTokens(tokens, source: "--token") + readTokenFile())
            }
            let service = UnmaskService(databaseURL: database.resolved, secretKey: secretKey, tokenKeys: tokenKeys,
                                        caller: approval.caller)
            let report = try await service.run(UnmaskRequest(target, reason: reason, maxRows: maxRows))
            for version in report.unverifiedTokenVersions {
                FileHandle.standardError.write(Data("piivault: warning: values of token key version \(version) were not checked against their tokens: no token key of that version was given (add --token-key for it)\n".utf8))
            }
            if let rows = report.rows {
                csv.print(rows, as: format)
                try logged(report.logSeq)
            }
            if let shortfall = report.shortfall { throw shortfall }
        }
    }

    /// The note that the access is logged, after the values (also when both go to one file); it is printed even when
    /// the values could not be written, and the command then fails.
    private func logged(_ seq: Int) throws {
        let written = Result { try flushStandardOutput() }
        FileHandle.standardError.write(Data("piivault: access logged as entry \(seq)\n".utf8))
        try written.get()
    }

    /// Tokens from `--token-file`, one per line; blank lines and surrounding spaces ignored.
    private func readTokenFile() throws -> [Token] {
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
        return try Self.checkTokens(tokens, source: "--token-file")
    }
}
