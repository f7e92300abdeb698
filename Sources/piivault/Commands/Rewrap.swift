import ArgumentParser
import Foundation
import PIIVault

struct Rewrap: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rewrap",
        abstract: "Re-seal the vault's data keys from an old vault key to a new one (compliance; logged).",
        discussion: """
            Run as a login in role piivault_compliance, with the old vault secret key file (--key-file) and the new \
            key pair's vault.pub (--to). Appends one rewrap entry (both key ids, the number of data keys) and commits \
            it first; then, in batches of --batch-size, each its own transaction, opens every data key sealed to the \
            old key and seals it again to the new one (the values are not touched). A run that is killed is finished \
            by running it again; a finished one run again rewraps nothing and says so. Data keys sealed to other \
            vault keys are counted and left alone.

            --full (after an exposure of the old key): also re-encrypts every sealed value and quarantined body under \
            new data keys sealed to the new key, then deletes the old data keys, so that no data key sealed to the \
            old key remains (old backups still hold them until they expire). --dry-run prints the counts and changes \
            and logs nothing.

            Exit status: 0 done (or nothing to do); 1 failure, or (--full) old data keys still in use: run it again; \
            64 usage (no --reason, --to is the old key's public key); 65 key file malformed, or data keys or values \
            that did not open (left as they are, logged); 69 database unavailable, or the access log locked; 75 the action's dual-control policy asks for approvals: a request was recorded, nothing done (run \
            again with --request N once approved); 77 key \
            file mode/owner, wrong passphrase, or a login outside piivault_compliance (the attempt is logged).
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var approval: ApprovalRequestOptions

    /// The old vault secret key.
    @OptionGroup var vaultKey: VaultSecretKeyOptions

    @Option(name: .customLong("to"), help: ArgumentHelp("The new key pair's vault.pub.", valueName: "FILE"))
    var newPublicKey: String

    @Option(help: ArgumentHelp("Why (the rotation's ticket); logged.", valueName: "TEXT"))
    var reason: String?

    @Flag(help: "Also re-encrypt every value under new data keys and delete the old data keys (after an exposure).")
    var full = false

    @Option(help: "Data keys (with --full: values) per transaction.")
    var batchSize: Int = 500

    @Flag(help: "Print what would be rewrapped; change nothing, log nothing.")
    var dryRun = false

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: give the rotation's ticket; it is logged")
        }
        guard (1...100_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 100000") }
    }

    func run() async throws {
        try await reportingErrors {
            let environment = ProcessInfo.processInfo.environment
            // Both keys first: a refused key file never reaches the database.
            let oldKey = try await vaultKey.load(
                missing: "--key-file is required (or PIIVAULT_VAULT_KEY): the old vault secret key file")
            let newKey = try KeyLoading.loadVaultPublicKey(path: newPublicKey, option: "--to")
            let service = RewrapService(databaseURL: database.resolved, caller: approval.caller, afterBatch: faultExitAfterCommits(environment))
            let (report, shortfall) = try await service.run(
                RewrapRequest(oldSecretKey: oldKey, newPublicKey: newKey, reason: reason ?? "", full: full,
                              batchSize: batchSize, dryRun: dryRun))
            printOutput(report.text)
            flushBeforeNote()
            if let seq = report.logSeq {
                FileHandle.standardError.write(Data("piivault: rewrap logged as entry \(seq)\n".utf8))
            } else if dryRun {
                FileHandle.standardError.write(Data("piivault: dry run: nothing changed, nothing logged\n".utf8))
            }
            if let shortfall { throw shortfall }
        }
    }
}
