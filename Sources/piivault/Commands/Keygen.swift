import ArgumentParser
import Foundation
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

            With --vault-key-only, writes only a new vault key pair (vault.pub, vault.key), for a vault key rotation \
            (then `piivault rewrap --to NEW/vault.pub`): the token key stays the one in use.

            With --token-key-version N (2 or more), writes only a new token.key of that version (tokens ip.vN. and \
            dev.vN.), for a token key rotation; --previous-token-key names the key it replaces, whose tombstone key \
            it carries forward so that users forgotten before the rotation stay forgotten.

            With --kms-key-id KEY (a KMS key id, key ARN, alias name or alias ARN), token.key and vault.key are \
            written wrapped by AWS KMS (PIIVAULT-TOKEN-KEY-KMS-1, PIIVAULT-VAULT-SECRET-KEY-KMS-1): KMS Encrypt under \
            the encryption context piivault:key=token|vault, piivault:key-id=<key id>; every command that opens them \
            calls KMS Decrypt (AWS settings as for SQS: credentials chain, AWS_REGION, AWS_ENDPOINT_URL_KMS, \
            AWS_CA_BUNDLE). No plaintext key is written anywhere.
            """)

    @Option(name: .customLong("dir"), help: ArgumentHelp("The folder to write the key files to.", valueName: "DIR"))
    var directory: String = "."

    @Flag(help: "Protect vault.key with a passphrase (Argon2id).")
    var passphrase = false

    @Flag(help: "Write only a new vault key pair (vault.pub, vault.key), no token.key: for a vault key rotation.")
    var vaultKeyOnly = false

    @Option(help: ArgumentHelp("Write only a new token key of this version (2 or more).", valueName: "N"))
    var tokenKeyVersion: Int?

    @Option(help: ArgumentHelp("With --token-key-version: the token key being replaced (its tombstone key is kept).",
                               valueName: "FILE"))
    var previousTokenKey: String?

    @Option(help: ArgumentHelp("Write token.key and vault.key wrapped by this AWS KMS key (key id, ARN, alias name or alias ARN).",
                               valueName: "KEY"))
    var kmsKeyID: String?

    func validate() throws {
        if let kmsKeyID {
            guard KMSKeyFile.isValidKMSKeyID(kmsKeyID) else {
                throw ValidationError("--kms-key-id: give a KMS key id, key ARN, alias name (alias/...) or alias ARN")
            }
            guard !passphrase else { throw ValidationError("--passphrase and --kms-key-id both protect vault.key: use one") }
        }
        if let tokenKeyVersion {
            guard tokenKeyVersion >= 2 && tokenKeyVersion <= 999_999_999 else {
                throw ValidationError("--token-key-version must be 2 to 999999999 (version 1 is the first key keygen writes)")
            }
            guard !passphrase else { throw ValidationError("--passphrase protects vault.key; --token-key-version writes only token.key") }
            guard !vaultKeyOnly else { throw ValidationError("--vault-key-only writes only the vault key pair; --token-key-version writes only token.key: use one") }
        } else if previousTokenKey != nil {
            throw ValidationError("--previous-token-key goes with --token-key-version")
        }
    }

    func run() async throws {
        if let kmsKeyID { return try await runWrapped(kmsKeyID: kmsKeyID) }
        if let tokenKeyVersion {
            let written = try await reportingErrors {
                let previous = try await previousKey()
                return try KeyGeneration.generateTokenKey(in: directory, version: tokenKeyVersion, previous: previous)
            }
            print("""
                token key id \(written.keyID), version \(written.version)
                  \(written.path)  secret: give it to the ETL (and to compliance, for lookup and retokenize); mode 0600
                """)
            if !written.tombstoneKeyCarried {
                FileHandle.standardError.write(Data("piivault: warning: no --previous-token-key: this key has a new tombstone key, so users forgotten under earlier token keys are not recognised by runs with it; give the previous key unless none was ever used\n".utf8))
            }
            return
        }
        let passphraseSource: (() throws -> SecretBytes)? = passphrase
            ? { try PassphrasePrompt.read(prompt: "Passphrase for vault.key: ", confirm: true) } : nil
        let vault: KeyGeneration.GeneratedVaultKeyPair
        if vaultKeyOnly {
            vault = try await reportingErrors {
                try KeyGeneration.generateVaultKeyPair(in: directory, passphrase: passphraseSource)
            }
        } else {
            let keys = try await reportingErrors { try KeyGeneration.generate(in: directory, passphrase: passphraseSource) }
            print("""
                token key id \(keys.tokenKeyID)
                  \(keys.tokenKeyPath)  secret: give it to the ETL (and to compliance, for lookup); mode 0600
                """)
            vault = KeyGeneration.GeneratedVaultKeyPair(
                vaultKeyID: keys.vaultKeyID, vaultPublicKeyPath: keys.vaultPublicKeyPath,
                vaultSecretKeyPath: keys.vaultSecretKeyPath, passphraseProtected: keys.passphraseProtected)
        }
        print("""
            vault key id \(vault.vaultKeyID)
              \(vault.vaultPublicKeyPath)  public: give it to the ETL
              \(vault.vaultSecretKeyPath)  secret\(vault.passphraseProtected ? ", passphrase-protected" : ""): \
            give it to the compliance officer only, never to the ETL; mode 0600
            """)
    }

    /// `--previous-token-key`, in any form (KMS-wrapped included).
    private func previousKey() async throws -> TokenKey? {
        guard let previousTokenKey else { return nil }
        return try await KeyLoading.loadTokenKey(path: previousTokenKey, option: "--previous-token-key", kms: .process)
    }

    /// keygen --kms-key-id: the same files, token.key and vault.key wrapped by KMS.
    private func runWrapped(kmsKeyID: String) async throws {
        let written = try await reportingErrors {
            let previous = try await previousKey()
            return try await KeyGeneration.generateWrapped(
                in: directory, kmsKeyID: kmsKeyID, tokenKey: !vaultKeyOnly, vaultKeyPair: tokenKeyVersion == nil,
                tokenKeyVersion: tokenKeyVersion ?? 1, previous: previous, kms: .process)
        }
        if let token = written.tokenKey {
            print("""
                token key id \(token.id)\(token.version > 1 ? ", version \(token.version)" : "")
                  \(token.path)  secret, wrapped by KMS key \(kmsKeyID): give it to the ETL (and to compliance, for lookup); mode 0600
                """)
            if tokenKeyVersion != nil && previousTokenKey == nil {
                FileHandle.standardError.write(Data("piivault: warning: no --previous-token-key: this key has a new tombstone key, so users forgotten under earlier token keys are not recognised by runs with it; give the previous key unless none was ever used\n".utf8))
            }
        }
        if let vault = written.vault {
            print("""
                vault key id \(vault.vaultKeyID)
                  \(vault.vaultPublicKeyPath)  public: give it to the ETL
                  \(vault.vaultSecretKeyPath)  secret, wrapped by KMS key \(kmsKeyID): give it to the compliance officer only, never to the ETL; mode 0600
                """)
        }
    }
}
