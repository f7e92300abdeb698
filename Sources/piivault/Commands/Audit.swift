import ArgumentParser

struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Review and verify the access log (auditor).",
        subcommands: [Log.self, Verify.self, Checkpoint.self]
    )

    struct Log: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "log", abstract: "List access-log entries.")
        func run() async throws { try notImplemented("audit log") }
    }

    struct Verify: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "verify", abstract: "Recompute the access log's hash chain.")
        func run() async throws { try notImplemented("audit verify") }
    }

    struct Checkpoint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "checkpoint", abstract: "Print the chain's current head, to keep elsewhere.")
        func run() async throws { try notImplemented("audit checkpoint") }
    }
}
