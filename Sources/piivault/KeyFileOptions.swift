import ArgumentParser
import Foundation
import PIIVault

/// `--key-file`: the vault secret key file (plain, passphrase-protected or KMS-wrapped), for every command that opens sealed data (`unmask`, `rewrap`,
/// `retokenize`).
struct VaultSecretKeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The vault secret key file (also PIIVAULT_VAULT_KEY).", valueName: "FILE"))
    var keyFile: String?

    /// Loads and checks the key file (mode, owner, passphrase from `PIIVAULT_PASSPHRASE_FILE` or the terminal).
    /// `missing` is the usage error when neither the flag nor the variable names a file.
    func load(missing: String) async throws -> VaultSecretKey {
        try await Self.load(path: try path(missing: missing))
    }

    /// The key file's path. `missing` is the usage error when none is given.
    func path(missing: String) throws -> String {
        guard let path = KeyFilePaths.vaultSecretKey(flag: keyFile, environment: ProcessInfo.processInfo.environment)
        else { throw ValidationError(missing) }
        return path
    }

    /// Loads and checks the vault secret key file at `path` (plain, passphrase-protected or KMS-wrapped).
    static func load(path: String) async throws -> VaultSecretKey {
        try await KeyLoading.loadVaultSecretKey(path: path, option: "--key-file", kms: .process) {
            try PassphrasePrompt.read(prompt: "Passphrase for \(path): ", confirm: false)
        }
    }
}

/// `--token-key`, repeatable: one token key file per version present (`unmask`, `lookup`).
struct TokenKeysOptions: ParsableArguments {
    @Option(help: ArgumentHelp("A token key file (also PIIVAULT_TOKEN_KEY); repeat it for each token key version present.",
                               valueName: "FILE"))
    var tokenKey: [String] = []

    /// Loads every key given. `missing` is the usage error when none is given.
    func load(missing: String) async throws -> TokenKeySet {
        guard let paths = KeyFilePaths.tokenKeys(flags: tokenKey, environment: ProcessInfo.processInfo.environment)
        else { throw ValidationError(missing) }
        var keys: [TokenKey] = []
        for path in paths { keys.append(try await KeyLoading.loadTokenKey(path: path, option: "--token-key", kms: .process)) }
        return try TokenKeySet(keys)
    }
}

/// `--token-key`, once: the token key file (`forget`; `retokenize`'s new key).
struct TokenKeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The token key file (also PIIVAULT_TOKEN_KEY).", valueName: "FILE"))
    var tokenKey: String?

    /// The key file's path. `missing` is the usage error when none is given.
    func path(missing: String) throws -> String {
        guard let path = KeyFilePaths.tokenKey(flag: tokenKey, environment: ProcessInfo.processInfo.environment)
        else { throw ValidationError(missing) }
        return path
    }

    /// Loads the key. `missing` is the usage error when none is given.
    func load(missing: String) async throws -> TokenKey {
        try await KeyLoading.loadTokenKey(path: try path(missing: missing), option: "--token-key", kms: .process)
    }
}
