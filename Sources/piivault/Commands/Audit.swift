import ArgumentParser
import PIIVault

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Review and verify the access log (auditor).",
        discussion: """
            Run as a login in role piivault_auditor. The log is hash-chained; see SECURITY.md ("The access log") for the \
            chain, its serialisation, and how to check it with other tools.
            """,
        subcommands: [Log.self, Verify.self, Checkpoint.self]
    )

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "log", abstract: "List access-log entries, oldest first.")

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

        @Option(help: "Output format.")
        var format: OutputFormat = .table

        func run() async throws {
            try await reportingErrors {
                let filter = AccessLogFilter(since: since, until: until, actor: actor, action: action)
                let entries = try await AccessLogService(databaseURL: database.resolved).entries(matching: filter)
                print(format.render(entries), terminator: "")
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
                database) it also detects a chain rewritten or truncated since.
                """)

        @OptionGroup var database: DatabaseOptions

        @Option(help: ArgumentHelp("A head printed earlier by `audit checkpoint`.", valueName: "SEQ:HASH"))
        var anchor: String?

        func validate() throws {
            if let anchor, AccessLogAnchor(parsing: anchor) == nil {
                throw ValidationError("--anchor must be SEQ:HASH as printed by `piivault audit checkpoint` (HASH is 64 hex digits)")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let anchor = self.anchor.flatMap(AccessLogAnchor.init(parsing:))
                let verdict = try await AccessLogService(databaseURL: database.resolved).verify(anchor: anchor)
                switch verdict {
                case .intact(let count, let head):
                    print("access log intact: \(count) entries, head \(head)"
                          + (anchor.map { ", anchor \($0.seq) matches" } ?? ""))
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
            abstract: "Print the chain's current head as SEQ:HASH, to keep elsewhere.",
            discussion: """
                Verifies the chain first and refuses (exit 1) if it is broken. Keep the line outside the database \
                (a ticket, another system); `piivault audit verify --anchor SEQ:HASH` later proves the log was not \
                rewritten or truncated since.
                """)

        @OptionGroup var database: DatabaseOptions

        func run() async throws {
            try await reportingErrors {
                let head = try await AccessLogService(databaseURL: database.resolved).checkpoint()
                print(head)
            }
        }
    }
}
