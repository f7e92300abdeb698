import Foundation

/// `piivault migrate`: finds and reads the migration files (versioned ones and definitions), then applies them on a
/// connection it opens and closes.
public struct MigrationService: Sendable {
    /// A libpq connection string or URI ("" for libpq's defaults).
    public let databaseURL: String
    /// The migrations folder given by the user, if any (see `MigrationFiles.locate`).
    public let migrationsDirectory: String?

    public init(databaseURL: String, migrationsDirectory: String?) {
        self.databaseURL = databaseURL
        self.migrationsDirectory = migrationsDirectory
    }

    /// Applies what is not applied yet (or only lists it with `dryRun`).
    public func run(dryRun: Bool) async throws -> MigrationReport {
        let directory = try MigrationFiles.locate(explicit: migrationsDirectory)
        let migrator = Migrator(migrations: try MigrationFiles.load(from: directory),
                                definitions: try MigrationFiles.loadDefinitions(from: directory))
        return try await Database.withConnection(databaseURL) { try await migrator.run(on: $0, dryRun: dryRun) }
    }
}
