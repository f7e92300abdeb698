import ArgumentParser
import Foundation
import PIIVault

struct Retokenize: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retokenize",
        abstract: "Move every token and sealed value to the version of a new token key (compliance; logged).",
        discussion: """
            Run as a login in role piivault_compliance, with the vault secret key file and the new token key (written \
            by keygen --token-key-version N). Appends one retokenize entry (subject: the versions; outcome: how many \
            values and logins it found), then, in batches of --batch-size values, each one transaction: opens each \
            value of an older token version, computes its token under the new key, seals it again bound to the new \
            token under a new data key sealed to the vault key, rewrites masked_ip and masked_device_id in \
            user_logins, and deletes the old value. A value the ETL already sealed under the new version is kept and \
            the logins join it. Killed midway, the batches done stay done; run it again to move the rest (a new \
            entry). Quarantined bodies have no token and are not touched. Switch the ETL to the new key first: \
            values an ETL run still tokenizes with an older key need another retokenize.

            Exit status: 0 done; 1 failure (batches committed before it stay done), or the vault holds a newer \
            version than the key's; 64 usage; 65 key file malformed, or a value that does not open (logged); 69 \
            database unavailable, or the access log locked; 75 the action's dual-control policy asks for approvals: a request was recorded, nothing done (run \
            again with --request N once approved); 77 key file mode/owner, wrong passphrase, values sealed \
            to another vault key (logged), or a login outside piivault_compliance (logged).
            """)

    @OptionGroup var database: DatabaseOptions

    @OptionGroup var approval: ApprovalRequestOptions

    @OptionGroup var vaultKey: VaultSecretKeyOptions

    /// The new token key: its version is the target.
    @OptionGroup var tokenKey: TokenKeyOptions

    @Option(help: ArgumentHelp("Why (the rotation's change or incident number); logged.", valueName: "TEXT"))
    var reason: String?

    @Option(help: "Values moved per transaction (1 to 100000).")
    var batchSize: Int = 1000

    func validate() throws {
        guard let reason, !reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw ValidationError("--reason is required: give the rotation's change or incident number; it is logged")
        }
        guard (1...100_000).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 100000") }
    }

    func run() async throws {
        try await reportingErrors {
            let environment = ProcessInfo.processInfo.environment
            let keyPath = try vaultKey.path(
                missing: "--key-file is required (or PIIVAULT_VAULT_KEY): the vault secret key file")
            let newKeyPath = try tokenKey.path(missing: "--token-key is required (or PIIVAULT_TOKEN_KEY): the new token key")
            // The keys first: a missing, exposed or locked key file stops here, before the database is asked.
            let secretKey = try await VaultSecretKeyOptions.load(path: keyPath)
            let newKey = try await KeyLoading.loadTokenKey(path: newKeyPath, option: "--token-key", kms: .process)
            var service = RetokenizeService(databaseURL: database.resolved, secretKey: secretKey, tokenKey: newKey,
                                            caller: approval.caller)
            service.afterCommit = faultExitAfterCommits(environment)
            let report = try await service.run(RetokenizeRequest(reason: reason ?? "", batchSize: batchSize))
            printOutput(report.text)
            flushBeforeNote()
            FileHandle.standardError.write(Data("piivault: retokenize logged as entry \(report.logSeq)\n".utf8))
        }
    }
}
