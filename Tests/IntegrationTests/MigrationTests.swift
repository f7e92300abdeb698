import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault migrate`, run as the real binary against the real local PostgreSQL.
final class MigrationTests: XCTestCase {
    var database: ScratchDatabase!

    override func setUp() async throws {
        // The cluster's roles exist before any test here migrates (made once, under the cluster lock), so that
        // parallel test processes never race to create them.
        _ = try await MigratedTemplate.shared.name()
        database = try await ScratchDatabase.create(prefix: "mig")
    }

    override func tearDown() async throws {
        await database?.drop()
    }

    private var migrationsDirectory: String { TestServices.repositoryRoot.appendingPathComponent("migrations").path }

    private func migrate(_ extra: [String] = [], url: String? = nil) throws -> ProcessResult {
        try runPiivault(["migrate", "--database-url", url ?? database.url, "--migrations-dir", migrationsDirectory] + extra)
    }

    private func scalar(_ query: PostgresQuery) async throws -> String? {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        return try await connection.query(query).first?[0].string()
    }

    func testMigratesAnEmptyDatabase() async throws {
        let result = try migrate()
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("applied 0001_roles.sql"), result.stdout)
        for table in ["public.user_logins", "public.etl_runs", "vault.data_keys", "vault.secrets", "vault.quarantine",
                      "audit.access_log", "public.piivault_migrations"] {
            let present = try await scalar("SELECT to_regclass(\(table)) IS NOT NULL")
            XCTAssertEqual(present, "t", "\(table) exists")
        }
        for role in ["piivault_etl", "piivault_analyst", "piivault_compliance", "piivault_auditor"] {
            let canLogin = try await scalar("SELECT rolcanlogin::text FROM pg_roles WHERE rolname = \(role)")
            XCTAssertEqual(canLogin, "false", "\(role) is a NOLOGIN group role")
        }
        let columns = try await scalar("""
            SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
              FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'user_logins'
            """)
        XCTAssertEqual(columns, "user_id:character varying,device_type:character varying,masked_ip:character varying,"
            + "masked_device_id:character varying,locale:character varying,app_version:integer,create_date:date,"
            + "message_id:text,app_version_text:text,loaded_at:timestamp with time zone,subject_hash:text")
    }

    func testMigratingTwiceIsANoOp() async throws {
        XCTAssertEqual(try migrate().status, 0)
        let before = try await scalar("SELECT string_agg(version || checksum || applied_at, ',' ORDER BY version) FROM piivault_migrations")
        let second = try migrate()
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertFalse(second.stdout.contains("applied 0"), second.stdout)
        XCTAssertTrue(second.stdout.contains("database is up to date"), second.stdout)
        let after = try await scalar("SELECT string_agg(version || checksum || applied_at, ',' ORDER BY version) FROM piivault_migrations")
        XCTAssertEqual(before, after)
    }

    func testDryRunChangesNothing() async throws {
        let result = try migrate(["--dry-run"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("would apply 0003_vault.sql"), result.stdout)
        let present = try await scalar("SELECT to_regclass('vault.secrets') IS NOT NULL")
        XCTAssertEqual(present, "f")
    }

    func testAdoptsTheSeedTableAndKeepsItsRows() async throws {
        let connection = try await database.connect()
        try await connection.executeScript("""
            CREATE TABLE user_logins(
                user_id varchar(128), device_type varchar(32), masked_ip varchar(256),
                masked_device_id varchar(256), locale varchar(32), app_version integer, create_date date);
            INSERT INTO user_logins VALUES
                ('u1', 'android', 'abc', 'def', 'RU', 230, '2020-01-01'),
                ('u2', 'ios', 'ghi', 'jkl', NULL, 96, NULL),
                ('u3', 'ios', 'mno', 'pqr', 'PH', 0, '2021-06-30');
            """)
        await connection.close()
        let result = try migrate()
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try await scalar("""
            SELECT string_agg(concat_ws('|', user_id, device_type, masked_ip, masked_device_id, coalesce(locale, '-'),
                                        app_version, coalesce(create_date::text, '-'), coalesce(message_id, '-')),
                              ';' ORDER BY user_id)
              FROM user_logins
            """)
        XCTAssertEqual(rows, "u1|android|abc|def|RU|230|2020-01-01|-;u2|ios|ghi|jkl|-|96|-|-;u3|ios|mno|pqr|PH|0|2021-06-30|-")
        let added = try await scalar("""
            SELECT count(*) FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = 'user_logins'
               AND column_name IN ('message_id', 'app_version_text', 'loaded_at')
            """)
        XCTAssertEqual(added, "3")
    }

    func testRefusesAUserLoginsTableWithOtherColumns() async throws {
        let connection = try await database.connect()
        try await connection.execute("CREATE TABLE user_logins (id serial, email text)")
        await connection.close()
        let result = try migrate()
        XCTAssertEqual(result.status, PIIVaultExitCode.failure.rawValue, "exit 1: a migration that failed (README)")
        XCTAssertTrue(result.stderr.contains("does not have the seed's columns"), result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: migration 0002_user_logins.sql failed"), result.stderr)
    }

    func testRefusesAnEditedAppliedMigration() async throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.copyItem(atPath: migrationsDirectory, toPath: copy.path)
        defer { try? FileManager.default.removeItem(at: copy) }
        let first = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", copy.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let file = copy.appendingPathComponent("0003_vault.sql")
        try (try String(contentsOf: file, encoding: .utf8) + "\n-- an innocent-looking edit\n")
            .write(to: file, atomically: true, encoding: .utf8)
        let second = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", copy.path])
        XCTAssertEqual(second.status, 65)
        XCTAssertTrue(second.stderr.contains("migration 0003_vault.sql was edited after it was applied"), second.stderr)
        XCTAssertTrue(second.stderr.contains("new migration"), second.stderr)
    }

    func testFailedMigrationIsRolledBackAndReported() async throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.copyItem(atPath: migrationsDirectory, toPath: copy.path)
        defer { try? FileManager.default.removeItem(at: copy) }
        try "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n"
            .write(to: copy.appendingPathComponent("0999_broken.sql"), atomically: true, encoding: .utf8)
        let result = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", copy.path])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("migration 0999_broken.sql failed and was rolled back"), result.stderr)
        let half = try await scalar("SELECT to_regclass('half_done') IS NOT NULL")
        XCTAssertEqual(half, "f", "the failed migration left nothing behind")
        let recorded = try await scalar("SELECT count(*) FROM piivault_migrations WHERE version = 999")
        XCTAssertEqual(recorded, "0")
    }

    func testASecondDatabaseInTheSameClusterMigrates() async throws {
        let other = try await ScratchDatabase.create(prefix: "mig2")
        defer { Task { await other.drop() } }
        XCTAssertEqual(try migrate().status, 0)
        let second = try migrate(url: other.url)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("applied 0006_privileges.sql"), second.stdout)
    }

    func testUsesLibpqDefaultsAndThePIIVaultVariable() async throws {
        let components = URLComponents(string: database.url)!
        let fromPG = try runPiivault(["migrate", "--migrations-dir", migrationsDirectory], environment: [
            "PGHOST": components.host, "PGPORT": components.port.map(String.init), "PGUSER": components.user,
            "PGPASSWORD": components.password, "PGDATABASE": database.name, "PIIVAULT_DATABASE_URL": nil,
        ])
        XCTAssertEqual(fromPG.status, 0, fromPG.stderr)
        XCTAssertTrue(fromPG.stdout.contains("applied 0001_roles.sql"), fromPG.stdout)
        let fromVariable = try runPiivault(["migrate", "--migrations-dir", migrationsDirectory],
                                           environment: ["PIIVAULT_DATABASE_URL": database.url, "PGHOST": "/nonexistent"])
        XCTAssertEqual(fromVariable.status, 0, fromVariable.stderr)
        XCTAssertTrue(fromVariable.stdout.contains("database is up to date"), fromVariable.stdout)
    }

    func testUnreachableDatabaseIsAClearErrorWithoutThePassword() throws {
        let result = try runPiivault(["migrate", "--database-url",
                                      "postgresql://postgres:hunter2-secret@127.0.0.1:1/x?connect_timeout=2"])
        XCTAssertEqual(result.status, 69)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: cannot connect to the database"), result.stderr)
        XCTAssertFalse(result.stderr.contains("hunter2"), result.stderr)
    }
}
