import Postgres

/// The token key id of each token version the vault holds (`vault.token_keys`). A fresh key of a version the vault
/// already knows (a mix-up of files, `keygen` run again) would write tokens that join nothing: it is refused before
/// anything is written.
enum TokenKeyRegistry {
    /// Records `keyID` as version `version`'s accepted key if the vault has none yet, and returns the key id it
    /// accepts for it (`vault.claim_token_key`, migration 0031: the logins may not insert into the table themselves).
    static func claim(version: Int, keyID: String, on connection: PostgresConnection) async throws -> String? {
        let rows = try await connection.query("SELECT vault.claim_token_key(\(version), \(keyID)) AS key_id")
        return try rows.first?["key_id"].string()
    }

    /// What the vault knows of version `version`'s keys: the accepted one and the others earlier runs used.
    static func known(version: Int, on connection: PostgresConnection) async throws
        -> (accepted: String?, others: [String]) {
        let rows = try await connection.query("""
            SELECT key_id, accepted FROM vault.token_keys WHERE version = \(version) ORDER BY recorded_at, key_id
            """)
        var accepted: String?
        var others: [String] = []
        for row in rows {
            let key = try row["key_id"].requiredString()
            if try row["accepted"].bool() == true { accepted = key } else { others.append(key) }
        }
        return (accepted, others)
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
