import Postgres

/// The piivault core: login events, tokens, sealing, key files, the vault store, the access log and the ETL pipeline.
public enum PIIVaultInfo {
    /// The version printed by `piivault --version`.
    public static let version = "0.1.0"
}

/// What a piivault process sets up before it does anything else.
public enum PIIVaultProcess {
    /// Call first thing in `main`: keeps OpenSSL from tearing itself down at exit
    /// (`PostgresConnection.keepOpenSSLAtExit` says why), which only works before anything else starts OpenSSL.
    public static func prepare() {
        PostgresConnection.keepOpenSSLAtExit()
    }
}
