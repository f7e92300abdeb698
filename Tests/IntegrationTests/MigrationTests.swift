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
            + "message_id:text,app_version_text:text,loaded_at:timestamp with time zone,subject_hash:text,etl_run_id:bigint")
        // The keys every load inserts compare in byte order (0023, 0027); user_id keeps the seed's varchar(128).
        let keys = try await scalar("""
            SELECT string_agg(c.relname || '.' || a.attname || ':' || format_type(a.atttypid, a.atttypmod) || ':'
                              || co.collname, ',' ORDER BY c.relname, a.attname)
              FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
              JOIN pg_collation AS co ON co.oid = a.attcollation
             WHERE (c.oid, a.attname) IN (('public.user_logins'::regclass, 'message_id'),
                                          ('public.user_logins'::regclass, 'user_id'),
                                          ('vault.secrets'::regclass, 'token'),
                                          ('vault.tombstones'::regclass, 'subject_hash'))
            """)
        XCTAssertEqual(keys, "secrets.token:text:C,tombstones.subject_hash:text:C,user_logins.message_id:text:C,"
            + "user_logins.user_id:character varying(128):C")
    }

    // MARK: Issue 25: the format checks (0029) refuse exactly what the counted patterns refused

    /// 0029 rewrote the checks on subject hashes and key ids without `{64}`/`{16}`, which made PostgreSQL's matcher
    /// cost 7 us a login. Each candidate must get the verdict the old pattern gives it, computed by the database.
    func testTheFormatChecksRefuseWhatTheCountedPatternsRefused() async throws {
        XCTAssertEqual(try migrate().status, 0)
        let owner = try await database.connect()
        let hex64 = String(repeating: "0123456789abcdef", count: 4)
        let shorter = String(hex64.dropLast()), withoutFirst = String(hex64.dropFirst())
        let subjectHashes: [String] = [
            hex64, String(repeating: "f", count: 64), shorter, hex64 + "0", hex64.uppercased(), shorter + "g",
            hex64 + "\n", shorter + "\n", "\n" + withoutFirst, String(hex64.prefix(32)) + "\n" + hex64.suffix(31),
            " " + withoutFirst, "-" + withoutFirst, "",
            String(repeating: "é", count: 32),  // 64 bytes, not 64 hex digits
            String(repeating: "٠", count: 32),
        ]
        let keyIDs = ["0123456789abcdef", "0123456789abcde", "0123456789abcdef0", "0123456789ABCDEF", "é" + "0123456789abcd",
                      "0123456789abcdeg", ""]
        var checked = 0
        func verdict(_ value: String, _ digits: Int) async throws -> Bool {
            let pattern = "^[0-9a-f]{\(digits)}$"
            return try await owner.query("SELECT \(value) ~ \(pattern)").first?[0].string() == "t"
        }
        func accepted(_ statement: PostgresQuery) async throws -> Bool {
            try await owner.execute("SAVEPOINT probe")
            do {
                try await owner.execute(statement)
                try await owner.execute("RELEASE SAVEPOINT probe")
                return true
            } catch let error as PostgresError where error.sqlState == "23514" {
                try await owner.execute("ROLLBACK TO SAVEPOINT probe")
                return false
            }
        }
        try await owner.execute("BEGIN")
        for (index, hash) in subjectHashes.enumerated() {
            let expected = try await verdict(hash, 64)
            let login = try await accepted(
                "INSERT INTO user_logins (message_id, subject_hash) VALUES (\("format-\(index)"), \(hash))")
            XCTAssertEqual(login, expected, "user_logins.subject_hash check, candidate \(index)")
            let tombstone = try await accepted("INSERT INTO vault.tombstones (subject_hash) VALUES (\(hash))")
            XCTAssertEqual(tombstone, expected, "vault.tombstones check, candidate \(index)")
            checked += expected ? 0 : 1
        }
        for (index, keyID) in keyIDs.enumerated() {
            let expected = try await verdict(keyID, 16)
            let dataKey = try await accepted(
                "INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (\(keyID), '\\x00'::bytea)")
            XCTAssertEqual(dataKey, expected, "vault.data_keys.key_id check, candidate \(index)")
            checked += expected ? 0 : 1
        }
        let nullHash = try await accepted("INSERT INTO user_logins (message_id) VALUES ('format-null')")
        XCTAssertTrue(nullHash, "a login without a subject hash (loaded before 0017) still passes")
        try await owner.execute("ROLLBACK")
        await owner.close()
        XCTAssertEqual(checked, subjectHashes.count - 2 + keyIDs.count - 1,
                       "the old pattern refuses all but the valid candidates")
        // And the counted patterns are gone (a check left beside the new one would still cost its 7 us a row).
        let counted = try await scalar("""
            SELECT string_agg(conrelid::regclass::text || ': ' || pg_get_constraintdef(oid), '; ') FROM pg_constraint
             WHERE contype = 'c' AND conrelid IN ('public.user_logins'::regclass, 'vault.tombstones'::regclass,
                                                  'vault.data_keys'::regclass)
               AND pg_get_constraintdef(oid) LIKE '%{%'
            """)
        XCTAssertNil(counted, "no check with a counted repetition is left")
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
        XCTAssertFalse(second.stdout.contains("applied definitions/"), second.stdout)
        let definitions = try await scalar("SELECT count(*) FROM piivault_definitions WHERE applied_at < now()")
        XCTAssertEqual(definitions, String(try definitionFiles().count), "every definitions file applied once, by the first run")
    }

    func testDryRunChangesNothing() async throws {
        let result = try migrate(["--dry-run"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("would apply 0003_vault.sql"), result.stdout)
        XCTAssertTrue(result.stdout.contains("would apply definitions/10_audit.sql"), result.stdout)
        let present = try await scalar("SELECT to_regclass('vault.secrets') IS NOT NULL")
        XCTAssertEqual(present, "f")
        let records = try await scalar("SELECT to_regclass('public.piivault_definitions') IS NOT NULL")
        XCTAssertEqual(records, "f")
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

    /// 0035 on an installed database: its logins stay where they were (the partition user_logins_before_partitions),
    /// their message ids move to login_message_ids, and whoever could read or write user_logins still can, through
    /// the parent only.
    func testAnInstalledDatabaseKeepsItsLoginsAndGrantsWhenLoginsArePartitioned() async throws {
        let before = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.copyItem(atPath: migrationsDirectory, toPath: before.path)
        defer { try? FileManager.default.removeItem(at: before) }
        try FileManager.default.removeItem(at: before.appendingPathComponent("0035_logins_partitioned_by_run.sql"))
        let installed = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", before.path])
        XCTAssertEqual(installed.status, 0, installed.stderr)
        let roleName = "Report-Reader-\(ScratchDatabase.randomHex(3))"  // a name that needs quotes
        let reporting = "\"\(roleName)\""
        let connection = try await database.connect()
        try await connection.executeScript("""
            INSERT INTO user_logins (user_id, masked_ip, create_date, message_id) VALUES
                ('u1', 'ip.v1.a', '2026-11-01', 'm-1'), ('u2', 'ip.v1.b', '2026-11-02', 'm-2');
            ALTER TABLE user_logins DROP CONSTRAINT user_logins_message_id_required;
            INSERT INTO user_logins (user_id, masked_ip, create_date) VALUES ('seed', 'ip.v1.c', '2020-01-01');
            CREATE ROLE \(reporting);
            GRANT SELECT ON user_logins TO \(reporting);
            GRANT UPDATE (locale) ON user_logins TO \(reporting);
            """)
        await connection.close()

        XCTAssertEqual(try migrate().status, 0)
        let placed = try await scalar("""
            SELECT string_agg(tableoid::regclass::text || ':' || coalesce(message_id, '-'), ',' ORDER BY user_id)
              FROM user_logins
            """)
        XCTAssertEqual(placed, "user_logins_before_partitions:-,user_logins_before_partitions:m-1,user_logins_before_partitions:m-2")
        let ids = try await scalar("SELECT string_agg(message_id, ',' ORDER BY 1) FROM login_message_ids")
        XCTAssertEqual(ids, "m-1,m-2")
        let privileges = try await scalar(PostgresQuery(unsafeSQL: """
            SELECT concat_ws(',', has_table_privilege('\(roleName)', 'public.user_logins', 'SELECT'),
                   has_column_privilege('\(roleName)', 'public.user_logins', 'locale', 'UPDATE'),
                   has_table_privilege('piivault_etl', 'public.user_logins', 'INSERT'),
                   has_table_privilege('piivault_analyst', 'public.user_logins', 'SELECT'),
                   has_table_privilege('\(roleName)', 'public.user_logins_before_partitions', 'SELECT'),
                   has_table_privilege('piivault_analyst', 'public.user_logins_before_partitions', 'SELECT'),
                   has_table_privilege('piivault_etl', 'public.user_logins_before_partitions', 'INSERT'))
            """))
        XCTAssertEqual(privileges, "t,t,t,t,f,f,f")
        let cleanup = try await database.connect()
        try await cleanup.executeScript("REVOKE ALL ON user_logins FROM \(reporting); REVOKE ALL ON user_logins_before_partitions FROM \(reporting); DROP ROLE \(reporting);")
        await cleanup.close()
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

    /// The definitions folder's `.sql` files, by name.
    private func definitionFiles() throws -> [String: String] {
        let folder = URL(fileURLWithPath: migrationsDirectory).appendingPathComponent("definitions")
        var files: [String: String] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".sql") {
            files[name] = try String(contentsOf: folder.appendingPathComponent(name), encoding: .utf8)
        }
        return files
    }

    /// A changed definitions file is applied again (and only it); a new versioned migration has every definitions
    /// file applied again after it; a definitions file that fails rolls back every definition of that run.
    func testDefinitionsAreAppliedAgainWhenChangedOrAfterANewMigration() async throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("migrations-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.copyItem(atPath: migrationsDirectory, toPath: copy.path)
        defer { try? FileManager.default.removeItem(at: copy) }
        func migrateCopy(_ extra: [String] = []) throws -> ProcessResult {
            try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", copy.path] + extra)
        }
        func append(_ sql: String, to file: String) throws {
            let url = copy.appendingPathComponent("definitions/" + file)
            try (try String(contentsOf: url, encoding: .utf8) + sql).write(to: url, atomically: true, encoding: .utf8)
        }
        let count = try definitionFiles().count
        XCTAssertEqual(try migrateCopy().status, 0)

        try append("COMMENT ON FUNCTION vault.tokens_sealed_with(bigint) IS 'edited';\n", to: "20_unmask.sql")
        let dryRun = try migrateCopy(["--dry-run"])
        XCTAssertEqual(dryRun.status, 0, dryRun.stderr)
        XCTAssertEqual(dryRun.stdout, "would apply definitions/20_unmask.sql\n")
        let changed = try migrateCopy()
        XCTAssertEqual(changed.status, 0, changed.stderr)
        XCTAssertTrue(changed.stdout.hasPrefix("applied definitions/20_unmask.sql\ndatabase is up to date"), changed.stdout)
        let comment = try await scalar("SELECT obj_description('vault.tokens_sealed_with(bigint)'::regprocedure)")
        XCTAssertEqual(comment, "edited")

        // A file that fails: nothing of this run's definitions stays, the file's record is unchanged.
        try append("COMMENT ON FUNCTION vault.tokens_sealed_with(bigint) IS 'edited again';\n", to: "20_unmask.sql")
        try append("SELECT no_such_function();\n", to: "30_lookup.sql")
        let records = "SELECT string_agg(file_name || checksum || applied_at, ',' ORDER BY file_name) FROM piivault_definitions"
        let before = try await scalar(PostgresQuery(unsafeSQL: records))
        let failed = try migrateCopy()
        XCTAssertEqual(failed.status, PIIVaultExitCode.failure.rawValue, failed.stderr)
        XCTAssertTrue(failed.stderr.hasPrefix("piivault: error: definitions file definitions/30_lookup.sql failed and was rolled back"),
                      failed.stderr)
        let kept = try await scalar("SELECT obj_description('vault.tokens_sealed_with(bigint)'::regprocedure)")
        XCTAssertEqual(kept, "edited", "20_unmask.sql's change rolled back with the failing file")
        let after = try await scalar(PostgresQuery(unsafeSQL: records))
        XCTAssertEqual(before, after)

        // A new versioned migration: every definitions file is applied after it, in name order.
        try FileManager.default.removeItem(at: copy.appendingPathComponent("definitions/30_lookup.sql"))
        try FileManager.default.copyItem(atPath: migrationsDirectory + "/definitions/30_lookup.sql",
                                         toPath: copy.appendingPathComponent("definitions/30_lookup.sql").path)
        try "CREATE TABLE public.later (id int);\n".write(to: copy.appendingPathComponent("0999_later.sql"),
                                                          atomically: true, encoding: .utf8)
        let later = try migrateCopy()
        XCTAssertEqual(later.status, 0, later.stderr)
        let applied = later.stdout.split(separator: "\n").filter { $0.hasPrefix("applied ") }
        XCTAssertEqual(applied, ["applied 0999_later.sql"] + (try definitionFiles().keys.sorted().map { "applied definitions/\($0)" }))
        XCTAssertTrue(later.stdout.contains(", \(count) definitions files current)"), later.stdout)
        let again = try await scalar("SELECT obj_description('vault.tokens_sealed_with(bigint)'::regprocedure)")
        XCTAssertEqual(again, "edited again")
        let afterVersions = try await scalar("SELECT string_agg(DISTINCT after_version::text, ',') FROM piivault_definitions")
        XCTAssertEqual(afterVersions, "999")
    }

    /// The last versioned migration main applied before the definitions folder existed (5801518): installed
    /// databases are at this version, migrated by main's runner, which knew nothing of definitions.
    private static let lastVersionOfMain = 16

    /// Migrates `target` as main's runner did: the versioned migrations up to 0016, each in its own transaction with
    /// its row in public.piivault_migrations, and nothing else.
    private func migrateAsMainDid(_ target: ScratchDatabase) async throws {
        let connection = try await target.connect()
        defer { Task { await connection.close() } }
        try await connection.execute("""
            CREATE TABLE IF NOT EXISTS public.piivault_migrations (
                version    integer     PRIMARY KEY,
                file_name  text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        for migration in try MigrationFiles.load(from: URL(fileURLWithPath: migrationsDirectory))
        where migration.version <= Self.lastVersionOfMain {
            try await connection.transaction { connection in
                try await connection.executeScript(migration.sql)
                try await connection.execute("""
                    INSERT INTO public.piivault_migrations (version, file_name, checksum)
                    VALUES (\(migration.version), \(migration.fileName), \(migration.checksum))
                    """)
            }
        }
    }

    /// Every function, procedure and view of the piivault schemas with its definition and grants, and the grants on
    /// every table, view and column there: what must not depend on how a database got to the current version.
    private func liveDefinitions(_ target: ScratchDatabase) async throws -> [String] {
        let connection = try await target.connect()
        defer { Task { await connection.close() } }
        let rows = try await connection.query("""
            WITH acl(oid, kind, acl) AS (
                SELECT p.oid, 'function', p.proacl FROM pg_proc AS p
                UNION ALL SELECT c.oid, 'relation', c.relacl FROM pg_class AS c
            ), grants AS (
                SELECT a.oid, a.kind, coalesce(string_agg(
                           x.grantee::regrole::text || ':' || x.privilege_type || ':' || x.grantor::regrole::text,
                           ',' ORDER BY x.grantee::regrole::text, x.privilege_type), 'default') AS grants
                  FROM acl AS a LEFT JOIN LATERAL aclexplode(a.acl) AS x ON true
                 GROUP BY a.oid, a.kind
            )
            SELECT 'function ' || p.oid::regprocedure::text || E'\n' || pg_get_functiondef(p.oid) || E'\ngrants '
                   || g.grants AS item
              FROM pg_proc AS p JOIN grants AS g ON g.oid = p.oid AND g.kind = 'function'
             WHERE p.pronamespace::regnamespace::text IN ('audit', 'vault', 'public')
            UNION ALL
            SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text
                   || CASE WHEN c.relkind IN ('v', 'm') THEN E'\n' || pg_get_viewdef(c.oid) ELSE '' END
                   || E'\ngrants ' || g.grants
                   || coalesce((SELECT E'\ncolumn grants ' || string_agg(a.attname || '=' || a.attacl::text, ',' ORDER BY a.attnum)
                                  FROM pg_attribute AS a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL), '')
              FROM pg_class AS c JOIN grants AS g ON g.oid = c.oid AND g.kind = 'relation'
             WHERE c.relnamespace::regnamespace::text IN ('audit', 'vault', 'public') AND c.relkind IN ('r', 'v', 'm', 'S')
             ORDER BY 1
            """)
        return try rows.map { try $0["item"].requiredString() }
    }

    /// A database installed by main (migrated to 0016 by main's runner) migrates forward with this runner to exactly
    /// the functions, views and grants of a fresh install.
    func testAnInstalledDatabaseMigratesForwardToTheFunctionsOfAFreshInstall() async throws {
        try await migrateAsMainDid(database)
        let installed = try await liveDefinitions(database)
        XCTAssertTrue(installed.contains { $0.hasPrefix("function audit.append_denied(") }, "main's functions are there")
        let forward = try migrate()
        XCTAssertEqual(forward.status, 0, forward.stderr)
        XCTAssertFalse(forward.stdout.contains("applied 0016"), forward.stdout)
        XCTAssertTrue(forward.stdout.contains("applied definitions/10_audit.sql"), forward.stdout)

        let fresh = try await ScratchDatabase.create(prefix: "migfresh")
        defer { Task { await fresh.drop() } }
        let install = try migrate(url: fresh.url)
        XCTAssertEqual(install.status, 0, install.stderr)
        let migrated = try await liveDefinitions(database)
        let expected = try await liveDefinitions(fresh)
        XCTAssertGreaterThan(expected.count, 60)
        XCTAssertEqual(migrated.count, expected.count)
        for (got, want) in zip(migrated, expected) where got != want {
            XCTFail("differs from a fresh install:\n\(got)\n--- fresh install:\n\(want)")
        }
        let records = "SELECT string_agg(file_name || ' ' || checksum || ' ' || after_version, ',' ORDER BY file_name) FROM piivault_definitions"
        let migratedRecords = try await scalar(PostgresQuery(unsafeSQL: records))
        let freshConnection = try await fresh.connect()
        let freshRecords = try await freshConnection.query(PostgresQuery(unsafeSQL: records)).first?[0].string()
        await freshConnection.close()
        XCTAssertEqual(migratedRecords, freshRecords)
    }

    /// Every function, procedure and view of the piivault schemas of a fresh install has its one `CREATE OR REPLACE`
    /// block in exactly one definitions file, and every block there defines something that exists.
    func testEveryFunctionAndViewIsDefinedInExactlyOneDefinitionsFile() async throws {
        let fresh = try await ScratchDatabase.migrated(prefix: "migdefs")
        defer { Task { await fresh.drop() } }
        let connection = try await fresh.connect()
        let live = try await connection.query("""
            SELECT p.pronamespace::regnamespace::text || '.' || p.proname AS name FROM pg_proc AS p
             WHERE p.pronamespace::regnamespace::text IN ('audit', 'vault', 'public')
               AND NOT EXISTS (SELECT 1 FROM pg_depend AS d
                                WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
            UNION ALL
            SELECT c.relnamespace::regnamespace::text || '.' || c.relname FROM pg_class AS c
             WHERE c.relnamespace::regnamespace::text IN ('audit', 'vault', 'public') AND c.relkind IN ('v', 'm')
            """).map { try $0["name"].requiredString() }
        await connection.close()
        XCTAssertGreaterThan(live.count, 50)

        let block = try NSRegularExpression(
            pattern: "^CREATE OR REPLACE (?:FUNCTION|PROCEDURE|VIEW) ([a-z_][a-z0-9_]*\\.[a-z_][a-z0-9_]*)",
            options: [.anchorsMatchLines])
        var definedIn: [String: [String]] = [:]
        for (file, sql) in try definitionFiles() {
            for match in block.matches(in: sql, range: NSRange(sql.startIndex..., in: sql)) {
                definedIn[String(sql[Range(match.range(at: 1), in: sql)!]), default: []].append(file)
            }
        }
        for name in Set(live) {
            let files = definedIn[name] ?? []
            XCTAssertEqual(Set(files).count, 1, "\(name) is defined in one definitions file, not \(files)")
            XCTAssertEqual(files.count, live.filter { $0 == name }.count, "\(name): one block per overload")
        }
        for name in definedIn.keys where !live.contains(name) {
            XCTFail("definitions define \(name), which a fresh install does not have")
        }
    }

    /// Every SECURITY DEFINER function a compliance or auditor login may run gives up waiting for a lock after a
    /// `lock_timeout` of its own (10 to 60 s), so a session left idle in a transaction holding a row it needs makes
    /// the step fail with the holder named instead of hang. The one exception is the vault-wide erasure lock, whose
    /// wait `forget --lock-wait` chooses.
    func testEveryFunctionAComplianceLoginRunsBoundsItsLockWaits() async throws {
        let fresh = try await ScratchDatabase.migrated(prefix: "miglocks")
        defer { Task { await fresh.drop() } }
        let connection = try await fresh.connect()
        let query: PostgresQuery = """
            SELECT DISTINCT p.oid::regprocedure::text AS f
              FROM pg_proc AS p, unnest(ARRAY['piivault_compliance', 'piivault_auditor']) AS r(role)
             WHERE p.pronamespace::regnamespace::text IN ('audit', 'vault', 'public') AND p.prosecdef
               AND has_function_privilege(r.role, p.oid, 'EXECUTE')
               AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS c WHERE c LIKE 'lock\\_timeout=%')
             ORDER BY 1
            """
        let unbounded = try await connection.query(query).map { try $0["f"].requiredString() }
        let runnable = try await connection.query("""
            SELECT count(*) AS n FROM pg_proc AS p
             WHERE p.prosecdef AND has_function_privilege('piivault_compliance', p.oid, 'EXECUTE')
               AND p.pronamespace::regnamespace::text IN ('audit', 'vault', 'public')
            """).requiredFirst("count")["n"].requiredInt()
        await connection.close()
        XCTAssertGreaterThan(runnable, 30)
        XCTAssertEqual(unbounded, ["vault.lock_vault_values_exclusive()"])
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

    /// A connection string libpq cannot parse is a usage error (64) that says so, not "cannot connect" (69, as if the
    /// database were down); the password in it is not printed.
    func testAMalformedConnectionStringIsAUsageError() throws {
        for url in ["postgresql://[bad", "postgresql://postgres:hunter2-secret@127.0.0.1:1/x?no_such_option=1",
                    "host=127.0.0.1 password=hunter2-secret port"] {
            let result = try runPiivault(["runs", "--database-url", url])
            XCTAssertEqual(result.status, 64, "\(url): \(result.stderr)")
            XCTAssertTrue(result.stderr.hasPrefix("piivault: error: the database connection string is malformed: "),
                          result.stderr)
            XCTAssertFalse(result.stderr.contains("hunter2"), result.stderr)
        }
        // A bare word is a database name, as for psql: the PG* variables say where (here nowhere reachable: 69).
        let bare = try runPiivault(["runs", "--database-url", "some_database"],
                                   environment: ["PGHOST": "127.0.0.1", "PGPORT": "1", "PGCONNECT_TIMEOUT": "2"])
        XCTAssertEqual(bare.status, 69, bare.stderr)
    }

    /// A server that accepts the connection and never answers (a hung database, a firewall that swallows packets):
    /// the attempt gives up after PostgresConnection.defaultConnectTimeout seconds and exits 69, where libpq alone
    /// waits forever; a connect_timeout in the URL still wins.
    func testADatabaseThatNeverAnswersTimesOutWith69() async throws {
        let listener = try BackgroundProcess("/usr/bin/env", ["python3", "-c", """
            import socket, sys, time
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
            print(s.getsockname()[1], flush=True)
            held = []
            while True:
                held.append(s.accept()[0])
            """])
        defer { listener.send(SIGTERM) }
        try await waitUntil("the listener prints its port", timeout: 10) { Int(listener.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) != nil }
        let port = listener.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let started = Date()
        let result = try runPiivault(["runs", "--database-url", "postgresql://postgres:pw@127.0.0.1:\(port)/x?sslmode=disable"],
                                     environment: ["PGCONNECT_TIMEOUT": nil])
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: cannot connect to the database"), result.stderr)
        XCTAssertLessThan(seconds, Double(PostgresConnection.defaultConnectTimeout) + 10)
        let quick = Date()
        let short = try runPiivault(["runs", "--database-url", "postgresql://postgres:pw@127.0.0.1:\(port)/x?sslmode=disable&connect_timeout=2"],
                                    environment: ["PGCONNECT_TIMEOUT": nil])
        XCTAssertEqual(short.status, 69, short.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(quick), 8, "the URL's connect_timeout wins")
    }
}
