import ArgumentParser
import Foundation
import PIIVault

struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Move a token key or vault secret key file into AWS KMS (wrap) or out of it (unwrap).",
        subcommands: [Wrap.self, Unwrap.self])

    struct Wrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wrap",
            abstract: "Write a KMS-wrapped copy of a key file.",
            discussion: """
                Reads FILE (token.key, or vault.key plain or passphrase-protected: the passphrase is asked on the \
                terminal or read from PIIVAULT_PASSPHRASE_FILE), has KMS Encrypt its key under --kms-key-id with the \
                encryption context piivault:key=token|vault, piivault:key-id=<key id>, and writes the wrapped file to \
                --out (created, never replaced; mode 0600). FILE is left as it is: once the wrapped file works, \
                destroy it (shred -u FILE) and its copies. Nothing else is written.

                Exit status: 0 written; 64 usage, or FILE already wrapped; 65 FILE malformed; 69 KMS unreachable or \
                failing; 77 FILE mode/owner, wrong passphrase, or KMS refused (access denied, disabled key).
                """)

        @Argument(help: ArgumentHelp("The key file to wrap.", valueName: "FILE"))
        var file: String

        @Option(help: ArgumentHelp("The KMS key (key id, ARN, alias name or alias ARN).", valueName: "KEY"))
        var kmsKeyID: String

        @Option(help: ArgumentHelp("The wrapped file to create.", valueName: "NEW"))
        var out: String

        func validate() throws {
            guard KMSKeyFile.isValidKMSKeyID(kmsKeyID) else {
                throw ValidationError("--kms-key-id: give a KMS key id, key ARN, alias name (alias/...) or alias ARN")
            }
        }

        func run() async throws {
            let result = try await reportingErrors {
                try await KeyWrapping.wrap(file: file, kmsKeyID: kmsKeyID, out: out, kms: .process) {
                    try PassphrasePrompt.read(prompt: "Passphrase for \(file): ", confirm: false)
                }
            }
            print("\(result.kind.rawValue) key id \(result.keyID)\n  \(result.path)  wrapped by KMS key \(result.kmsKeyID); mode 0600")
        }
    }

    struct Unwrap: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "unwrap",
            abstract: "Write the plaintext key file of a KMS-wrapped key file (for leaving KMS).",
            discussion: """
                Has KMS Decrypt FILE's key (with its encryption context), checks its key id, and writes the plaintext \
                key file to --out (created, never replaced; mode 0600). Nothing else is written.

                Exit status: 0 written; 64 usage, or FILE not wrapped; 65 FILE malformed; 69 KMS unreachable or \
                failing; 77 FILE mode/owner, or KMS refused (access denied, another key, altered file).
                """)

        @Argument(help: ArgumentHelp("The KMS-wrapped key file.", valueName: "FILE"))
        var file: String

        @Option(help: ArgumentHelp("The plaintext key file to create.", valueName: "NEW"))
        var out: String

        func run() async throws {
            let result = try await reportingErrors {
                try await KeyWrapping.unwrap(file: file, out: out, kms: .process)
            }
            print("\(result.kind.rawValue) key id \(result.keyID)\n  \(result.path)  plaintext, unwrapped from KMS key \(result.kmsKeyID); mode 0600: keep it as secret as the key it is")
        }
    }
}
