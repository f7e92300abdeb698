import Postgres

/// Which database an access log belongs to, as a signed checkpoint records it: `UUID/OID`, the random id drawn when
/// the database was migrated (it stays the same across hosts, ports, replicas and backups) and the database's oid in
/// its cluster (which a copy made with `CREATE DATABASE ... TEMPLATE` does not share, though it carries the same log
/// and the same id).
public enum DatabaseIdentity {
    /// The identity of the database `connection` is on; nil on a database migrated before migration 0019.
    static func current(_ connection: PostgresConnection) async throws -> String? {
        let exists = try await connection.query(
            "SELECT (to_regclass('audit.database_identity') IS NOT NULL)::integer AS present")
        guard try exists.first?["present"].requiredInt() == 1 else { return nil }
        let rows = try await connection.query("""
            SELECT i.id::text || '/' || d.oid::text AS identity
              FROM audit.database_identity AS i, pg_catalog.pg_database AS d
             WHERE d.datname = pg_catalog.current_database()
            """)
        return try rows.first?["identity"].requiredString()
    }
}

/// A signed checkpoint that names another database than the one it is checked against.
public struct CheckpointDatabaseMismatch: PIIVaultReportableError {
    public let file: String
    public let checkpointDatabase: String
    public let checkpointIdentity: String
    public let currentIdentity: String?

    public var message: String {
        "\(file) is a checkpoint of another database (\(checkpointDatabase), id \(checkpointIdentity)); this one is "
            + (currentIdentity.map { "id \($0)" } ?? "without an id (run piivault migrate)")
            + ": a copy or a restore carries the log but not the identity; verify against the database the checkpoint"
            + " names, or check this chain against the signed head alone with --anchor"
    }

    public var exitCode: PIIVaultExitCode { .failure }
}
