import ArgumentParser
import Foundation
import PIIVault

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Review and verify the access log (auditor).",
        discussion: """
            Run as a login in role piivault_auditor. The log is hash-chained; see SECURITY.md ("The access log") for the \
            chain, its serialisation, and how to check it with other tools. Checkpoints can be signed with the \
            auditor's own Ed25519 key (`audit keygen`) in minisign's formats, so that nobody else, the database \
            owner included, can make one.
            """,
        subcommands: [Log.self, Verify.self, Checkpoint.self, Keygen.self, Report.self]
    )

    /// `audit log`'s formats: the shared ones, and JSON lines for a log shipper.
    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case table, json, csv, jsonl
    }

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log", abstract: "List access-log entries, oldest first.",
            discussion: """
                --format jsonl streams one JSON object per line, with the entry's hash and the previous one, a page \
                at a time: with --after-seq N (the last seq already shipped) a SIEM shipper (Vector, Fluent Bit, \
                Filebeat) forwards the log incrementally.
                """)

        @OptionGroup var database: DatabaseOptions

        @Option(help: ArgumentHelp("Entries at or after this time (e.g. 2024-05-01 or 2024-05-01T12:00:00Z).",
                                   valueName: "TIME"))
        var since: String?

        @Option(help: ArgumentHelp("Entries before this time.", valueName: "TIME"))
        var until: String?

        @Option(help: ArgumentHelp("Entries by this database or operating-system user.", valueName: "USER"))
        var actor: String?

        @Option(help: ArgumentHelp("Entries with this action (unmask, forget, lookup, rewrap, ...).",
                                   valueName: "ACTION"))
        var action: String?

        @Option(help: ArgumentHelp("Entries with this outcome (ok, or a refusal's text).", valueName: "OUTCOME"))
        var outcome: String?

        @Option(help: ArgumentHelp("Entries after this sequence number.", valueName: "N"))
        var afterSeq: Int?

        @Option(help: "Output format: table, json, csv, jsonl.")
        var format: LogFormat = .table

        @OptionGroup var csv: CSVSafetyOptions

        func validate() throws {
            if let afterSeq, afterSeq < 0 { throw ValidationError("--after-seq must be 0 or more") }
            // A misspelt action would match nothing and look like an empty log.
            if let action, !AccessLogFilter.actions.contains(action) {
                throw ValidationError("--action \(action) is not an action the log records; use one of \(AccessLogFilter.actions.joined(separator: ", "))")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let filter = AccessLogFilter(since: since, until: until, actor: actor, action: action,
                                             outcome: outcome, afterSeq: afterSeq)
                guard let rowFormat = OutputFormat(rawValue: format.rawValue) else {
                    // jsonl: streamed a page at a time.
                    try await AuditorService(databaseURL: database.resolved).exportJSONLines(matching: filter) {
                        printOutput($0)
                    }
                    return
                }
                let entries = try await AccessLogService(databaseURL: database.resolved).entries(matching: filter)
                csv.print(AccessLogRows(entries), as: rowFormat)
            }
        }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify",
            abstract: "Recompute the access log's hash chain.",
            discussion: """
                Exit 0 when every entry is unchanged and in place; exit 1 naming the first modified, missing or \
                reordered entry. With --anchor (printed earlier by `piivault audit checkpoint` and kept outside the \
                database) it also detects a chain rewritten or truncated since. With --checkpoint FILE and \
                --auditor-key auditor.pub it first checks the checkpoint's signature (FILE.minisig beside it; exit 1 \
                when it is not the auditor's or was changed), then that the log still extends the signed head.
                """)

        @OptionGroup var database: DatabaseOptions

        @Option(help: ArgumentHelp("A head printed earlier by `audit checkpoint`.", valueName: "SEQ:HASH"))
        var anchor: String?

        @Option(name: .customLong("checkpoint"),
                help: ArgumentHelp("A signed checkpoint written by `audit checkpoint --sign` (repeatable).", valueName: "FILE"))
        var checkpoints: [String] = []

        @Option(help: ArgumentHelp("The auditor's public key (auditor.pub) that signed the checkpoints.", valueName: "FILE"))
        var auditorKey: String?

        func validate() throws {
            if let anchor, AccessLogAnchor(parsing: anchor) == nil {
                throw ValidationError("--anchor must be SEQ:HASH as printed by `piivault audit checkpoint` (HASH is 64 hex digits)")
            }
            if !checkpoints.isEmpty && auditorKey == nil {
                throw ValidationError("--checkpoint needs --auditor-key auditor.pub: a checkpoint is only worth its signature")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let anchor = self.anchor.flatMap(AccessLogAnchor.init(parsing:))
                let verdict: AccessLogVerdict
                var signed: [SignedCheckpoint] = []
                if let auditorKey {
                    let key = try AuditorKeys.loadPublicKey(path: auditorKey)
                    (verdict, signed) = try await AuditorService(databaseURL: database.resolved)
                        .verify(checkpoints: checkpoints, auditorKey: key, anchor: anchor)
                } else {
                    verdict = try await AccessLogService(databaseURL: database.resolved).verify(anchor: anchor)
                }
                switch verdict {
                case .intact(let count, let head):
                    print("access log intact: \(count) entries, head \(head)"
                          + (anchor.map { ", anchor \($0.seq) matches" } ?? "")
                          + signed.map { ", signed checkpoint \($0.head.seq) (\($0.takenAt)) matches" }.joined())
                case .broken(let damage):
                    print(damage.message)
                    throw ExitCode(damage.exitCode.rawValue)
                }
            }
        }
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint",
            abstract: "Print the chain's current head as SEQ:HASH, to keep elsewhere; or sign it.",
            discussion: """
                Verifies the chain first and refuses (exit 1) if it is broken. Keep the line outside the database \
                (a ticket, another system); `piivault audit verify --anchor SEQ:HASH` later proves the log was not \
                rewritten or truncated since. With --sign auditor.key it writes the head, the time and the database \
                as a statement to --out FILE and its minisign signature to FILE.minisig (neither may exist): \
                `minisign -V -p auditor.pub -m FILE` checks it, and so does `piivault audit verify --checkpoint FILE`.
                """)

        @OptionGroup var database: DatabaseOptions

        @Option(help: ArgumentHelp("Sign the checkpoint with this auditor key (from `audit keygen`).", valueName: "FILE"))
        var sign: String?

        @Option(help: ArgumentHelp("With --sign: where the signed statement goes (default: piivault-checkpoint-TIME.txt).", valueName: "FILE"))
        var out: String?

        func validate() throws {
            if out != nil && sign == nil {
                throw ValidationError("--out names the signed statement's file and goes with --sign auditor.key; without --sign the checkpoint line is printed (redirect it to keep it)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                guard let sign else {
                    print(try await AccessLogService(databaseURL: database.resolved).checkpoint())
                    return
                }
                let key = try AuditorKeys.loadSecretKey(path: sign)
                let path = out ?? "piivault-checkpoint-"
                    + SignedCheckpoint.now().replacingOccurrences(of: ":", with: "").replacingOccurrences(of: "-", with: "") + ".txt"
                let checkpoint = try await AuditorService(databaseURL: database.resolved).signCheckpoint(with: key, to: path)
                print(checkpoint.head)
                FileHandle.standardError.write(Data("piivault: signed checkpoint written to \(path) and \(path).minisig\n".utf8))
            }
        }
    }

    struct Keygen: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keygen",
            abstract: "Create the auditor's signing key pair (auditor.key, auditor.pub).",
            discussion: """
                An Ed25519 key pair in minisign's formats: auditor.key (secret, mode 0600, not passphrase-protected: \
                keep it on the auditor's machine) and auditor.pub (give it to whoever verifies). Never overwrites.
                """)

        @Option(name: .customLong("dir"), help: ArgumentHelp("The folder to write the key files to.", valueName: "DIR"))
        var directory: String = "."

        func run() async throws {
            let keys = try await reportingErrors { try AuditorKeys.generate(in: directory) }
            print("""
                auditor key id \(keys.keyID)
                  \(keys.secretKey)  secret: the auditor's only; mode 0600
                  \(keys.publicKey)  public: for `audit verify --auditor-key` and `minisign -V -p`
                """)
        }
    }

    struct Report: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "report",
            abstract: "Write a self-contained HTML review of the access log.",
            discussion: """
                One page, no scripts, nothing loaded from elsewhere: the chain's verification (against the signed \
                checkpoints given), accesses per officer and per day as charts, refusals and unusual outcomes, the \
                largest requests, erasures and key rotations. Exit 1 when the chain does not verify (the page is \
                still written, saying so).
                """)

        @OptionGroup var database: DatabaseOptions

        @Option(help: ArgumentHelp("Write the page to FILE.", valueName: "FILE"))
        var html: String

        @Option(help: ArgumentHelp("Entries at or after this time.", valueName: "TIME"))
        var since: String?

        @Option(help: ArgumentHelp("Entries before this time.", valueName: "TIME"))
        var until: String?

        @Option(name: .customLong("checkpoint"),
                help: ArgumentHelp("A signed checkpoint to verify the chain against (repeatable).", valueName: "FILE"))
        var checkpoints: [String] = []

        @Option(help: ArgumentHelp("The auditor's public key for the checkpoints.", valueName: "FILE"))
        var auditorKey: String?

        func validate() throws {
            if !checkpoints.isEmpty && auditorKey == nil {
                throw ValidationError("--checkpoint needs --auditor-key auditor.pub")
            }
        }

        func run() async throws {
            let report = try await reportingErrors {
                let key = try auditorKey.map(AuditorKeys.loadPublicKey(path:))
                let report = try await AuditorService(databaseURL: database.resolved)
                    .report(since: since, until: until, checkpoints: checkpoints, auditorKey: key)
                do {
                    try AtomicFile.replace(html, with: Array(report.html.utf8), mode: 0o644)
                } catch {
                    throw OutputFileError(path: html, error: error)
                }
                return report
            }
            print("report written to \(html): \(report.entries.count) entries")
            if case .broken(let damage) = report.verdict {
                printError(damage.message)
                throw ExitCode(damage.exitCode.rawValue)
            }
        }
    }
}
