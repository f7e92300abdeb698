import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Issue 21: what the database enforces whatever a login does in psql. Locks no login outside the piivault roles
/// can take (acceptance 2), subjects the client cannot choose (3), no user id left outside the access log after
/// `forget` (4), and accesses the database cannot refuse marked in the log and the report. The real binary against
/// real Postgres.
final class DatabaseEnforcementTests: XCTestCase {
    var keys: URL!
    var databases: [ScratchDatabase] = []

    override func setUp() async throws {
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("enforce-keys-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        for pair in ["a", "b"] {
            let keygen = try runPiivault(["keygen", "--dir", keys.appendingPathComponent(pair).path])
            XCTAssertEqual(keygen.status, 0, keygen.stderr)
        }
        let rotate = try runPiivault(["keygen", "--dir", keys.appendingPathComponent("v2").path, "--token-key-version",
                                      "2", "--previous-token-key", path("a", "token.key")])
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
    }

    override func tearDown() async throws {
        for database in databases { await database.drop() }
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    private func path(_ pair: String, _ file: String) -> String {
        keys.appendingPathComponent(pair).appendingPathComponent(file).path
    }

    private func newDatabase() async throws -> ScratchDatabase {
        let database = try await ScratchDatabase.migrated(prefix: "enforce")
        databases.append(database)
        return database
    }

    private func subjectHash(_ userID: String) throws -> String {
        TombstoneHasher(key: try KeyLoading.loadTokenKey(path: path("a", "token.key"))).hash(userID: userID)
    }

    /// A message file of logins (user, ip, device id, days ago).
    private func messages(_ logins: [(String, String, String, Int)]) throws -> URL {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        let lines = try logins.map { user, ip, device, daysAgo -> String in
            let record: [String: Any] = [
                "user_id": user, "device_type": "ios", "ip": ip, "device_id": device, "app_version": "1.2.3",
                "create_date": formatter.string(from: Date().addingTimeInterval(-Double(daysAgo) * 86_400)),
            ]
            return String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)
        }
        let file = keys.appendingPathComponent("messages-\(ScratchDatabase.randomHex(4)).ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        return file
    }

    private func etlArguments(_ file: URL, url: String) -> [String] {
        ["etl", "--from-file", file.path, "--database-url", url, "--token-key", path("a", "token.key"),
         "--vault-public-key", path("a", "vault.pub")]
    }

    /// Runs the binary to its end, or fails the test (and kills it) after `timeout` seconds: on the code before this
    /// change a command blocked on an advisory lock another login holds would wait forever.
    private func finish(_ arguments: [String], environment: [String: String?] = [:], timeout: Double = 120,
                        file: StaticString = #filePath, line: UInt = #line) async throws -> (status: Int32, stdout: String, stderr: String) {
        var env: [String: String?] = ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil, "PIIVAULT_VAULT_KEY": nil,
                                      "PIIVAULT_FAULT_EXIT_AFTER_COMMITS": nil]
        for (key, value) in environment { env[key] = value }
        let process = try BackgroundProcess(try piivaultBinary(), arguments, environment: env)
        guard try await process.waitForExit(timeout: timeout) else {
            process.send(SIGKILL)
            _ = try await process.waitForExit(timeout: 10)
            XCTFail("`piivault \(arguments[0])` did not finish within \(Int(timeout)) s: \(process.stderr)", file: file, line: line)
            return (-1, process.stdout, process.stderr)
        }
        return (process.status, process.stdout, process.stderr)
    }

    private func count(_ sql: String, in database: ScratchDatabase) async throws -> Int {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        return try await connection.query(PostgresQuery(unsafeSQL: sql)).first![0].requiredInt()
    }

    private func expectRefused(_ connection: PostgresConnection, _ sql: String, _ what: String,
                               file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await connection.transaction { connection in
                _ = try await connection.execute(PostgresQuery(unsafeSQL: sql))
            }
            XCTFail("\(what): taken, but this login must not be able to", file: file, line: line)
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(what): \(error)", file: file, line: line)
        } catch {
            XCTFail("\(what): \(error)", file: file, line: line)
        }
    }

    /// Every advisory lock piivault took before migration 0017, named, as `pg_advisory_lock` calls any login may make
    /// (session-level: held until the connection closes).
    private static func advisoryLocksUsedBefore(subjectHashes: [String]) -> [(name: String, sql: String)] {
        var locks: [(String, String)] = [
            ("the vault-wide value lock (ForgetService's VaultValueLock, 0014, 0016)",
             "SELECT pg_advisory_lock(hashtextextended('piivault-vault-values', 0))"),
            ("the migrate lock (Migrations.swift)", "SELECT pg_advisory_lock(7270717311)"),
        ]
        for id in 1...30 {
            locks.append(("the ETL run lock of run \(id) (ETLStore.runLockNamespace)", "SELECT pg_advisory_lock(7271501, \(id))"))
            locks.append(("the rewrap session lock of entry \(id) (0015)", "SELECT pg_advisory_lock(7271502, \(id))"))
            locks.append(("the retokenize session lock of entry \(id) (0016)", "SELECT pg_advisory_lock(7271503, \(id))"))
        }
        for hash in subjectHashes {
            locks.append(("the subject lock of \(hash) (0013's vault.lock_subjects)",
                          "SELECT pg_advisory_lock(hashtextextended('piivault-subject:' || '\(hash)', 0))"))
        }
        return locks
    }

    // MARK: Acceptance 2: locks

    /// An analyst, the auditor and an ETL login each hold every advisory lock piivault used before, and try the locks
    /// the new code uses: `migrate`, `etl`, `forget`, `retention`, `retokenize` and `rewrap --full` still finish, and
    /// a killed ETL run is marked `abandoned` by the next run.
    func testNoOtherLoginCanStallTheCommandsOrKeepAKilledRunAlive() async throws {
        for role in ["piivault_analyst", "piivault_auditor", "piivault_etl"] {
            let database = try await newDatabase()
            let holderURL = try await database.createLogin(memberOf: role)
            let etlURL = try await database.createLogin(memberOf: "piivault_etl")
            let officer = try await database.createLogin(memberOf: "piivault_compliance")

            let holder = try await PostgresConnection.connect(holderURL)
            for (name, sql) in Self.advisoryLocksUsedBefore(subjectHashes: [try subjectHash("enf-gone")]) {
                do {
                    _ = try await holder.query(PostgresQuery(unsafeSQL: sql))
                } catch {
                    XCTFail("\(role): could not take \(name): \(error)")
                }
            }
            // The locks the new code uses, none of which this login may take (an ETL login may take the vault-wide
            // value lock shared, through vault.lock_vault_values_shared, as every ETL batch does: holding it is what a
            // batch in flight does, and forget's --lock-wait reports it).
            await expectRefused(holder, "LOCK TABLE vault.vault_values_lock IN SHARE MODE", "\(role): the value lock's table")
            await expectRefused(holder, "SELECT vault.lock_vault_values_exclusive()", "\(role): the value lock, exclusive")
            await expectRefused(holder, "LOCK TABLE public.piivault_migrations IN EXCLUSIVE MODE", "\(role): the migrate lock")
            await expectRefused(holder, "UPDATE public.etl_runs SET live_xid = pg_current_xact_id()", "\(role): a run's liveness")
            await expectRefused(holder, "SELECT 1 FROM public.etl_runs FOR KEY SHARE", "\(role): a lock on run rows")
            if role != "piivault_etl" {
                await expectRefused(holder, "SELECT vault.lock_vault_values_shared()", "\(role): the value lock, shared")
            }

            let migrate = try await finish(["migrate", "--database-url", database.url])
            XCTAssertEqual(migrate.status, 0, "\(role): migrate: \(migrate.stderr)")

            let loaded = try await finish(etlArguments(try messages([
                ("enf-old", "192.0.2.10", "enf-device-old", 40), ("enf-keep", "192.0.2.11", "enf-device-keep", 1),
                ("enf-gone", "192.0.2.12", "enf-device-gone", 1),
            ]), url: etlURL))
            XCTAssertEqual(loaded.status, 0, "\(role): etl: \(loaded.stderr)")

            // A run killed after its first batch: its row stays `running`; the next run marks it abandoned.
            let killed = try await finish(
                etlArguments(try messages([("enf-kill-1", "192.0.2.20", "enf-device-k1", 1),
                                           ("enf-kill-2", "192.0.2.21", "enf-device-k2", 1)]), url: etlURL)
                    + ["--batch-size", "1"],
                environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "1"])
            XCTAssertEqual(killed.status, 75, "\(role): killed etl: \(killed.stderr)")
            let killedRun = try await count("SELECT max(id) FROM public.etl_runs", in: database)
            try await waitUntil("the killed run's session has ended", timeout: 30) {
                try await self.count("""
                    SELECT count(*) FROM public.etl_runs WHERE id = \(killedRun) AND public.etl_run_is_live(live_xid)
                    """, in: database) == 0
            }
            let next = try await finish(etlArguments(try messages([("enf-next", "192.0.2.30", "enf-device-n", 1)]), url: etlURL))
            XCTAssertEqual(next.status, 0, "\(role): next etl: \(next.stderr)")
            let killedOutcome = try await count(
                "SELECT CASE outcome WHEN 'abandoned' THEN 1 ELSE 0 END FROM public.etl_runs WHERE id = \(killedRun)",
                in: database)
            XCTAssertEqual(killedOutcome, 1, "\(role): the killed run is marked abandoned by the next run")

            let forget = try await finish(["forget", "--database-url", officer, "--token-key", path("a", "token.key"),
                                           "--reason", "ERASE-1", "--user-id", "enf-gone"])
            XCTAssertEqual(forget.status, 0, "\(role): forget: \(forget.stderr)")
            let retention = try await finish(["retention", "--database-url", officer, "--reason", "POLICY",
                                              "--older-than", "30"])
            XCTAssertEqual(retention.status, 0, "\(role): retention: \(retention.stderr)")
            let retokenize = try await finish(["retokenize", "--database-url", officer, "--key-file", path("a", "vault.key"),
                                               "--token-key", path("v2", "token.key"), "--reason", "CHG-1"])
            XCTAssertEqual(retokenize.status, 0, "\(role): retokenize: \(retokenize.stderr)")
            let rewrap = try await finish(["rewrap", "--database-url", officer, "--key-file", path("a", "vault.key"),
                                           "--to", path("b", "vault.pub"), "--reason", "EXPOSED-1", "--full"])
            XCTAssertEqual(rewrap.status, 0, "\(role): rewrap: \(rewrap.stderr)")

            let left = try await count("""
                SELECT (SELECT count(*) FROM user_logins WHERE user_id IN ('enf-old', 'enf-gone'))
                     + (SELECT count(*) FROM vault.data_keys AS k
                         WHERE k.key_id <> (SELECT key_id FROM vault.data_keys ORDER BY id DESC LIMIT 1))
                """, in: database)
            XCTAssertEqual(left, 0, "\(role): the old and forgotten logins are gone, every old data key dropped")
            await holder.close()
        }
    }

    /// Issue 25: an ETL batch skips re-checking its look-ups under the vault-wide lock when the vault's erasure count
    /// is what it was at the run's start. So every statement that can erase must raise it, whoever runs it and by
    /// whatever path (forget, retention, retokenize, the table owner in psql), and a load, a rewrap or an erasure
    /// rolled back must not. No piivault role but the ETL's may read it, and none may change it.
    func testEveryErasingStatementRaisesTheErasureCountAndNothingElseDoes() async throws {
        let database = try await newDatabase()
        let etlURL = try await database.createLogin(memberOf: "piivault_etl")
        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        var last = try await count("SELECT erasures FROM vault.erasure_count", in: database)
        func expect(raised: Bool, _ what: String, line: UInt = #line) async throws {
            let now = try await count("SELECT erasures FROM vault.erasure_count", in: database)
            if raised { XCTAssertGreaterThan(now, last, what, line: line) } else { XCTAssertEqual(now, last, what, line: line) }
            last = now
        }

        let loaded = try await finish(etlArguments(try messages([
            ("cnt-old", "192.0.2.40", "cnt-device-old", 40), ("cnt-keep", "192.0.2.41", "cnt-device-keep", 1),
            ("cnt-gone", "192.0.2.42", "cnt-device-gone", 1),
        ]), url: etlURL))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        try await expect(raised: false, "an ETL run")
        let forget = try await finish(["forget", "--database-url", officer, "--token-key", path("a", "token.key"),
                                       "--reason", "ERASE-1", "--user-id", "cnt-gone"])
        XCTAssertEqual(forget.status, 0, forget.stderr)
        try await expect(raised: true, "forget")
        let retention = try await finish(["retention", "--database-url", officer, "--reason", "POLICY", "--older-than", "30"])
        XCTAssertEqual(retention.status, 0, retention.stderr)
        try await expect(raised: true, "retention")
        let retokenize = try await finish(["retokenize", "--database-url", officer, "--key-file", path("a", "vault.key"),
                                           "--token-key", path("v2", "token.key"), "--reason", "CHG-1"])
        XCTAssertEqual(retokenize.status, 0, retokenize.stderr)
        try await expect(raised: true, "retokenize")
        let rewrap = try await finish(["rewrap", "--database-url", officer, "--key-file", path("a", "vault.key"),
                                       "--to", path("b", "vault.pub"), "--reason", "EXPOSED-1", "--full"])
        XCTAssertEqual(rewrap.status, 0, rewrap.stderr)
        try await expect(raised: false, "rewrap --full")

        let owner = try await database.connect()
        func run(_ sql: String) async throws { _ = try await owner.execute(PostgresQuery(unsafeSQL: sql)) }
        try await run("UPDATE vault.secrets SET sealed = sealed")
        try await expect(raised: false, "an update of sealed bytes")
        try await run("BEGIN")
        try await run("DELETE FROM vault.secrets")
        try await run("ROLLBACK")
        try await expect(raised: false, "a delete rolled back")
        try await run("DELETE FROM vault.secrets WHERE false")
        try await expect(raised: true, "a delete, even of no row")
        try await run("UPDATE vault.secrets SET token = token")
        try await expect(raised: true, "an update of tokens")
        try await run("INSERT INTO vault.tombstones (subject_hash) VALUES ('\(String(repeating: "ab", count: 32))')")
        try await expect(raised: true, "a tombstone")
        try await run("TRUNCATE vault.secrets")
        try await expect(raised: true, "TRUNCATE")
        await owner.close()

        let etl = try await PostgresConnection.connect(etlURL)
        await expectRefused(etl, "UPDATE vault.erasure_count SET erasures = 0", "piivault_etl: the erasure count")
        await etl.close()
        for role in ["piivault_analyst", "piivault_auditor", "piivault_compliance"] {
            let login = try await PostgresConnection.connect(try await database.createLogin(memberOf: role))
            await expectRefused(login, "SELECT erasures FROM vault.erasure_count", "\(role): reading the erasure count")
            await expectRefused(login, "UPDATE vault.erasure_count SET erasures = 0", "\(role): the erasure count")
            await login.close()
        }
    }

    /// The erasure count vouches for a batch's look-ups only while the triggers that keep it are in the state its run
    /// found at the start (migration 0028): with any one of them switched off by the tables' owner, set to fire only
    /// under replication, or switched off and on again since, the shared lock returns no count for the ETL's login,
    /// so every batch checks again.
    func testTheErasureCountVouchesForNothingOnceATriggerOfItWasSwitched() async throws {
        let database = try await newDatabase()
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        let owner = try await database.connect()
        func triggers() async throws -> Int? {
            try await etl.query("SELECT vault.erasure_count_triggers()").requiredFirst("triggers")[0].int()
        }
        func lockGivesACount(_ triggersAtStart: Int?) async throws -> Bool {
            try await etl.transaction { connection in
                try await connection.query(PostgresQuery(unsafeSQL:
                    "SELECT vault.lock_vault_values_shared(\(triggersAtStart.map(String.init) ?? "NULL"))"))
                    .requiredFirst("lock")[0].int()
            } != nil
        }
        var start = try await triggers()
        XCTAssertNotNil(start)
        var given = try await lockGivesACount(start)
        XCTAssertTrue(given, "a run started with the triggers as they are")
        given = try await lockGivesACount(nil)
        XCTAssertFalse(given, "a run that found them off (or an older binary, which passes nothing)")
        for (table, trigger) in [("vault.secrets", "secrets_count_erasure"), ("vault.secrets", "secrets_count_truncate"),
                                 ("vault.tombstones", "tombstones_count_erasure")] {
            for switchedOff in ["DISABLE TRIGGER", "ENABLE REPLICA TRIGGER"] {
                _ = try await owner.execute(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) \(switchedOff) \(trigger)"))
                let now = try await triggers()
                XCTAssertNil(now, "\(switchedOff) \(trigger)")
                given = try await lockGivesACount(start)
                XCTAssertFalse(given, "\(switchedOff) \(trigger)")
                _ = try await owner.execute(PostgresQuery(unsafeSQL: "ALTER TABLE \(table) ENABLE TRIGGER \(trigger)"))
                given = try await lockGivesACount(start)
                XCTAssertFalse(given, "\(trigger) switched off and on again since the start")
                start = try await triggers()
                given = try await lockGivesACount(start)
                XCTAssertTrue(given, "a run started after \(trigger) was on again")
            }
        }
        // Off and on again inside one transaction: never seen off, still a change.
        _ = try await owner.execute("BEGIN")
        _ = try await owner.execute("ALTER TABLE vault.tombstones DISABLE TRIGGER tombstones_count_erasure")
        _ = try await owner.execute("ALTER TABLE vault.tombstones ENABLE TRIGGER tombstones_count_erasure")
        _ = try await owner.execute("COMMIT")
        given = try await lockGivesACount(start)
        XCTAssertFalse(given, "switched off and on in one transaction")
        _ = try await owner.execute("ALTER TABLE vault.secrets ENABLE ALWAYS TRIGGER secrets_count_erasure")
        start = try await triggers()
        XCTAssertNotNil(start, "a trigger that fires always keeps the count")
        await owner.close()
        await etl.close()
        for role in ["piivault_analyst", "piivault_auditor", "piivault_compliance"] {
            let login = try await PostgresConnection.connect(try await database.createLogin(memberOf: role))
            await expectRefused(login, "SELECT vault.erasure_count_triggers()", "\(role): the erasure count's triggers")
            await login.close()
        }
    }

    // MARK: Run rows (migration 0030)

    /// Only public.begin_etl_run records a run: the ETL login cannot insert a run row of its own choosing, and the
    /// function takes as the run's liveness only a transaction in progress in another session of the same login.
    /// Else an ETL login could keep a forged run `running` on an analyst's long transaction (retention and rewrap
    /// wait for running runs), or backdate a run.
    func testOnlyBeginETLRunRecordsARunAndOnlyOnItsOwnLoginsTransaction() async throws {
        let database = try await newDatabase()
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        let analyst = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_analyst"))
        let otherETL = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        defer { Task { await etl.close(); await analyst.close(); await otherETL.close() } }

        await expectRefused(etl, "INSERT INTO public.etl_runs (source, live_xid) VALUES ('forged', NULL)",
                            "piivault_etl: a run row of its own")
        await expectRefused(etl, "INSERT INTO public.etl_runs (source, started_at) VALUES ('forged', now() - interval '1 day')",
                            "piivault_etl: a backdated run row")
        await expectRefused(analyst, "SELECT public.begin_etl_run('file:x', NULL, NULL, NULL, pg_current_xact_id())",
                            "piivault_analyst: begin_etl_run")

        // A transaction id held open by each kind of session.
        func openTransaction(_ connection: PostgresConnection) async throws -> String {
            try await connection.execute("BEGIN")
            return try await connection.query("SELECT pg_current_xact_id()::text AS xid").first!["xid"].requiredString()
        }
        func begin(_ xid: String) async throws -> Int {
            try await etl.query("SELECT public.begin_etl_run('file:x', NULL, NULL, NULL, \(xid)::xid8) AS id")
                .first!["id"].requiredInt()
        }
        func expectRejected(_ xid: String, _ what: String) async {
            do {
                _ = try await begin(xid)
                XCTFail("\(what): accepted as a run's liveness")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "22023", "\(what): \(error)")
            } catch {
                XCTFail("\(what): \(error)")
            }
        }
        await expectRejected(try await openTransaction(analyst), "an analyst's transaction")
        await expectRejected(try await openTransaction(otherETL), "another ETL login's transaction")
        let ended = try await etl.query("SELECT pg_current_xact_id()::text AS xid").first!["xid"].requiredString()
        await expectRejected(ended, "a transaction that has ended")
        await expectRejected("999999999999", "a transaction id not yet assigned")
        await expectRejected("0", "the invalid transaction id")
        try await analyst.execute("ROLLBACK")
        try await otherETL.execute("ROLLBACK")

        // The run's lock session: another session of the same login, as ETLStore.beginRun opens it (LiveETLRun).
        let etlURL = try await database.createLogin(memberOf: "piivault_etl")
        let run = try await LiveETLRun.start(etlURL)
        let row = try await etl.query("""
            SELECT outcome, public.etl_run_is_live(live_xid) AS live, started_at > now() - interval '1 minute' AS now
              FROM public.etl_runs WHERE id = \(run.id)
            """).first!
        XCTAssertEqual(try row["outcome"].string(), "running")
        XCTAssertEqual(try row["live"].bool(), true)
        XCTAssertEqual(try row["now"].bool(), true, "the run starts on the database's clock")
        await run.end()
    }

    // MARK: Data key references (migration 0026)

    /// The foreign key from sealed values to their data keys became statement-level triggers (one check per ETL batch
    /// instead of one per value): every statement that could leave a value without its data key is refused, for the
    /// owner too, and a delete of a key that races a batch sealing under it fails at every isolation level.
    func testNoStatementLeavesASealedValueWithoutItsDataKey() async throws {
        let database = try await newDatabase()
        let owner = try await database.connect()
        func run(_ sql: String, on connection: PostgresConnection? = nil) async throws {
            _ = try await (connection ?? owner).execute(PostgresQuery(unsafeSQL: sql))
        }
        func newKey() async throws -> Int {
            try await owner.query("INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('0123456789abcdef', '\\x00') RETURNING id")
                .first![0].requiredInt()
        }
        func expectForeignKeyViolation(_ what: String, line: UInt = #line, _ body: () async throws -> Void) async {
            do {
                try await body()
                XCTFail("\(what): accepted", line: line)
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "23503", "\(what): \(error)", line: line)
            } catch {
                XCTFail("\(what): \(error)", line: line)
            }
        }
        let used = try await newKey(), unused = try await newKey(), missing = unused + 1000
        try await run("INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.used', 'ip', \(used), '\\x00')")

        await expectForeignKeyViolation("an INSERT naming a missing key") {
            try await run("INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.x', 'ip', \(missing), '\\x00')")
        }
        await expectForeignKeyViolation("a COPY naming a missing key") {
            _ = try await owner.copyFromStdin("COPY vault.secrets (token, field, data_key_id, sealed) FROM STDIN",
                                              data: Array("ip.v1.y\tip\t\(used)\t\\\\x00\nip.v1.z\tip\t\(missing)\t\\\\x00\n".utf8))
        }
        await expectForeignKeyViolation("an UPDATE to a missing key") {
            try await run("UPDATE vault.secrets SET data_key_id = \(missing)")
        }
        await expectForeignKeyViolation("a DELETE of a key in use") {
            try await run("DELETE FROM vault.data_keys WHERE id = \(used)")
        }
        await expectForeignKeyViolation("TRUNCATE of the data keys") {
            try await run("TRUNCATE vault.data_keys CASCADE")
        }
        // TRUNCATE checks no rows: it is refused even where the caller's snapshot shows an empty vault (REPEATABLE
        // READ, from before a batch committed values).
        let reader = try await database.connect()
        try await run("BEGIN ISOLATION LEVEL REPEATABLE READ", on: reader)
        try await run("DELETE FROM vault.secrets WHERE true", on: reader)
        await expectForeignKeyViolation("TRUNCATE where the caller sees no value") {
            try await run("TRUNCATE vault.data_keys CASCADE", on: reader)
        }
        try await run("ROLLBACK", on: reader)
        await reader.close()
        let values = try await count("SELECT count(*) FROM vault.secrets", in: database)
        XCTAssertEqual(values, 1)
        try await run("UPDATE vault.secrets SET sealed = '\\x01'")
        try await run("DELETE FROM vault.data_keys WHERE id = \(unused)")

        // A batch inserts values under a key no value used yet and has not committed; another transaction deletes the
        // key (as retention's query would, finding no value of it). The delete waits for the batch, then fails.
        for (isolation, expected) in [("READ COMMITTED", "23503"), ("REPEATABLE READ", "40001"), ("SERIALIZABLE", "40001")] {
            let key = try await newKey()
            let batch = try await database.connect(), deleter = try await database.connect()
            try await run("BEGIN", on: batch)
            try await run("INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.race-\(key)', 'ip', \(key), '\\x00')", on: batch)
            try await run("BEGIN ISOLATION LEVEL \(isolation)", on: deleter)
            try await run("SELECT count(*) FROM vault.secrets", on: deleter)  // the snapshot, before the batch commits
            let deleterPID = try await deleter.query("SELECT pg_backend_pid()").first![0].requiredInt()
            let delete = Task {
                try await run("""
                    DELETE FROM vault.data_keys AS k WHERE k.id = \(key)
                       AND NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.data_key_id = k.id)
                    """, on: deleter)
            }
            var waiting = false
            for _ in 0..<200 where !waiting {
                waiting = try await count("SELECT count(*) FROM pg_stat_activity WHERE pid = \(deleterPID) AND wait_event_type = 'Lock'",
                                          in: database) == 1
                if !waiting { try await Task.sleep(nanoseconds: 50_000_000) }
            }
            XCTAssertTrue(waiting, "\(isolation): the delete did not wait for the batch")
            try await run("COMMIT", on: batch)
            do {
                try await delete.value
                XCTFail("\(isolation): the key of a committed batch was deleted")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, expected, "\(isolation): \(error)")
            }
            try await run("ROLLBACK", on: deleter)
            let kept = try await count("SELECT count(*) FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id WHERE k.id = \(key)",
                                       in: database)
            XCTAssertEqual(kept, 1, isolation)
            await batch.close()
            await deleter.close()
        }
        await owner.close()
    }

    // MARK: Acceptance 3: subjects

    /// Every function a compliance login may execute that names a user or a subject, called in psql's way with
    /// arguments naming one user and rows of another: refused, or the entry, the tombstone and the rows deleted name
    /// one user, and that user's next message is suppressed.
    func testAComplianceLoginCannotEraseOneUserWhileTheLogAndTombstoneNameAnother() async throws {
        let database = try await newDatabase()
        let officerURL = try await database.createLogin(memberOf: "piivault_compliance")
        let loaded = try await finish(etlArguments(try messages([
            ("subj-a", "192.0.2.40", "subj-device-a1", 1), ("subj-a", "192.0.2.41", "subj-device-a2", 2),
            ("subj-b", "192.0.2.42", "subj-device-b", 1),
        ]), url: database.url))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        let hashA = try subjectHash("subj-a"), hashB = try subjectHash("subj-b")

        // The functions a compliance login may execute that take a user id or a subject: each is called below.
        let admin = try await database.connect()
        defer { Task { await admin.close() } }
        let takingUsers = try await admin.query("""
            SELECT p.oid::regprocedure::text AS f FROM pg_proc AS p JOIN pg_namespace AS n ON n.oid = p.pronamespace
             WHERE n.nspname IN ('vault', 'audit', 'public')
               AND has_function_privilege('piivault_compliance', p.oid, 'EXECUTE')
               AND pg_get_function_arguments(p.oid) ~ '\\m(user_id|wanted_user_id|subject_hash|subject) '
             ORDER BY 1
            """).map { try $0["f"].requiredString() }
        XCTAssertEqual(takingUsers, [
            "audit.record_refusal(text,text,text,text,text,text)",
            "vault.forget_user(text,text,text,text,text,boolean)",
            "vault.request_unmask_user(text,text,text,text,integer,text)",
        ])

        let officer = try await PostgresConnection.connect(officerURL)
        defer { Task { await officer.close() } }
        func state() async throws -> [Int] {
            [try await count("SELECT count(*) FROM user_logins WHERE user_id = 'subj-a'", in: database),
             try await count("SELECT count(*) FROM user_logins WHERE user_id = 'subj-b'", in: database),
             try await count("SELECT count(*) FROM vault.tombstones", in: database),
             try await count("SELECT count(*) FROM audit.access_log WHERE action = 'forget'", in: database)]
        }
        let before = try await state()
        XCTAssertEqual(before, [2, 1, 0, 0])
        // The red team's call, and its variations: the hash of nobody, of the other user, a dry run, a user without
        // rows named by the hash of a user with rows.
        let mismatches: [(String, String, String, Bool)] = [
            ("the red team's call", String(repeating: "ab", count: 32), "subj-a", false),
            ("another user's hash", hashB, "subj-a", false),
            ("another user's hash, dry run", hashB, "subj-a", true),
            ("a user without rows, named by the hash of a user with rows", hashA, "subj-nobody", false),
        ]
        for (what, hash, user, dryRun) in mismatches {
            do {
                _ = try await officer.query(
                    "SELECT * FROM vault.forget_user(\(hash), \(user), 'ticket-99', 'o', 'h', \(dryRun))")
                XCTFail("\(what): accepted")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "22023", "\(what): \(error)")
            }
            let after = try await state()
            XCTAssertEqual(after, before, "\(what): nothing deleted, tombstoned or logged")
        }

        // Through the binary, a token key of another tombstone key computes another hash: refused the same way.
        let otherKey = try await finish(["forget", "--database-url", officerURL, "--token-key", path("b", "token.key"),
                                         "--reason", "ticket-99", "--user-id", "subj-a"])
        XCTAssertEqual(otherKey.status, 65, otherKey.stderr)
        XCTAssertEqual(otherKey.stderr, "piivault: error: the user's rows were loaded with another token key (their keyed user-id hash is not this key's); nothing was deleted or logged: run forget with the token key the ETL uses\n")
        let afterOtherKey = try await state()
        XCTAssertEqual(afterOtherKey, before)

        // A refusal the client records names a subject but deletes nothing and tombstones no one.
        _ = try await officer.query(
            "SELECT audit.record_refusal('forget', 'ticket-99', \("user_hash:" + hashB), 'x', 'o', 'h')")
        let afterRefusal = try await state()
        XCTAssertEqual(Array(afterRefusal.prefix(3)), [2, 1, 0])
        // Unmask by user id names the user it was asked for, and releases that user's rows only.
        let grant = try await officer.query(
            "SELECT log_seq FROM vault.request_unmask_user('subj-a', 'ticket-99', 'o', 'h', 100, \(try KeyLoading.loadVaultPublicKey(path: path("a", "vault.pub")).keyID.hex))"
        ).first!["log_seq"].requiredInt()
        let released = try await officer.query("SELECT user_id FROM vault.release_unmask_user(\(grant))")
            .map { try $0["user_id"].requiredString() }
        XCTAssertEqual(released, ["subj-a", "subj-a"])
        let subject = try await count(
            "SELECT count(*) FROM audit.access_log WHERE seq = \(grant) AND subject = 'user_id:subj-a'", in: database)
        XCTAssertEqual(subject, 1)

        // The matching call erases subj-a, and entry, tombstone and rows name subj-a.
        let done = try await officer.query(
            "SELECT * FROM vault.forget_user(\(hashA), 'subj-a', 'ticket-99', 'o', 'h', false)")
        XCTAssertEqual(try done.first!["rows_deleted"].requiredInt(), 2)
        let erased = try await state()
        XCTAssertEqual(Array(erased.prefix(3)), [0, 1, 1])
        let named = try await count("""
            SELECT count(*) FROM audit.access_log AS l JOIN vault.tombstones AS t ON l.subject = 'user_hash:' || t.subject_hash
             WHERE l.action = 'forget' AND t.subject_hash = '\(hashA)'
            """, in: database)
        XCTAssertEqual(named, 1, "the entry and the tombstone name the user whose rows were deleted")
        let again = try await finish(etlArguments(try messages([("subj-a", "192.0.2.43", "subj-device-a3", 0)]),
                                                  url: database.url))
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("suppressed 1"), again.stdout)
        let reloaded = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'subj-a'", in: database)
        XCTAssertEqual(reloaded, 0, "the user's next message is suppressed")
    }

    /// `forget` clears the user id from the grants of earlier unmasks by that user id, and from no other grant: a
    /// retention run's grant names its cutoff date, which a user id may spell too.
    func testForgetLeavesOtherKindsOfGrantsThatSpellTheUserIDAlone() async throws {
        let database = try await newDatabase()
        let officerURL = try await database.createLogin(memberOf: "piivault_compliance")
        let admin = try await database.connect()
        defer { Task { await admin.close() } }
        let cutoff = try await admin.query("SELECT vault.retention_cutoff_for(30)::text AS c").requiredFirst("cutoff")["c"]
            .requiredString()
        let loaded = try await finish(etlArguments(try messages([(cutoff, "192.0.2.60", "spelled-device", 1)]),
                                                   url: database.url))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        let officer = try await PostgresConnection.connect(officerURL)
        defer { Task { await officer.close() } }
        let grant = try await officer.query("SELECT log_seq FROM vault.request_retention(30, 'r', 'o', 'h')")
            .requiredFirst("request_retention")["log_seq"].requiredInt()

        let forget = try await finish(["forget", "--database-url", officerURL, "--token-key", path("a", "token.key"),
                                       "--reason", "ERASE-5", "--user-id", cutoff])
        XCTAssertEqual(forget.status, 0, forget.stderr)
        let rows = try await admin.query(
            "SELECT wanted, claimed_at IS NULL AS unclaimed FROM audit.access_grants WHERE seq = \(grant)")
        XCTAssertEqual(try rows.map { "\(try $0["wanted"].requiredString()) \(try $0["unclaimed"].bool() ?? false)" },
                       ["\(cutoff) true"], "the retention grant was changed by forget")
        let deleted = try await officer.query("SELECT vault.retention_delete_logins(\(grant), 10) AS n")
            .requiredFirst("retention_delete_logins")["n"].requiredInt()
        XCTAssertEqual(deleted, 0, "the retention grant no longer works")
    }

    /// Forget, retention and retokenize decide what to delete from what they see after waiting for the vault-wide
    /// lock: the database refuses that lock in a REPEATABLE READ transaction, whose snapshot would be from before the
    /// wait (an ETL batch committed meanwhile would be missed), and the binary runs READ COMMITTED whatever the
    /// login's default.
    func testErasuresRunReadCommittedWhateverTheDatabasesDefault() async throws {
        let database = try await newDatabase()
        let officerURL = try await database.createLogin(memberOf: "piivault_compliance")
        let loaded = try await finish(etlArguments(try messages([("rr-user", "192.0.2.70", "rr-device", 1)]),
                                                   url: database.url))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        let admin = try await database.connect()
        try await admin.execute(PostgresQuery(
            unsafeSQL: "ALTER DATABASE \(database.name) SET default_transaction_isolation = 'repeatable read'"))
        await admin.close()
        let officer = try await PostgresConnection.connect(officerURL)
        do {
            _ = try await officer.query("SELECT vault.lock_vault_values_exclusive()")
            XCTFail("the erasure lock was taken in a REPEATABLE READ transaction")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "25000", "\(error)")
        }
        await officer.close()
        let forget = try await finish(["forget", "--database-url", officerURL, "--token-key", path("a", "token.key"),
                                       "--reason", "RR-1", "--user-id", "rr-user"])
        XCTAssertEqual(forget.status, 0, forget.stderr)
        let retention = try await finish(["retention", "--database-url", officerURL, "--reason", "RR-2",
                                          "--older-than", "30"])
        XCTAssertEqual(retention.status, 0, retention.stderr)
        let left = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'rr-user'", in: database)
        XCTAssertEqual(left, 0)
    }

    // MARK: Acceptance 4: no user id left

    /// After `forget --user-id` (of a user unmasked by user id before, so that a grant recorded the id), `pg_dump` of
    /// the database holds the user id only inside audit.access_log.
    func testAfterForgetTheDumpHoldsTheUserIDOnlyInTheAccessLog() async throws {
        let database = try await newDatabase()
        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        let userID = "zq-erase-me-4711"
        let loaded = try await finish(etlArguments(try messages([
            (userID, "192.0.2.50", "dump-device-1", 1), (userID, "192.0.2.51", "dump-device-2", 3),
            ("dump-other", "192.0.2.52", "dump-device-3", 1),
        ]), url: database.url))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        let unmask = try await finish(["unmask", "--database-url", officer, "--key-file", path("a", "vault.key"),
                                       "--token-key", path("a", "token.key"), "--reason", "SAR-1", "--user-id", userID])
        XCTAssertEqual(unmask.status, 0, unmask.stderr)
        func dumpLinesNaming() throws -> [(table: String, line: String)] {
            let dump = try runProcess("pg_dump", ["--dbname", database.url])
            XCTAssertEqual(dump.status, 0, dump.stderr)
            var table = "", found: [(String, String)] = []
            for line in dump.stdout.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("COPY ") { table = String(line.split(separator: " ")[1]) }
                if line == "\\." { table = "" }
                if line.contains(userID) { found.append((table, String(line))) }
            }
            return found
        }
        let beforeForget = try dumpLinesNaming().map(\.table)
        XCTAssertTrue(beforeForget.contains("audit.access_grants"), "the unmask grant names the user: \(beforeForget)")
        XCTAssertTrue(beforeForget.contains { $0.hasPrefix("public.user_logins_run_") }, "the run's partition: \(beforeForget)")

        let forget = try await finish(["forget", "--database-url", officer, "--token-key", path("a", "token.key"),
                                       "--reason", "ERASE-4", "--user-id", userID])
        XCTAssertEqual(forget.status, 0, forget.stderr)
        let afterForget = try dumpLinesNaming()
        XCTAssertFalse(afterForget.isEmpty, "the access log keeps the unmask entry's subject")
        XCTAssertEqual(afterForget.filter { $0.table != "audit.access_log" }.map(\.table), [],
                       "the user id outside the access log")
    }

    // MARK: Accesses the database cannot refuse

    /// An unmask by a superuser succeeds (nothing can refuse it) but its entry says so, as does a request by a login
    /// outside compliance that was granted the function; `audit log` shows it, `audit report` flags them, an
    /// officer's entry is not marked, and the chain verifies with the Swift and the Python verifier.
    func testAnAccessByASuperuserIsMarkedInTheLogAndFlaggedInTheReport() async throws {
        let database = try await newDatabase()
        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let loaded = try await finish(etlArguments(try messages([("su-user", "192.0.2.60", "su-device", 1)]),
                                                   url: database.url))
        XCTAssertEqual(loaded.status, 0, loaded.stderr)
        for url in [officer, database.url] {
            let unmask = try await finish(["unmask", "--database-url", url, "--key-file", path("a", "vault.key"),
                                           "--token-key", path("a", "token.key"), "--reason", "SAR-2", "--user-id", "su-user"])
            XCTAssertEqual(unmask.status, 0, unmask.stderr)
        }
        // A login outside compliance that someone granted the function to (as the owner may execute them all).
        let outsider = try await database.createLogin(memberOf: "piivault_analyst")
        let outsiderName = try XCTUnwrap(URLComponents(string: outsider)?.user)
        let connection = try await database.connect()
        try await connection.executeScript("""
            GRANT USAGE ON SCHEMA vault TO \(outsiderName);
            GRANT EXECUTE ON FUNCTION vault.request_unmask_user(text, text, text, text, integer, text) TO \(outsiderName);
            """)
        let keyID = try KeyLoading.loadVaultPublicKey(path: path("a", "vault.pub")).keyID.hex
        let granted = try await PostgresConnection.connect(outsider)
        _ = try await granted.query("SELECT * FROM vault.request_unmask_user('su-user', 'SAR-3', 'o', 'h', 10, \(keyID))")
        await granted.close()
        let outcomes = try await connection.query("SELECT outcome FROM audit.access_log ORDER BY seq")
            .map { try $0["outcome"].requiredString() }
        await connection.close()
        XCTAssertEqual(outcomes, ["ok", "ok [outside piivault_compliance: superuser]",
                                  "ok [outside piivault_compliance: not a member]"])

        let log = try await finish(["audit", "log", "--database-url", auditor, "--format", "csv"])
        XCTAssertEqual(log.status, 0, log.stderr)
        XCTAssertTrue(log.stdout.contains("ok [outside piivault_compliance: superuser]"), log.stdout)
        let page = keys.appendingPathComponent("review.html")
        let report = try await finish(["audit", "report", "--database-url", auditor, "--html", page.path])
        XCTAssertEqual(report.status, 0, report.stderr)
        let html = try String(contentsOf: page, encoding: .utf8)
        let flagged = try XCTUnwrap(html.range(of: "<table id=\"outside-compliance\">"), html)
        let section = html[flagged.lowerBound...]
        let table = String(section[..<(section.range(of: "</table>")?.upperBound ?? section.endIndex)])
        XCTAssertTrue(table.contains("<tr><td class=\"num\">2</td>") && table.contains("<tr><td class=\"num\">3</td>"), table)
        XCTAssertFalse(table.contains("<tr><td class=\"num\">1</td>"), "the officer's access is not flagged: \(table)")

        let verify = try await finish(["audit", "verify", "--database-url", auditor])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        let independent = try await independentAccessLogCheck(database)
        XCTAssertEqual(independent.status, 0, independent.stdout + independent.stderr)
        // Python: "intact 2 2:<hash>"; Swift: "access log intact: 2 entries, head 2:<hash>".
        let head = independent.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").last.map(String.init) ?? "?"
        XCTAssertEqual(verify.stdout, "access log intact: 3 entries, head \(head)\n")
    }
}
