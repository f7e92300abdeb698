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
        if isAuthenticationFailure {
            return "\(description); check the login and its password in the connection string (or PGUSER, PGPASSWORD, ~/.pgpass)"
        }
        if isNotMigrated {
            return "\(description): the database has no piivault schema, or an older one; run `piivault migrate` first"
        }
        if isMissingDatabase {
            return "\(description); check the database name in --database-url (or PIIVAULT_DATABASE_URL, PGDATABASE), or create it first (createdb) and run piivault migrate"
        }
        if kind == .malformedConnectionString {
            return "\(description); check --database-url (or PIIVAULT_DATABASE_URL): a libpq URI (postgresql://user@host:5432/db?sslmode=verify-full) or key=value pairs"
        }
        // libpq's TLS verification failures (sslmode=verify-ca or verify-full) say what failed but not what to do.
        if kind == .connectionFailed,
           ["certificate", "SSL error", "SSL SYSCALL"].contains(where: { description.contains($0) }) {
            return "\(description); check sslrootcert (the CA that signed the server's certificate) and that the host in the URL is a name the certificate carries"
        }
        return description
    }

    public var exitCode: PIIVaultExitCode {
        if kind == .malformedConnectionString || isMissingDatabase { return .usage }
        if isPermissionDenied || isAuthenticationFailure { return .noPermission }
        if isConnectionError { return .unavailable }
        if isNotMigrated { return .dataError }
        return .failure
    }

    /// The server refused the login itself (no such role, a wrong password, no pg_hba.conf entry): libpq reports it
    /// as a failed connection, with no SQLSTATE, so the server's words tell it apart from an unreachable server.
    var isAuthenticationFailure: Bool {
        guard kind == .connectionFailed else { return false }
        return ["authentication failed", "no pg_hba.conf entry", "no password supplied"].contains { text.contains($0) }
            || (text.contains("role \"") && text.contains("does not exist"))
    }

    /// The server has no database of the name the connection asked for: a setting to fix, not a service to wait for
    /// (libpq reports it as a failed connection, with no SQLSTATE).
    var isMissingDatabase: Bool {
        kind == .connectionFailed && text.contains("database \"") && text.contains("does not exist")
    }

    /// piivault's own schema, table, function or role is missing: the database was never migrated (or is older than
    /// this binary). piivault's SQL names only its own objects, so these states mean exactly that.
    var isNotMigrated: Bool {
        guard let code else { return false }
        return [PostgresError.Code.invalidSchemaName, .undefinedTable, .undefinedFunction, .undefinedObject].contains(code)
    }
}
