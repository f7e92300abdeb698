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

/// One file of `migrations/definitions/`: the live `CREATE OR REPLACE` definitions of one area's SQL functions and
/// procedures with their grants (the convention Flyway calls repeatable migrations). Applied after every versioned
/// migration, again whenever the file or the newest versioned migration changes.
public struct Definition: Sendable, Equatable {
    /// The file name, for example `10_audit.sql`; files apply in name order.
    public let fileName: String
    /// The file's SQL text.
    public let sql: String
    /// Lowercase hex SHA-256 of the file's bytes, recorded when applied.
    public let checksum: String

    public init(fileName: String, sql: String) {
        self.fileName = fileName
        self.sql = sql
        self.checksum = sha256Hex(Array(sql.utf8))
    }

    /// The file's path relative to the migrations folder, as `migrate` names it.
    public var displayName: String { "\(MigrationFiles.definitionsFolder)/\(fileName)" }
}

/// Why migrating stopped.
public enum MigrationError: PIIVaultReportableError, Equatable {
    case directoryNotFound(searched: [String])
    case badFileName(String)
    case duplicateVersion(Int)
    case edited(fileName: String, appliedAt: String)
    case unknownApplied(version: Int, fileName: String)
    case failed(fileName: String, reason: String)
    case definitionsNotFound(path: String)
    case badDefinitionFileName(String)
    case definitionFailed(fileName: String, reason: String)

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
        case .definitionsNotFound(let path):
            return "no definitions folder at \(path) (it holds the SQL functions); install or copy the whole migrations folder, definitions/ included"
        case .badDefinitionFileName(let name):
            return "definitions file name \(name) is not NN_name.sql; rename it"
        case .definitionFailed(let fileName, let reason):
            return "definitions file \(MigrationFiles.definitionsFolder)/\(fileName) failed and was rolled back with the other definitions of this run (the versioned migrations stay applied): \(reason); fix the file and run migrate again"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .failed, .definitionFailed: return .failure
        default: return .dataError
        }
    }
}

/// Finds and reads the migration files.
public enum MigrationFiles {
    /// The subfolder of the migrations folder that holds the definitions files.
    public static let definitionsFolder = "definitions"

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

    /// Reads the `NN_name.sql` files of `directory/definitions`, sorted by name (the order they apply in).
    public static func loadDefinitions(from directory: URL) throws -> [Definition] {
        let folder = directory.appendingPathComponent(definitionsFolder)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MigrationError.definitionsNotFound(path: folder.path)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }
        var definitions: [Definition] = []
        for name in names {
            let digits = name.prefix { $0.isASCII && $0.isNumber }
            guard digits.count == 2, name.dropFirst(2).first == "_" else { throw MigrationError.badDefinitionFileName(name) }
            let sql = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
            definitions.append(Definition(fileName: name, sql: sql))
        }
        // Byte order, not the locale's: the order must be the same everywhere.
        return definitions.sorted { Array($0.fileName.utf8).lexicographicallyPrecedes(Array($1.fileName.utf8)) }
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
        let executable = runningExecutable()
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

    /// The running binary's real path. `argv[0]` is only the name typed when the binary was found through `PATH`
    /// (and relative to the working directory when a relative path was typed), so Linux's `/proc/self/exe` first.
    static func runningExecutable() -> URL {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            return URL(fileURLWithPath: path)
        }
        return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    }
}

/// What `migrate` did or, with `--dry-run`, would do.
public struct MigrationReport: Sendable {
    /// Migrations already recorded in the database before this run.
    public let alreadyApplied: [Migration]
    /// Migrations applied by this run (or pending, for a dry run).
    public let applied: [Migration]
    /// Definitions files applied by this run (or pending, for a dry run).
    public let definitionsApplied: [Definition]
    /// Definitions files that were current already.
    public let definitionsCurrent: [Definition]
    public let dryRun: Bool
}

/// Applies versioned migrations in order, each in its own transaction together with its record, and refuses an
/// applied migration whose file has changed; then applies, in one transaction with their records, the definitions
/// files that are not current: new, changed, or last applied before the newest versioned migration (which may have
/// dropped or replaced what they define). Concurrent runs are serialised by a lock on the record table, taken at the
/// start of each transaction (EXCLUSIVE, which needs a privilege on the table that only its owner holds; an advisory
/// lock could be held by any login).
public struct Migrator: Sendable {
    public let migrations: [Migration]
    public let definitions: [Definition]

    /// The table that records applied migrations.
    public static let recordTable = "piivault_migrations"
    /// The table that records applied definitions files: checksum, and the newest versioned migration then.
    public static let definitionsRecordTable = "piivault_definitions"

    public init(migrations: [Migration], definitions: [Definition]) {
        self.migrations = migrations
        self.definitions = definitions
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
        let newestVersion = migrations.last?.version ?? 0
        let recordedDefinitions = try await recordedDefinitions(connection, create: !dryRun)
        let (definitionsPending, definitionsCurrent) = definitions.partitioned { definition in
            guard let record = recordedDefinitions[definition.fileName] else { return true }
            return record.checksum != definition.checksum || record.afterVersion != newestVersion
        }
        if dryRun {
            return MigrationReport(alreadyApplied: alreadyApplied, applied: pending, definitionsApplied: definitionsPending,
                                   definitionsCurrent: definitionsCurrent, dryRun: true)
        }
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
        try await apply(definitionsPending, after: newestVersion, on: connection)
        return MigrationReport(alreadyApplied: alreadyApplied, applied: applied, definitionsApplied: definitionsPending,
                               definitionsCurrent: definitionsCurrent, dryRun: false)
    }

    /// Applies `pending` in order in one transaction, so the functions change all at once or not at all, with their
    /// records; forgets the records of files that no longer exist.
    private func apply(_ pending: [Definition], after newestVersion: Int, on connection: PostgresConnection) async throws {
        guard !pending.isEmpty else { return }
        var current: Definition?
        do {
            try await connection.transaction { connection in
                // Serialises concurrent runs (owner-only, as for the versioned migrations).
                try await connection.execute(
                    "LOCK TABLE public.\(identifier: Self.definitionsRecordTable) IN EXCLUSIVE MODE")
                for definition in pending {
                    current = definition
                    try await connection.executeScript(definition.sql)
                    try await connection.execute("""
                        INSERT INTO public.\(identifier: Self.definitionsRecordTable) (file_name, checksum, after_version)
                        VALUES (\(definition.fileName), \(definition.checksum), \(newestVersion))
                        ON CONFLICT (file_name) DO UPDATE
                           SET checksum = excluded.checksum, after_version = excluded.after_version, applied_at = now()
                        """)
                }
                current = nil
                try await connection.execute("""
                    DELETE FROM public.\(identifier: Self.definitionsRecordTable)
                     WHERE NOT file_name = ANY (\(PostgresArray.texts(definitions.map(\.fileName)))::text[])
                    """)
            }
        } catch let error as PostgresError where !error.isConnectionError {
            throw MigrationError.definitionFailed(fileName: current?.fileName ?? "(records)", reason: error.description)
        }
    }

    private struct DefinitionRecord {
        let checksum: String
        let afterVersion: Int
    }

    private func recordedDefinitions(_ connection: PostgresConnection, create: Bool) async throws
        -> [String: DefinitionRecord]
    {
        if create {
            try await connection.execute("""
                CREATE TABLE IF NOT EXISTS public.\(identifier: Self.definitionsRecordTable) (
                    file_name     text        PRIMARY KEY,
                    checksum      text        NOT NULL,
                    after_version integer     NOT NULL,
                    applied_at    timestamptz NOT NULL DEFAULT now()
                )
                """)
        } else {
            let exists = try await connection.query(
                "SELECT to_regclass(\("public." + Self.definitionsRecordTable)) IS NOT NULL AS present")
            if try exists.first?["present"].bool() != true { return [:] }
        }
        let rows = try await connection.query(
            "SELECT file_name, checksum, after_version FROM public.\(identifier: Self.definitionsRecordTable)")
        var records: [String: DefinitionRecord] = [:]
        for row in rows {
            records[try row["file_name"].requiredString()] = DefinitionRecord(
                checksum: try row["checksum"].requiredString(), afterVersion: try row["after_version"].requiredInt())
        }
        return records
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
            } catch let error as PostgresError where error.code == .uniqueViolation || error.code == .duplicateTable {
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

extension Array {
    /// The elements for which `isFirst` holds, then the others, each in their order.
    fileprivate func partitioned(by isFirst: (Element) throws -> Bool) rethrows -> ([Element], [Element]) {
        var first: [Element] = []
        var second: [Element] = []
        for element in self {
            if try isFirst(element) { first.append(element) } else { second.append(element) }
        }
        return (first, second)
    }
}
