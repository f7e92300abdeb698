import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault retention` and `piivault forget --quarantined` (issue 12), the real binary against real Postgres, on
/// logins the real ETL loaded from files whose messages carry their own create_date.
final class RetentionTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var officer: String!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "retention")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("retention-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        officer = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    /// The UTC date `days` days ago, as the ETL stores create_date.
    private func daysAgo(_ days: Int) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd"
        return formatter.string(from: Date().addingTimeInterval(-Double(days) * 86_400))
    }

    private struct Login {
        let user: String
        let ip: String
        let device: String
        let daysAgo: Int
    }

    /// Every ip and device id the tests load (none may appear in any output, log entry or dump).
    private var values: Set<String> = []

    /// Sessions waiting for a row another session holds locked.
    private func rowLockWaiters() async throws -> Int {
        try await count("""
            SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')
            """)
    }

    /// Loads `logins` with one real ETL run from a file (one data key per run).
    private func load(_ logins: [Login], into database: ScratchDatabase? = nil) throws {
        let lines = try logins.map { login -> String in
            values.insert(login.ip)
            values.insert(login.device)
            let record: [String: Any] = [
                "user_id": login.user, "app_version": "2.1", "device_type": "android", "ip": login.ip,
                "locale": "en_GB", "device_id": login.device, "create_date": daysAgo(login.daysAgo),
            ]
            return String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)
        }
        let file = keys.appendingPathComponent("load-\(ScratchDatabase.randomHex(4)).ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let etl = try runPiivault([
            "etl", "--from-file", file.path, "--database-url", (database ?? self.database).url,
            "--token-key", keys.appendingPathComponent("token.key").path,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
    }

    private func retention(_ arguments: [String], login: String? = nil, environment: [String: String?] = [:]) throws
        -> ProcessResult
    {
        var env: [String: String?] = ["USER": "officer-on-duty"]
        for (key, value) in environment { env[key] = value }
        return try runPiivault(["retention", "--database-url", login ?? officer!] + arguments, environment: env)
    }

    private func query(_ query: PostgresQuery, in database: ScratchDatabase? = nil) async throws -> PostgresRows {
        let connection = try await (database ?? self.database).connect()
        do {
            let rows = try await connection.query(query)
            await connection.close()
            return rows
        } catch {
            await connection.close()
            throw error
        }
    }

    private func strings(_ sql: String, in database: ScratchDatabase? = nil) async throws -> [String] {
        try await query(PostgresQuery(unsafeSQL: sql), in: database).map { try $0[0].requiredString() }
    }

    private func count(_ sql: String, in database: ScratchDatabase? = nil) async throws -> Int {
        try await query(PostgresQuery(unsafeSQL: sql), in: database).first![0].requiredInt()
    }

    /// Everything retention may change: the users with logins, the sealed tokens, the data key ids, the pending
    /// tokens, in a comparable form.
    private struct VaultState: Equatable {
        var users: [String]
        var tokens: [String]
        var dataKeys: [String]
        var pending: Int
        var dangling: Int
    }

    private func state(of database: ScratchDatabase? = nil) async throws -> VaultState {
        VaultState(
            users: try await strings("SELECT user_id || '@' || create_date::text FROM user_logins ORDER BY 1", in: database),
            tokens: try await strings("SELECT token FROM vault.secrets ORDER BY 1", in: database),
            dataKeys: try await strings("SELECT id::text FROM vault.data_keys ORDER BY id", in: database),
            pending: try await count("SELECT count(*) FROM vault.retention_pending", in: database),
            dangling: try await count("""
                SELECT count(*) FROM user_logins AS l
                 WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip)
                    OR NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id)
                """, in: database))
    }

    private func tokenizer() throws -> Tokenizer {
        Tokenizer(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
    }

    private func entries(after seq: Int) async throws -> [String] {
        try await strings("""
            SELECT db_user || '|' || os_user || '|' || action || '|' || reason || '|' || subject || '|' || row_count
                   || '|' || outcome
              FROM audit.access_log WHERE seq > \(seq) ORDER BY seq
            """)
    }

    private func logLength() async throws -> Int {
        try await count("SELECT count(*) FROM audit.access_log")
    }

    private func user(of url: String) -> String { URLComponents(string: url)!.user! }

    /// Run 1: two users dated 40 days ago, values of their own (its data key ends up empty). Run 2: one user 40 days
    /// ago and one 10 days ago sharing an ip, and users dated exactly 30 and 31 days ago (the boundary).
    private func loadTwoRuns(into database: ScratchDatabase? = nil) throws {
        try load([
            Login(user: "old-1", ip: "198.51.100.1", device: "retention-device-old-1", daysAgo: 40),
            Login(user: "old-2", ip: "198.51.100.2", device: "retention-device-old-2", daysAgo: 40),
        ], into: database)
        try load([
            Login(user: "old-3", ip: "203.0.113.30", device: "retention-device-old-3", daysAgo: 40),
            Login(user: "new-4", ip: "203.0.113.30", device: "retention-device-new-4", daysAgo: 10),
            Login(user: "day-30", ip: "198.51.100.30", device: "retention-device-day-30", daysAgo: 30),
            Login(user: "day-31", ip: "198.51.100.31", device: "retention-device-day-31", daysAgo: 31),
        ], into: database)
    }

    // MARK: Acceptance 6, 3 (fail closed) and 7

    /// `retention --older-than 30` on logins dated 40, 31, 30 and 10 days ago deletes the 40- and 31-day-old ones,
    /// their sealed values except the ip a 10-day-old login shares, and the data key of the run whose values are all
    /// gone; one entry (subject the cutoff, the counts); a second run changes nothing. A dry run, an analyst, an ETL
    /// and an auditor login (77, logged) and a run whose entry cannot be written change nothing. No ip or device id in any output, the log or a
    /// pg_dump.
    func testRetentionDeletesOldLoginsTheirUnsharedValuesAndEmptyDataKeysOnce() async throws {
        try loadTwoRuns()
        let tokenizer = try tokenizer()
        let sharedIP = try tokenizer.tokenize("203.0.113.30", as: .ip).token
        let loaded = try await state()
        XCTAssertEqual(loaded.users.count, 6)
        XCTAssertEqual(loaded.tokens.count, 11, "6 devices, 5 distinct ips")
        XCTAssertEqual(loaded.dataKeys.count, 2)
        let before = try await logLength()
        var outputs: [ProcessResult] = []

        let dry = try retention(["--reason", "POLICY-30", "--older-than", "30", "--dry-run", "--format", "json"])
        outputs.append(dry)
        XCTAssertEqual(dry.status, 0, dry.stderr)
        let preview = try XCTUnwrap(try JSONSerialization.jsonObject(with: dry.stdoutData) as? [String: Any])
        XCTAssertEqual(preview["logins_deleted"] as? Int, 4)
        XCTAssertEqual(preview["values_deleted"] as? Int, 7, "4 devices and the 3 ips only old logins carry")
        XCTAssertEqual(preview["data_keys_deleted"] as? Int, 1)
        XCTAssertEqual(preview["dry_run"] as? Bool, true)
        let cutoff = daysAgo(30)
        XCTAssertEqual(preview["cutoff"] as? String, cutoff, "create_date < current_date - 30 (UTC)")
        let afterDry = try await state()
        XCTAssertEqual(afterDry, loaded, "a dry run changes nothing")
        let logAfterDry = try await logLength()
        XCTAssertEqual(logAfterDry, before, "a dry run logs nothing")

        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let refused = try retention(["--reason", "curious", "--older-than", "30"], login: analyst)
        outputs.append(refused)
        XCTAssertEqual(refused.status, 77, refused.stderr)
        let etlLogin = try await database.createLogin(memberOf: "piivault_etl")
        let refusedETL = try retention(["--reason", "operator", "--older-than", "30", "--dry-run"], login: etlLogin)
        outputs.append(refusedETL)
        XCTAssertEqual(refusedETL.status, 77, refusedETL.stderr)
        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let refusedAuditor = try retention(["--reason", "review", "--older-than", "30"], login: auditor)
        outputs.append(refusedAuditor)
        XCTAssertEqual(refusedAuditor.status, 77, refusedAuditor.stderr)
        let afterRefusal = try await state()
        XCTAssertEqual(afterRefusal, loaded)

        // Fail closed: the entry cannot be written, so no batch runs.
        let owner = try await database.connect()
        try await owner.executeScript(ScratchDatabase.refuseAccessLogAppends)
        let appendFails = try retention(["--reason", "POLICY-30", "--older-than", "30"])
        outputs.append(appendFails)
        XCTAssertEqual(appendFails.status, 1, appendFails.stderr)
        XCTAssertTrue(appendFails.stderr.contains("read-only for this test"), appendFails.stderr)
        let afterFailure = try await state()
        XCTAssertEqual(afterFailure, loaded, "no entry, no deletion")
        try await owner.execute("DROP TRIGGER refuse_append ON audit.access_log")
        await owner.close()

        let done = try retention(["--reason", "POLICY-30", "--older-than", "30", "--batch-size", "2", "--format", "json"])
        outputs.append(done)
        XCTAssertEqual(done.status, 0, done.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: done.stdoutData) as? [String: Any])
        XCTAssertEqual(report["logins_deleted"] as? Int, 4)
        XCTAssertEqual(report["values_deleted"] as? Int, 7)
        XCTAssertEqual(report["data_keys_deleted"] as? Int, 1)
        XCTAssertEqual(report["dry_run"] as? Bool, false)
        let after = try await state()
        XCTAssertEqual(after.users, ["day-30@\(daysAgo(30))", "new-4@\(daysAgo(10))"])
        let kept = try [("203.0.113.30", PIIField.ip), ("retention-device-new-4", .deviceID), ("198.51.100.30", .ip),
                        ("retention-device-day-30", .deviceID)].map { try tokenizer.tokenize($0.0, as: $0.1).token }
        XCTAssertEqual(after.tokens, kept.sorted(), "the shared ip stays; the old logins' own values are gone")
        XCTAssertTrue(after.tokens.contains(sharedIP))
        XCTAssertEqual(after.dataKeys, [loaded.dataKeys[1]], "run 1's data key, left empty, is destroyed")
        XCTAssertEqual(after.pending, 0)
        XCTAssertEqual(after.dangling, 0)

        let second = try retention(["--reason", "POLICY-30", "--older-than", "30"])
        outputs.append(second)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("deleted 0 login rows") && second.stdout.contains("deleted 0 sealed values")
                      && second.stdout.contains("deleted 0 data keys"), second.stdout)
        let afterSecond = try await state()
        XCTAssertEqual(afterSecond, after, "a second run changes nothing")

        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(user(of: analyst))|officer-on-duty|retention|curious|cutoff|0|refused: not permitted (login is not a member of piivault_compliance)",
            "\(user(of: etlLogin))|officer-on-duty|retention|operator|cutoff|0|refused: not permitted (login is not a member of piivault_compliance)",
            "\(user(of: auditor))|officer-on-duty|retention|review|cutoff|0|refused: not permitted (login is not a member of piivault_compliance)",
            "\(user(of: officer))|officer-on-duty|retention|POLICY-30|create_date_before:\(cutoff)|4|ok: deleting 4 logins dated before \(cutoff), then 7 sealed values and 1 data keys no longer used",
            "\(user(of: officer))|officer-on-duty|retention|POLICY-30|create_date_before:\(cutoff)|0|ok: deleting 0 logins dated before \(cutoff), then 0 sealed values and 0 data keys no longer used",
        ])

        // Acceptance 7: no ip or device id in the outputs, the log, or the database.
        let everything = outputs.map { $0.stdout + $0.stderr }.joined() + logged.joined()
        XCTAssertEqual(occurrences(of: Array(values), in: everything), [], "retention's outputs or log hold a value")
        let dump = try runProcess("pg_dump", ["--data-only", "--dbname", database.url])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        let hexValues = values.map { Data($0.utf8).map { String(format: "%02x", $0) }.joined() }
        XCTAssertEqual(occurrences(of: Array(values) + hexValues, in: dump.stdout).count, 0, "pg_dump holds a value")
    }

    /// A run killed after a few batches (the fault hook exits 75 as a kill there would), killed again in its second
    /// step on the rerun, then run to the end, leaves exactly the state of one uninterrupted run on a copy of the
    /// same data.
    func testARunKilledMidwayAndRerunEndsAsAnUninterruptedRun() async throws {
        var logins: [Login] = []
        for i in 0..<12 {
            logins.append(Login(user: "kill-old-\(i)", ip: "10.40.0.\(i)", device: "kill-device-old-\(i)", daysAgo: 40))
        }
        // Recent logins, two of them sharing an old login's ip.
        for i in 0..<4 {
            logins.append(Login(user: "kill-new-\(i)", ip: i < 2 ? "10.40.0.\(i)" : "10.10.0.\(i)",
                                device: "kill-device-new-\(i)", daysAgo: 10))
        }
        try load(Array(logins.prefix(6)))
        try load(Array(logins.dropFirst(6)))
        // The same data twice: the database copied before anyone connects to it again.
        let copy = try await ScratchDatabase.create(prefix: "retention_copy", template: database.name)
        defer { Task { await copy.drop() } }
        let copyOfficer = try await copy.createLogin(memberOf: "piivault_compliance")

        let uninterrupted = try retention(["--reason", "POLICY", "--older-than", "30"], login: copyOfficer)
        XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)
        let expected = try await state(of: copy)
        XCTAssertEqual(expected.users.count, 4)
        XCTAssertEqual(expected.tokens.count, 8, "4 recent devices, 4 ips (2 shared with old logins)")
        XCTAssertEqual(expected.dangling, 0)

        let loaded = try await state()
        // Killed in step 1 (logins): 2 batches of 2 logins committed.
        let first = try retention(["--reason", "POLICY", "--older-than", "30", "--batch-size", "2"],
                                  environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "2"])
        XCTAssertEqual(first.status, 75, first.stderr)
        let midway = try await state()
        XCTAssertEqual(midway.users.count, loaded.users.count - 4, "two batches of two logins committed")
        XCTAssertEqual(midway.pending, 8, "their ips and device ids recorded for step 2")
        XCTAssertEqual(midway.tokens, loaded.tokens, "no value deleted yet")
        XCTAssertEqual(midway.dangling, 0)
        // Killed in step 2 (values): 4 more login batches, then 2 of values.
        let second = try retention(["--reason", "POLICY", "--older-than", "30", "--batch-size", "2"],
                                   environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "6"])
        XCTAssertEqual(second.status, 75, second.stderr)
        let midway2 = try await state()
        XCTAssertEqual(midway2.users, expected.users, "every old login deleted")
        XCTAssertLessThan(midway2.tokens.count, loaded.tokens.count, "some values deleted")
        XCTAssertGreaterThan(midway2.tokens.count, expected.tokens.count, "not all")
        XCTAssertGreaterThan(midway2.pending, 0)
        XCTAssertEqual(midway2.dangling, 0)

        let rerun = try retention(["--reason", "POLICY", "--older-than", "30", "--batch-size", "2"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        let finished = try await state()
        XCTAssertEqual(finished, expected, "killed twice and rerun ends as one uninterrupted run")
        let entries = try await count("SELECT count(*) FROM audit.access_log WHERE action = 'retention'")
        XCTAssertEqual(entries, 3, "one entry per run")
    }

    /// A retention run stopped after deleting old logins leaves their values marked for its next run; a retokenize in
    /// between moves each value to a new token, and the mark moves with it: the next run deletes them all, and no
    /// value is left that no login references.
    func testARetokenizeBetweenTwoRetentionRunsLeavesNoOrphanedValue() async throws {
        try load((0..<4).map { Login(user: "orphan-old-\($0)", ip: "10.60.0.\($0)", device: "orphan-device-\($0)", daysAgo: 40) }
                 + [Login(user: "orphan-new", ip: "10.60.1.1", device: "orphan-device-new", daysAgo: 5)])
        let stopped = try retention(["--reason", "POLICY", "--older-than", "30", "--batch-size", "2"],
                                    environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "2"])
        XCTAssertEqual(stopped.status, 75, stopped.stderr)
        let marked = try await state()
        XCTAssertEqual(marked.pending, 8, "the old logins' ips and device ids wait for the next run")

        let v1 = keys.appendingPathComponent("token.key").path, v2 = keys.appendingPathComponent("v2")
        let rotate = try runPiivault(["keygen", "--dir", v2.path, "--token-key-version", "2", "--previous-token-key", v1])
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
        let retokenize = try runPiivault([
            "retokenize", "--database-url", officer, "--key-file", keys.appendingPathComponent("vault.key").path,
            "--token-key", v2.appendingPathComponent("token.key").path, "--reason", "CHG-7",
        ], environment: ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(retokenize.status, 0, retokenize.stderr)
        let moved = try await state()
        XCTAssertEqual(moved.pending, 8, "the marks moved with the values")
        let oldMarks = try await count("SELECT count(*) FROM vault.retention_pending WHERE token NOT LIKE '%.v2.%'")
        XCTAssertEqual(oldMarks, 0)

        let rerun = try retention(["--reason", "POLICY", "--older-than", "30"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        let finished = try await state()
        XCTAssertEqual(finished.users.count, 1)
        XCTAssertEqual(finished.tokens.count, 2, "only the recent login's two values")
        XCTAssertEqual(finished.pending, 0)
        XCTAssertEqual(finished.dangling, 0)
    }

    /// Retention waits for an ETL batch in flight (the vault-wide lock), and a value such a batch relies on stays:
    /// a batch that looked up an old login's ip (sealed, so it does not seal it again) commits a new login with it
    /// while retention waits; retention then keeps that value.
    func testRetentionWaitsForAnETLBatchAndKeepsTheValuesItReferences() async throws {
        try load([Login(user: "race-old", ip: "192.0.2.77", device: "race-device-old", daysAgo: 40)])
        // The ETL's batch, as its store holds it: the vault-wide lock shared, between its look-up and its commit.
        let batch = try await database.connect()
        try await batch.execute("BEGIN")
        _ = try await batch.query("SELECT vault.lock_vault_values_shared()")
        let run = try BackgroundProcess(try piivaultBinary(), [
            "retention", "--database-url", officer, "--reason", "RACE", "--older-than", "30",
        ])
        try await waitUntil("retention waits on the vault-wide lock", timeout: 30) {
            try await self.query(vaultLockWaitersQuery).requiredFirst("pg_locks")[0].requiredInt() >= 1
                || !run.isRunning
        }
        XCTAssertTrue(run.isRunning, run.stderr)
        let oldLeft = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'race-old'")
        XCTAssertEqual(oldLeft, 0, "step 1 (logins) does not wait for the ETL")
        // The batch inserts a recent login carrying the old login's ip and a device id it seals itself, then commits.
        let ipToken = try tokenizer().tokenize("192.0.2.77", as: .ip).token
        let deviceToken = try tokenizer().tokenize("race-device-new", as: .deviceID).token
        let key = try await count("SELECT max(id) FROM vault.data_keys")
        try await batch.execute("""
            INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES (\(deviceToken), 'device_id', \(key), '\\x00')
            """)
        try await batch.execute("""
            INSERT INTO user_logins (message_id, user_id, device_type, masked_ip, masked_device_id, create_date)
            VALUES ('race-new-message', 'race-new', 'ios', \(ipToken), \(deviceToken), current_date)
            """)
        try await batch.execute("COMMIT")
        await batch.close()
        let exited = try await run.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("deleted 1 login rows") && run.stdout.contains("deleted 1 sealed values"),
                      run.stdout)
        let after = try await state()
        XCTAssertEqual(after.tokens, [ipToken, deviceToken].sorted(), "the ip the new login references stays")
        XCTAssertEqual(after.dangling, 0)
    }

    // MARK: forget --quarantined

    /// `forget --quarantined MESSAGE_ID` deletes that quarantined body with one forget entry (subject the message id)
    /// in the same transaction; a dry run changes and logs nothing; an unknown id exits 1 (logged as not found); an
    /// analyst is refused (77, logged); with the append failing nothing is deleted.
    func testForgetQuarantinedDeletesOneBodyWithItsEntry() async throws {
        let good: [String: Any] = ["user_id": "q-user", "app_version": "1.0", "device_type": "ios",
                                   "ip": "192.0.2.200", "locale": NSNull(), "device_id": "q-device-1"]
        values = ["192.0.2.200", "q-device-1"]
        var bad = good
        bad["ip"] = "999.0.2.200"  // not an ip: quarantined
        bad["user_id"] = "q-bad"
        let file = keys.appendingPathComponent("quarantine.ndjson")
        try ([good, bad].map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
            .joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        let etl = try runPiivault([
            "etl", "--from-file", file.path, "--database-url", database.url,
            "--token-key", keys.appendingPathComponent("token.key").path,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
        let ids = try await strings("SELECT message_id FROM vault.quarantine")
        XCTAssertEqual(ids.count, 1)
        let messageID = ids[0]
        func forget(_ arguments: [String], login: String? = nil) throws -> ProcessResult {
            try runPiivault(["forget", "--database-url", login ?? officer!] + arguments,
                            environment: ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil])
        }
        func quarantined() async throws -> Int { try await count("SELECT count(*) FROM vault.quarantine") }
        let before = try await logLength()

        let dry = try forget(["--reason", "ERASE-Q", "--quarantined", messageID, "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("would delete 1 quarantined body"), dry.stdout)
        let afterDry = try await quarantined()
        XCTAssertEqual(afterDry, 1)
        let logAfterDry = try await logLength()
        XCTAssertEqual(logAfterDry, before)

        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let refused = try forget(["--reason", "curious", "--quarantined", messageID], login: analyst)
        XCTAssertEqual(refused.status, 77, refused.stderr)

        let owner = try await database.connect()
        try await owner.executeScript(ScratchDatabase.refuseAccessLogAppends)
        let appendFails = try forget(["--reason", "ERASE-Q", "--quarantined", messageID])
        XCTAssertEqual(appendFails.status, 1, appendFails.stderr)
        let afterFailure = try await quarantined()
        XCTAssertEqual(afterFailure, 1, "no entry, no deletion")
        try await owner.execute("DROP TRIGGER refuse_append ON audit.access_log")
        await owner.close()

        let missing = try forget(["--reason", "ERASE-Q", "--quarantined", "no-such-message"])
        XCTAssertEqual(missing.status, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.contains("no quarantined message"), missing.stderr)

        let done = try forget(["--reason", "ERASE-Q", "--quarantined", messageID])
        XCTAssertEqual(done.status, 0, done.stderr)
        XCTAssertTrue(done.stdout.contains("deleted 1 quarantined body"), done.stdout)
        let afterForget = try await quarantined()
        XCTAssertEqual(afterForget, 0)
        let logins = try await count("SELECT count(*) FROM user_logins")
        XCTAssertEqual(logins, 1, "the loaded login is untouched")

        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(user(of: analyst))|officer-on-duty|forget|curious|message_id|0|refused: not permitted (login is not a member of piivault_compliance)",
            "\(user(of: officer))|officer-on-duty|forget|ERASE-Q|message_id:no-such-message|0|not found: no quarantined message with this id",
            "\(user(of: officer))|officer-on-duty|forget|ERASE-Q|message_id:\(messageID)|1|ok: 1 quarantined body deleted",
        ])
        let everything = [dry, refused, appendFails, missing, done].map { $0.stdout + $0.stderr }.joined() + logged.joined()
        XCTAssertEqual(occurrences(of: Array(values) + ["999.0.2.200"], in: everything), [])
    }
}

extension RetentionTests {
    /// The data key of an ETL run still loading is empty until its first batch commits; retention must not destroy
    /// it. A live run (its row `running`, naming the transaction its lock session keeps open, as ETLStore.beginRun
    /// makes it) keeps its key; once that session is gone, the empty key is destroyed.
    func testTheEmptyDataKeyOfARunningETLRunIsKept() async throws {
        let run = try await LiveETLRun.start(database.url)
        let admin = try await database.connect()
        let keyID = try await admin.query("""
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('00112233445566aa', '\\x00') RETURNING id
            """).first!["id"].requiredInt()
        await admin.close()
        let kept = try retention(["--reason", "POLICY", "--older-than", "30"])
        XCTAssertEqual(kept.status, 0, kept.stderr)
        XCTAssertTrue(kept.stdout.contains("deleted 0 data keys"), kept.stdout)
        let stillThere = try await count("SELECT count(*) FROM vault.data_keys WHERE id = \(keyID)")
        XCTAssertEqual(stillThere, 1, "the live run's key stays")
        await run.end()  // the run's process is gone: its transaction with it, once the server notices
        try await waitUntil("the run's session has ended", timeout: 30) {
            try await self.count("SELECT count(*) FROM public.etl_runs WHERE id = \(run.id) AND public.etl_run_is_live(live_xid)") == 0
        }
        let gone = try retention(["--reason", "POLICY", "--older-than", "30"])
        XCTAssertEqual(gone.status, 0, gone.stderr)
        XCTAssertTrue(gone.stdout.contains("deleted 1 data keys"), gone.stdout)
        let left = try await count("SELECT count(*) FROM vault.data_keys WHERE id = \(keyID)")
        XCTAssertEqual(left, 0)
    }
}

// MARK: forget's lock timeout

extension RetentionTests {
    /// When an ETL batch holds the lock forget needs (the vault-wide lock shared, as ETLStore.insert holds it) for longer than forget waits (10 s), forget deletes nothing and says that an ETL
    /// run is loading, with its pid; once the batch ends, forget succeeds.
    func testForgetBlockedByAnETLBatchSaysAnETLRunHoldsTheLock() async throws {
        try load([Login(user: "lock-user", ip: "192.0.2.88", device: "lock-device", daysAgo: 1)])
        let tokenKey = keys.appendingPathComponent("token.key").path
        let batch = try await database.connect()
        try await batch.execute("BEGIN")
        try await batch.execute("SET LOCAL application_name = 'piivault etl'")
        let pid = try await batch.query("SELECT pg_backend_pid()").first![0].requiredInt()
        _ = try await batch.query("SELECT vault.lock_vault_values_shared()")
        func forget() throws -> ProcessResult {
            try runPiivault(["forget", "--database-url", officer, "--token-key", tokenKey, "--reason", "ERASE-L",
                             "--user-id", "lock-user", "--lock-wait", "1"], environment: ["PIIVAULT_TOKEN_KEY": nil])
        }
        let started = Date()
        let blocked = try forget()
        XCTAssertLessThan(Date().timeIntervalSince(started), 8, "--lock-wait 1 gives up after a second, not the default 10")
        XCTAssertEqual(blocked.status, 69, blocked.stderr)
        XCTAssertTrue(blocked.stderr.contains("an ETL run (pid \(pid)) is loading this user's messages"), blocked.stderr)
        XCTAssertTrue(blocked.stderr.contains("retry after it ends"), blocked.stderr)
        let rows = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'lock-user'")
        XCTAssertEqual(rows, 1, "nothing deleted")
        let entries = try await count("SELECT count(*) FROM audit.access_log WHERE action = 'forget'")
        XCTAssertEqual(entries, 0, "nothing logged")
        try await batch.execute("ROLLBACK")
        await batch.close()
        let done = try forget()
        XCTAssertEqual(done.status, 0, done.stderr)
    }

    /// A forget that meets a retention batch deleting some of its user's logins (row locks, not the vault lock) waits
    /// for it and logs what it deletes itself: the entry's row count is the rows it removed, not the rows it saw
    /// before the batch committed.
    func testForgetBesideARetentionBatchLogsTheRowsItDeletes() async throws {
        try load([Login(user: "count-user", ip: "192.0.2.91", device: "count-device-1", daysAgo: 40),
                  Login(user: "count-user", ip: "192.0.2.92", device: "count-device-2", daysAgo: 40),
                  Login(user: "count-user", ip: "192.0.2.93", device: "count-device-3", daysAgo: 1)])
        // Retention's step 1 as its batch holds it: the old rows deleted, not yet committed.
        let batch = try await database.connect()
        try await batch.execute("BEGIN")
        let deleted = try await batch.execute(
            "DELETE FROM user_logins WHERE user_id = 'count-user' AND create_date < current_date - 30")
        XCTAssertEqual(deleted, 2)
        let run = try BackgroundProcess(try piivaultBinary(), [
            "forget", "--database-url", officer, "--token-key", keys.appendingPathComponent("token.key").path,
            "--reason", "ERASE-C", "--user-id", "count-user",
        ], environment: ["PIIVAULT_TOKEN_KEY": nil])
        try await waitUntil("forget waits on the batch's row locks", timeout: 30) {
            try await self.rowLockWaiters() >= 1 || !run.isRunning
        }
        try await batch.execute("COMMIT")
        await batch.close()
        let exited = try await run.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 0, run.stderr)
        let logged = try await count("SELECT row_count FROM audit.access_log WHERE action = 'forget'")
        XCTAssertEqual(logged, 1, "the one row forget deleted; the batch deleted the other two")
        let left = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'count-user'")
        XCTAssertEqual(left, 0)
    }

    /// Retention skips rows another session holds locked while there are others, and waits for them when only those
    /// are left: a retokenize batch or a forget holding an old login no longer lets the run end "done" with it left.
    func testRetentionWaitsForOldLoginsAnotherSessionHoldsLockedInsteadOfLeavingThem() async throws {
        try load([Login(user: "held-old", ip: "192.0.2.95", device: "held-device", daysAgo: 40)])
        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        _ = try await holder.query("SELECT 1 FROM user_logins WHERE user_id = 'held-old' FOR UPDATE")
        let run = try BackgroundProcess(try piivaultBinary(), [
            "retention", "--database-url", officer, "--reason", "HELD", "--older-than", "30",
        ])
        try await waitUntil("retention waits on the held row", timeout: 30) {
            try await self.rowLockWaiters() >= 1 || !run.isRunning
        }
        XCTAssertTrue(run.isRunning, "ended while the old login was still there: \(run.stdout) \(run.stderr)")
        try await holder.execute("ROLLBACK")
        await holder.close()
        let exited = try await run.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("deleted 1 login rows"), run.stdout)
        let left = try await count("SELECT count(*) FROM user_logins WHERE user_id = 'held-old'")
        XCTAssertEqual(left, 0)
    }
}

// MARK: Beside the ETL, for real

extension RetentionTests {
    /// The real ETL and retention started together 10 times: each round an old login (40 days) is loaded, then an ETL
    /// run loads a recent login reusing its ip and device id (sealed already, so the run does not seal them again)
    /// while retention deletes the old login and the values it thinks unused. Whatever the interleaving, no login token
    /// is left without its sealed value, the recent login is loaded (a run that failed closed is run again) and the old
    /// one is gone.
    func testETLAndRetentionStartedTogetherNeverLeaveADanglingToken() async throws {
        for round in 1...10 {
            let ip = "198.18.0.\(round)", device = "loop-device-\(round)"
            try load([Login(user: "loop-old-\(round)", ip: ip, device: device, daysAgo: 40)])
            let record: [String: Any] = ["user_id": "loop-new-\(round)", "app_version": "2.1", "device_type": "ios",
                                         "ip": ip, "locale": "en_GB", "device_id": device]
            let file = keys.appendingPathComponent("loop-\(round).ndjson")
            try (String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self) + "\n")
                .write(to: file, atomically: true, encoding: .utf8)
            let arguments = ["etl", "--from-file", file.path, "--database-url", database.url,
                             "--token-key", keys.appendingPathComponent("token.key").path,
                             "--vault-public-key", keys.appendingPathComponent("vault.pub").path]
            let run = try BackgroundProcess(try piivaultBinary(), arguments)
            let retention = try retention(["--reason", "LOOP-\(round)", "--older-than", "30", "--batch-size", "1"])
            XCTAssertEqual(retention.status, 0, "round \(round): \(retention.stderr)")
            let exited = try await run.waitForExit(timeout: 60)
            XCTAssertTrue(exited)
            XCTAssertTrue(run.status == 0 || run.stderr.contains("were erased"), "round \(round): \(run.stderr)")
            var status = run.status, attempts = 0
            while status != 0 && attempts < 3 {
                attempts += 1
                status = try runPiivault(arguments).status
            }
            XCTAssertEqual(status, 0, "round \(round): the run completes when run again")
            let after = try await state()
            XCTAssertEqual(after.dangling, 0, "round \(round): a login token without its sealed value")
            XCTAssertTrue(after.users.contains("loop-new-\(round)@\(daysAgo(0))"), "round \(round): \(after.users)")
            XCTAssertFalse(after.users.contains { $0.hasPrefix("loop-old-\(round)@") }, "round \(round)")
        }
    }
}
