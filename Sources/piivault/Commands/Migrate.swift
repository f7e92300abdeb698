import ArgumentParser
import PIIVault

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations.",
        discussion: """
            Applies migrations/NNNN_*.sql in order, each in a transaction, and records each with its checksum in \
            public.piivault_migrations. Re-running is a no-op; an applied migration whose file changed is refused. \
            An existing user_logins table with the seed's columns is adopted and keeps its rows. Run it as the \
            database owner (it creates the piivault_* roles if they do not exist).
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: ArgumentHelp("The migrations folder (also PIIVAULT_MIGRATIONS_DIR).", valueName: "DIR"))
    var migrationsDir: String?

    @Flag(help: "Show what would be applied; change nothing.")
    var dryRun = false

    func run() async throws {
        try await reportingErrors {
            let report = try await MigrationService(databaseURL: database.resolved, migrationsDirectory: migrationsDir)
                .run(dryRun: dryRun)
            for migration in report.applied {
                print("\(report.dryRun ? "would apply" : "applied") \(migration.fileName)")
            }
            if report.applied.isEmpty {
                print("database is up to date (\(report.alreadyApplied.count) migrations applied)")
            } else if !report.dryRun {
                print("database is up to date (\(report.alreadyApplied.count + report.applied.count) migrations applied)")
            }
        }
    }
}
