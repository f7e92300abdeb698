import Postgres

/// Opening database connections for the subcommands.
public enum Database {
    /// Connects with a libpq connection string or URI; an empty string uses libpq's defaults
    /// (`PG*` variables, `~/.pgpass`, service files). `applicationName` (unless the connection string sets one) is
    /// what other sessions see in `pg_stat_activity`: a command that waits on a lock names its holder by it.
    public static func connect(_ connectionString: String, applicationName: String = "piivault") async throws
        -> PostgresConnection
    {
        try await PostgresConnection.connect(connectionString, applicationName: applicationName)
    }

    /// Connects, runs `body`, and closes the connection whether `body` returns or throws.
    public static func withConnection<T: Sendable>(
        _ connectionString: String, applicationName: String = "piivault",
        _ body: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let connection = try await connect(connectionString, applicationName: applicationName)
        do {
            let value = try await body(connection)
            await connection.close()
            return value
        } catch {
            await connection.close()
            throw error
        }
    }
}

extension PostgresError: PIIVaultReportableError {
    public var message: String {
        if isPermissionDenied {
            return "the database refused: \(description); check that the login is a member of the right piivault_* role"
        }
        // libpq's TLS verification failures (sslmode=verify-ca or verify-full) say what failed but not what to do.
        if kind == .connectionFailed,
           ["certificate", "SSL error", "SSL SYSCALL"].contains(where: { description.contains($0) }) {
            return "\(description); check sslrootcert (the CA that signed the server's certificate) and that the host in the URL is a name the certificate carries"
        }
        return description
    }

    public var exitCode: PIIVaultExitCode {
        if isPermissionDenied { return .noPermission }
        if isConnectionError { return .unavailable }
        return .failure
    }
}
