/// Which key files a compliance command was given: the flag, else its `PIIVAULT_*` variable. Resolved here, in the
/// core, for every command (the ETL's own key paths, with their defaults, are `ETLSettings`').
public enum KeyFilePaths {
    /// The vault secret key file's variable.
    public static let vaultKeyVariable = "PIIVAULT_VAULT_KEY"
    /// The token key file's variable.
    public static let tokenKeyVariable = "PIIVAULT_TOKEN_KEY"

    /// The vault secret key file: `flag`, else `PIIVAULT_VAULT_KEY`; nil when neither names a file.
    public static func vaultSecretKey(flag: String?, environment: [String: String]) -> String? {
        guard let path = flag ?? environment[vaultKeyVariable], !path.isEmpty else { return nil }
        return path
    }

    /// One token key file: `flag`, else `PIIVAULT_TOKEN_KEY`; nil when neither names a file.
    public static func tokenKey(flag: String?, environment: [String: String]) -> String? {
        guard let path = flag ?? environment[tokenKeyVariable], !path.isEmpty else { return nil }
        return path
    }

    /// Token key files, one per version: the flags as given, else `PIIVAULT_TOKEN_KEY` alone; nil when none is
    /// given or one is empty.
    public static func tokenKeys(flags: [String], environment: [String: String]) -> [String]? {
        let paths = flags.isEmpty ? [environment[tokenKeyVariable] ?? ""] : flags
        return paths.contains(where: \.isEmpty) ? nil : paths
    }
}
