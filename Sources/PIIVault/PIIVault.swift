/// The piivault core: login events, tokens, sealing, key files, the vault store, the access log and the ETL pipeline.
public enum PIIVaultInfo {
    /// The version printed by `piivault --version`.
    public static let version = "0.1.0"
}
