import ArgumentParser
import PIIVault

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Apply the database migrations.",
        discussion: """
            Applies migrations/NNNN_*.sql in order, each in a transaction, and records each with its checksum in \
            public.piivault_migrations; then the files of migrations/definitions/ (the current CREATE OR REPLACE \
            definitions of every SQL function and their grants) that are new, changed, or last applied before the \
            newest migration, in name order in one transaction, recorded in public.piivault_definitions. \
            Re-running is a no-op; an applied migration whose file changed is refused. An existing user_logins \
            table with the seed's columns is adopted and keeps its rows. Run it as the database owner (it creates \
            the piivault_* roles if they do not exist). With --dry-run it lists the pending migrations and \
            definitions files and changes nothing.
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
            let verb = report.dryRun ? "would apply" : "applied"
            for migration in report.applied {
                print("\(verb) \(migration.fileName)")
            }
            for definition in report.definitionsApplied {
                print("\(verb) \(definition.displayName)")
            }
            let migrations = report.alreadyApplied.count + (report.dryRun ? 0 : report.applied.count)
            let definitions = report.definitionsCurrent.count + (report.dryRun ? 0 : report.definitionsApplied.count)
            if !report.dryRun || (report.applied.isEmpty && report.definitionsApplied.isEmpty) {
                print("database is up to date (\(migrations) migrations applied, \(definitions) definitions files current)")
            }
        }
    }
}
