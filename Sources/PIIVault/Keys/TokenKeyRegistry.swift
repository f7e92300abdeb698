import Postgres

/// The token key id of each token version the vault holds (`vault.token_keys`). A fresh key of a version the vault
/// already knows (a mix-up of files, `keygen` run again) would write tokens that join nothing: it is refused before
/// anything is written.
enum TokenKeyRegistry {
    /// Records `keyID` as version `version`'s key if the vault has none yet, and returns the key id it holds for it.
    static func claim(version: Int, keyID: String, on connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query("""
            WITH claimed AS (
                INSERT INTO vault.token_keys (version, key_id) VALUES (\(version), \(keyID))
                ON CONFLICT (version) DO NOTHING RETURNING key_id)
            SELECT key_id FROM claimed
            UNION ALL
            SELECT key_id FROM vault.token_keys WHERE version = \(version)
            """)
        return try rows.first?["key_id"].string()
    }

    /// Throws `TokenKeyMismatch` unless `keyID` is version `version`'s key in the vault (recording it when the vault
    /// has none for that version).
    static func check(version: Int, keyID: String, on connection: PostgresConnection) async throws {
        if let known = try await claim(version: version, keyID: keyID, on: connection), known != keyID {
            throw TokenKeyMismatch(version: version, given: keyID, known: known)
        }
    }
}

/// A token key whose version the vault knows under another key id.
public struct TokenKeyMismatch: PIIVaultReportableError {
    public let version: Int
    public let given: String
    public let known: String

    public var message: String {
        "the token key is version \(version) with key id \(given), but this vault's version \(version) tokens were "
            + "made with key id \(known); use that token.key, or make a new version with `piivault keygen "
            + "--token-key-version \(version + 1) --previous-token-key` and retokenize"
    }

    public var exitCode: PIIVaultExitCode { .noPermission }
}
