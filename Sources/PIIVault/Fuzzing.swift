/// Entry points for the libFuzzer harnesses (`Fuzz/`, `make fuzz`) into parsers that are internal: the narrowest
/// seam that reaches each without `@testable import` (which needs a debug build with testing enabled). Not API:
/// only `@_spi(Fuzzing) import PIIVault` sees it, and only the harnesses import it so.
@_spi(Fuzzing) public enum PIIVaultFuzzing {
    /// Reads `text` as every key file piivault loads would: a token key (`PIIVAULT-TOKEN-KEY-1`, `-2`), the vault
    /// public key, the vault secret key (plain; for a passphrase-protected one the passphrase prompt fails, since
    /// Argon2id would take a second per input), a KMS-wrapped key file (parsed, not unwrapped: that is KMS's call) and
    /// the label check that chooses between them. Errors are the parsers' answers, not failures.
    public static func readKeyFileText(_ text: [UInt8]) {
        struct NoPassphrase: Error {}
        let path = "fuzz.key"
        _ = try? KeyLoading.tokenKey(text: text, path: path)
        _ = try? KeyLoading.vaultPublicKey(text: text, path: path)
        _ = try? KeyLoading.vaultSecretKey(text: text, path: path, passphrase: { throw NoPassphrase() })
        _ = try? KMSKeyFile.parse(text, file: path)
        for expected in [[KeyFileLabel.tokenKey, .tokenKeyVersioned, .tokenKeyKMS],
                         [.vaultSecretKey, .vaultEncryptedKey, .vaultSecretKeyKMS]] {
            _ = try? KeyLoading.label(of: text, file: path, expected: expected)
        }
    }
}
