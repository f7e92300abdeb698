import ArgumentParser
import PIIVault

struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Create token and vault key files.",
        discussion: """
            Writes token.key (secret, for the ETL), vault.pub (public, for the ETL) and vault.key (secret, for the \
            compliance officer only). Never overwrites: if any of them exists, nothing is written. With \
            --passphrase, vault.key is encrypted under a passphrase asked twice on the terminal (or read from the \
            file named by PIIVAULT_PASSPHRASE_FILE).
            """)

    @Option(name: .customLong("dir"), help: ArgumentHelp("The folder to write the key files to.", valueName: "DIR"))
    var directory: String = "."

    @Flag(help: "Protect vault.key with a passphrase (Argon2id).")
    var passphrase = false

    func run() async throws {
        let keys = try await reportingErrors {
            try KeyGeneration.generate(
                in: directory,
                passphrase: passphrase
                    ? { try PassphrasePrompt.read(prompt: "Passphrase for vault.key: ", confirm: true) } : nil)
        }
        print("""
            token key id \(keys.tokenKeyID)
              \(keys.tokenKeyPath)  secret: give it to the ETL (and to compliance, for lookup); mode 0600
            vault key id \(keys.vaultKeyID)
              \(keys.vaultPublicKeyPath)  public: give it to the ETL
              \(keys.vaultSecretKeyPath)  secret\(keys.passphraseProtected ? ", passphrase-protected" : ""): \
            give it to the compliance officer only, never to the ETL; mode 0600
            """)
    }
}
