import CSodium
import Foundation
import Postgres

/// One numbered SQL file of `migrations/`.
public struct Migration: Sendable, Equatable {
    /// The number the file name starts with; migrations apply in this order.
    public let version: Int
    /// The file name, for example `0003_vault.sql`.
    public let fileName: String
    /// The file's SQL text.
    public let sql: String
    /// Lowercase hex SHA-256 of the file's bytes, recorded when applied.
    public let checksum: String

    public init(version: Int, fileName: String, sql: String) {
        self.version = version
        self.fileName = fileName
        self.sql = sql
        self.checksum = sha256Hex(Array(sql.utf8))
    }
}

/// Why migrating stopped.
public enum MigrationError: PIIVaultReportableError, Equatable {
    case directoryNotFound(searched: [String])
    case badFileName(String)
    case duplicateVersion(Int)
    case edited(fileName: String, appliedAt: String)
    case unknownApplied(version: Int, fileName: String)
    case failed(fileName: String, reason: String)

    public var message: String {
        switch self {
        case .directoryNotFound(let searched):
            return "no migrations folder found (looked in \(searched.joined(separator: ", "))); pass --migrations-dir DIR or set PIIVAULT_MIGRATIONS_DIR"
        case .badFileName(let name):
            return "migration file name \(name) is not NNNN_name.sql; rename it"
        case .duplicateVersion(let version):
            return "two migration files have the number \(String(format: "%04d", version)); renumber one"
        case .edited(let fileName, let appliedAt):
            return "migration \(fileName) was edited after it was applied (\(appliedAt)): its checksum differs from the recorded one; restore the original file and put the change in a new migration"
        case .unknownApplied(let version, let fileName):
            return "the database has migration \(String(format: "%04d", version)) (\(fileName)) that this piivault does not know; use the piivault version that applied it or a newer one"
        case .failed(let fileName, let reason):
            return "migration \(fileName) failed and was rolled back: \(reason)"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .failed: return .failure
        default: return .dataError
        }
    }
}

/// Finds and reads the migration files.
public enum MigrationFiles {
    /// Reads `NNNN_name.sql` files from `directory`, sorted by number.
    public static func load(from directory: URL) throws -> [Migration] {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".sql") }
        var migrations: [Migration] = []
        for name in names {
            let digits = name.prefix { $0.isASCII && $0.isNumber }
            guard digits.count == 4, let version = Int(digits), name.dropFirst(4).first == "_" else {
                throw MigrationError.badFileName(name)
            }
            let sql = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
            migrations.append(Migration(version: version, fileName: name, sql: sql))
        }
        migrations.sort { $0.version < $1.version }
        for (a, b) in zip(migrations, migrations.dropFirst()) where a.version == b.version {
            throw MigrationError.duplicateVersion(a.version)
        }
        return migrations
    }

    /// The migrations folder: `explicit`, else `PIIVAULT_MIGRATIONS_DIR`, else `share/piivault/migrations` beside the
    /// installed binary, else a `migrations` folder above the binary (a build in a checkout), else `./migrations`.
    public static func locate(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment)
        throws -> URL
    {
        if let explicit { return URL(fileURLWithPath: explicit) }
        if let fromEnvironment = environment["PIIVAULT_MIGRATIONS_DIR"], !fromEnvironment.isEmpty {
            return URL(fileURLWithPath: fromEnvironment)
        }
        var candidates: [URL] = []
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let binDirectory = executable.deletingLastPathComponent()
        candidates.append(binDirectory.deletingLastPathComponent().appendingPathComponent("share/piivault/migrations"))
        var directory = binDirectory
        for _ in 0..<5 {
            candidates.append(directory.appendingPathComponent("migrations"))
            directory.deleteLastPathComponent()
        }
        candidates.append(URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent("migrations"))
        for candidate in candidates
        where FileManager.default.fileExists(atPath: candidate.appendingPathComponent("0001_roles.sql").path) {
            return candidate
        }
        throw MigrationError.directoryNotFound(searched: candidates.map(\.path))
    }
}

/// What `migrate` did or, with `--dry-run`, would do.
public struct MigrationReport: Sendable {
    /// Migrations already recorded in the database before this run.
    public let alreadyApplied: [Migration]
    /// Migrations applied by this run (or pending, for a dry run).
    public let applied: [Migration]
    public let dryRun: Bool
}

/// Applies migrations in order, each in its own transaction together with its record, and refuses an applied
/// migration whose file has changed. Concurrent runs are serialised by a lock on the record table, taken at the start
/// of each migration's transaction (EXCLUSIVE, which needs a privilege on the table that only its owner holds; an
/// advisory lock could be held by any login).
public struct Migrator: Sendable {
    public let migrations: [Migration]

    /// The table that records applied migrations.
    public static let recordTable = "piivault_migrations"

    public init(migrations: [Migration]) {
        self.migrations = migrations
    }

    /// Applies the pending migrations (none with `dryRun`) and reports what was done.
    public func run(on connection: PostgresConnection, dryRun: Bool = false) async throws -> MigrationReport {
        let recorded = try await recordedMigrations(connection, create: !dryRun)
        var alreadyApplied: [Migration] = []
        var pending: [Migration] = []
        for migration in migrations {
            if let record = recorded[migration.version] {
                guard record.checksum == migration.checksum else {
                    throw MigrationError.edited(fileName: migration.fileName, appliedAt: record.appliedAt)
                }
                alreadyApplied.append(migration)
            } else {
                pending.append(migration)
            }
        }
        let known = Set(migrations.map(\.version))
        if let unknown = recorded.keys.sorted().first(where: { !known.contains($0) }) {
            throw MigrationError.unknownApplied(version: unknown, fileName: recorded[unknown]!.fileName)
        }
        if dryRun { return MigrationReport(alreadyApplied: alreadyApplied, applied: pending, dryRun: true) }
        var applied: [Migration] = []
        for migration in pending {
            do {
                let ran = try await connection.transaction { connection in
                    // Another run may have applied it since the records were read: under the lock, look again.
                    try await connection.execute("LOCK TABLE public.\(identifier: Self.recordTable) IN EXCLUSIVE MODE")
                    let now = try await connection.query("""
                        SELECT checksum FROM public.\(identifier: Self.recordTable) WHERE version = \(migration.version)
                        """)
                    if let row = now.first {
                        guard try row["checksum"].requiredString() == migration.checksum else {
                            throw MigrationError.edited(fileName: migration.fileName, appliedAt: "applied meanwhile")
                        }
                        return false
                    }
                    try await connection.executeScript(migration.sql)
                    try await connection.execute("""
                        INSERT INTO public.\(identifier: Self.recordTable) (version, file_name, checksum)
                        VALUES (\(migration.version), \(migration.fileName), \(migration.checksum))
                        """)
                    return true
                }
                if ran { applied.append(migration) } else { alreadyApplied.append(migration) }
            } catch let error as PostgresError where !error.isConnectionError {
                throw MigrationError.failed(fileName: migration.fileName, reason: error.description)
            }
        }
        return MigrationReport(alreadyApplied: alreadyApplied, applied: applied, dryRun: false)
    }

    private struct Record {
        let fileName: String
        let checksum: String
        let appliedAt: String
    }

    private func recordedMigrations(_ connection: PostgresConnection, create: Bool) async throws -> [Int: Record] {
        if create {
            do {
                try await connection.execute("""
                    CREATE TABLE IF NOT EXISTS public.\(identifier: Self.recordTable) (
                        version    integer     PRIMARY KEY,
                        file_name  text        NOT NULL,
                        checksum   text        NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now()
                    )
                    """)
            } catch let error as PostgresError where error.sqlState == "23505" || error.sqlState == "42P07" {
                // Created at the same moment by a concurrent run (IF NOT EXISTS does not cover that race).
            }
        } else {
            let exists = try await connection.query(
                "SELECT to_regclass(\("public." + Self.recordTable)) IS NOT NULL AS present")
            if try exists.first?["present"].bool() != true { return [:] }
        }
        let rows = try await connection.query("""
            SELECT version, file_name, checksum, to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS "UTC"') AS applied_at
              FROM public.\(identifier: Self.recordTable)
            """)
        var records: [Int: Record] = [:]
        for row in rows {
            records[try row["version"].requiredInt()] = Record(
                fileName: try row["file_name"].requiredString(), checksum: try row["checksum"].requiredString(),
                appliedAt: "applied \(try row["applied_at"].requiredString())")
        }
        return records
    }
}
