import Foundation
import Postgres
import TestSupport
import XCTest

extension ScratchDatabase {
    /// SQL (for the database owner) that makes every append to the access log fail with "access log is read-only for
    /// this test", as a full disk or a broken grant would: the fail-closed tests run a command against it. Undone by
    /// `DROP TRIGGER refuse_append ON audit.access_log`.
    static let refuseAccessLogAppends = """
        CREATE FUNCTION public.refuse_append() RETURNS trigger LANGUAGE plpgsql AS
            $$ BEGIN RAISE EXCEPTION 'access log is read-only for this test'; END $$;
        CREATE TRIGGER refuse_append BEFORE INSERT ON audit.access_log
            FOR EACH ROW EXECUTE FUNCTION public.refuse_append();
        """

    /// A scratch database migrated with the project's migrations by the real binary. The binary migrates one
    /// template database per test process; each test gets a copy of it (`CREATE DATABASE ... TEMPLATE`), which takes a
    /// fraction of the time of migrating afresh.
    static func migrated(prefix: String) async throws -> ScratchDatabase {
        try await ScratchDatabase.create(prefix: prefix, template: try await MigratedTemplate.shared.name())
    }
}

/// The migrated template database, shared by every test process of a run (`swift test --parallel` runs each test in
/// a process of its own): named by a digest of the migrations, made once under a cluster-wide lock, and kept. A
/// template of other migrations (an older checkout's) is dropped when a new one is made, so at most one is left
/// behind in a long-lived cluster; the throwaway cluster of `make test` goes away whole.
actor MigratedTemplate {
    static let shared = MigratedTemplate()
    private var name: String?

    func name() async throws -> String {
        if let name { return name }
        let migrations = TestServices.repositoryRoot.appendingPathComponent("migrations")
        let wanted = "piivault_template_" + (try Self.digest(of: migrations))
        try await ScratchDatabase.withClusterLock { admin in
            let existing = try await admin.query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'piivault\\_template\\_%'")
                .map { try $0[0].string() ?? "" }
            if existing.contains(wanted) { return }
            for stale in existing {
                try await admin.execute(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(stale) WITH (FORCE)"))
            }
            // Migrated under another name first, so that no process ever copies a half-migrated template; the
            // cluster lock also keeps two processes from creating the cluster's roles (migration 0001) at once.
            let database = try await ScratchDatabase.create(prefix: "template")
            let result = try runPiivault(["migrate", "--database-url", database.url,
                                          "--migrations-dir", migrations.path])
            guard result.status == 0 else {
                await database.drop()
                throw TestSetupError("piivault migrate failed: \(result.stderr)")
            }
            try await admin.execute(PostgresQuery(unsafeSQL: "ALTER DATABASE \(database.name) RENAME TO \(wanted)"))
        }
        name = wanted
        return wanted
    }

    /// The first 12 hex digits of the SHA-256 of the migration files' names and contents (versioned, then
    /// definitions), in name order.
    private static func digest(of directory: URL) throws -> String {
        var input = Data()
        for folder in [directory, directory.appendingPathComponent("definitions")] {
            let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".sql") }
                .sorted()
            for file in files {
                input.append(Data(file.utf8))
                input.append(try Data(contentsOf: folder.appendingPathComponent(file)))
            }
        }
        let result = try runProcess("sha256sum", [], input: input)
        guard result.status == 0 else { throw TestSetupError("sha256sum failed: \(result.stderr)") }
        return String(result.stdout.prefix(12))
    }
}

/// A live ETL run as `ETLStore.beginRun` makes one (migration 0017): a `running` row of `public.etl_runs` naming the
/// transaction its lock session keeps open. The run is alive until `end()` closes that session (its process gone).
struct LiveETLRun {
    let id: Int
    private let session: PostgresConnection
    private let url: String

    private init(id: Int, session: PostgresConnection, url: String) {
        self.id = id
        self.session = session
        self.url = url
    }

    static func start(_ url: String, source: String = "file:test", vaultKeyID: String? = nil) async throws -> LiveETLRun {
        let session = try await PostgresConnection.connect(url)
        try await session.execute("BEGIN")
        let xid = try await session.query("SELECT pg_current_xact_id()::text AS xid").first!["xid"].requiredString()
        let writer = try await PostgresConnection.connect(url)
        let id = try await writer.query("""
            SELECT public.begin_etl_run(\(source), \(vaultKeyID), NULL, NULL, \(xid)::xid8) AS id
            """).first!["id"].requiredInt()
        await writer.close()
        return LiveETLRun(id: id, session: session, url: url)
    }

    /// The run's process is gone: its lock session's transaction ends with its connection. Returns once the server
    /// has ended it (within 30 s).
    func end() async {
        await session.close()
        guard let observer = try? await PostgresConnection.connect(url) else { return }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let live = try? await observer.query(
                "SELECT public.etl_run_is_live(live_xid) AS live FROM public.etl_runs WHERE id = \(id)"
            ).first?["live"].bool()
            if live != true { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        await observer.close()
    }
}
