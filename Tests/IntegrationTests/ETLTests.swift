import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault etl`, the real binary, against the real Postgres and the real SQS emulator.
final class ETLTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "etl")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("etl-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers (also used by ETLCrashTests.swift)

    var sqsEnvironment: [String: String?] {
        get throws {
            ["AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
             "AWS_ENDPOINT_URL_SQS": try TestServices.sqsEndpoint(), "AWS_SESSION_TOKEN": nil, "AWS_PROFILE": nil]
        }
    }

    /// Sends the records of a JSON array file to a new queue on the emulator, `count` times over, each body
    /// `json.dumps(record, sort_keys=True)`; returns the queue URL.
    func send(_ recordsFile: URL, queue: String, repeat count: Int = 1) async throws -> String {
        guard let records = try JSONSerialization.jsonObject(with: Data(contentsOf: recordsFile)) as? [Any] else {
            throw TestSetupError("\(recordsFile.path) is not a JSON array")
        }
        let bodies = records.map(SQSEmulator.pythonJSON)
        return try await SQSEmulator.send((0..<count).flatMap { _ in bodies }, toQueueNamed: queue)
    }

    /// The same with botocore (an independent client), each body `json.dumps(record)`; returns the queue URL.
    func sendWithBotocore(_ recordsFile: URL, queue: String, repeat count: Int = 1) throws -> String {
        let script = TestServices.repositoryRoot.appendingPathComponent("scripts/send-messages.py").path
        let result = try runProcess("python3", [script, "--endpoint-url", try TestServices.sqsEndpoint(),
                                                "--queue-name", queue, "--file", recordsFile.path,
                                                "--repeat", String(count)])
        guard result.status == 0 else { throw TestSetupError("send-messages.py failed: \(result.stderr)") }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func etlInvocation(_ arguments: [String], environment: [String: String?] = [:]) throws
        -> (arguments: [String], environment: [String: String?])
    {
        var env = try sqsEnvironment
        env["PIIVAULT_LOG_LEVEL"] = "debug"
        for (key, value) in environment { env[key] = value }
        return (["etl", "--database-url", database.url,
                 "--token-key", keys.appendingPathComponent("token.key").path,
                 "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
                 // One empty long poll (1 s) ends a drained run: idle exit 1 s, not 2. (Short polls, wait time 0, may
                 // come back empty while messages wait, which would end a run early.)
                 "--idle-exit", "1", "--wait-time", "1"] + arguments, env)
    }

    func etl(_ arguments: [String], environment: [String: String?] = [:]) throws -> ProcessResult {
        let invocation = try etlInvocation(arguments, environment: environment)
        return try runPiivault(invocation.arguments, environment: invocation.environment)
    }

    func query(_ query: PostgresQuery) async throws -> PostgresRows {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        return try await connection.query(query)
    }

    func count(_ table: String) async throws -> Int {
        try await query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM \(table)")).first![0].requiredInt()
    }

    /// Messages still in the queue, visible or in flight.
    func queueDepth(_ queueURL: String) async throws -> Int {
        try await SQSEmulator.counts(queueURL: queueURL).total
    }

    /// Waits until no message of the queue is in flight: what an ended run held is visible again.
    func waitUntilNothingInFlight(_ queueURL: String, timeout: Double) async throws {
        try await waitUntil("no message of \(queueURL) is in flight", timeout: timeout) {
            try await SQSEmulator.counts(queueURL: queueURL).inFlight == 0
        }
    }

    /// The counters of a summary line (`completed: received 100, loaded 99, duplicates 0, quarantined 1, ...`).
    func summaryCounts(_ line: String) -> [String: Int] {
        var counts: [String: Int] = [:]
        for name in ["received", "loaded", "duplicates", "quarantined"] {
            guard let range = line.range(of: "\(name) ") else { continue }
            counts[name] = Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        return counts
    }

    private func sampleRecords() throws -> [[String: Any]] {
        let url = try TestServices.fixture("fetch-sample-messages.json")
        return try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [[String: Any]]
    }

    private func tokenizer() throws -> Tokenizer {
        Tokenizer(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
    }

    private func writeLines(_ lines: [String]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("etl-\(ScratchDatabase.randomHex(4)).ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    // MARK: Acceptance

    func testTheRealSampleThroughSQS() async throws {
        let queue = "sample-\(ScratchDatabase.randomHex(4))"
        // The send date is taken on both sides of the sending, so that a run across UTC midnight still passes.
        // botocore sends here: the ETL reads what an independent client wrote.
        let dayBeforeSending = MessagePreparerDate.utcToday()
        let queueURL = try sendWithBotocore(try TestServices.fixture("fetch-sample-messages.json"), queue: queue)
        let dayAfterSending = MessagePreparerDate.utcToday()
        let summaryFile = FileManager.default.temporaryDirectory.appendingPathComponent("summary-\(queue).json")
        let result = try etl(["--queue-url", queueURL, "--summary-json", summaryFile.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("loaded 99"), result.stdout)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: summaryFile)) as! [String: Any]
        XCTAssertEqual(summary["loaded"] as? Int, 99)
        XCTAssertEqual(summary["quarantined"] as? Int, 1)
        XCTAssertEqual(summary["outcome"] as? String, "completed")

        let loaded = try await count("user_logins")
        XCTAssertEqual(loaded, 99)
        let quarantine = try await query("SELECT reason FROM vault.quarantine")
        XCTAssertEqual(quarantine.count, 1)
        XCTAssertEqual(try quarantine.first?["reason"].string(),
                       "missing required fields: user_id, device_type, ip, device_id")
        let depth = try await queueDepth(queueURL)
        XCTAssertEqual(depth, 0, "the queue is empty afterwards")

        let nullLocales = try await query("SELECT count(*) FROM user_logins WHERE locale IS NULL").first![0].requiredInt()
        XCTAssertEqual(nullLocales, 29)
        let dates = Set(try await query("SELECT DISTINCT create_date::text FROM user_logins").map { try $0[0].requiredString() })
        let sendDays: Set = [dayBeforeSending, dayAfterSending]
        // Within one day (the usual case) exactly that date; across midnight, the days on either side.
        XCTAssertFalse(dates.isEmpty)
        XCTAssertTrue(dates.isSubset(of: sendDays), "create_date is the send date: \(dates) not in \(sendDays)")

        // Every row against its original record: tokens, app_version rules.
        let tokenizer = try tokenizer()
        let rows = try await query("SELECT user_id, masked_ip, masked_device_id, app_version, app_version_text FROM user_logins")
        var byUser: [String: PostgresRow] = [:]
        for row in rows { byUser[try row["user_id"].requiredString()] = row }
        var checked = 0
        for record in try sampleRecords() {
            guard let userID = record["user_id"] as? String else { continue }
            let row = try XCTUnwrap(byUser[userID])
            XCTAssertEqual(try row["masked_ip"].string(), try tokenizer.tokenize(record["ip"] as! String, as: .ip).token)
            XCTAssertEqual(try row["masked_device_id"].string(),
                           try tokenizer.tokenize(record["device_id"] as! String, as: .deviceID).token)
            let version = record["app_version"] as! String
            XCTAssertEqual(try row["app_version_text"].string(), version)
            XCTAssertEqual(try row["app_version"].int(), LoginEvent.appVersionNumber(version))
            if version == "0.96" { XCTAssertEqual(try row["app_version"].int(), 96_000) }
            if version == "2.3.0" { XCTAssertEqual(try row["app_version"].int(), 2_003_000) }
            checked += 1
        }
        XCTAssertEqual(checked, 99)

        // No plaintext anywhere: every column of every table, as text (bytea shows as hex), and the logs.
        try await assertNoPlaintext(in: try sampleRecords(), logs: result.stdout + result.stderr)
    }

    func assertNoPlaintext(in records: [[String: Any]], logs: String) async throws {
        let tables = try await query("""
            SELECT table_schema || '.' || table_name FROM information_schema.tables
             WHERE table_schema IN ('public', 'vault', 'audit') AND table_type = 'BASE TABLE'
            """)
        var dump = ""
        for table in tables {
            let name = try table[0].requiredString()
            for row in try await query(PostgresQuery(unsafeSQL: "SELECT t::text FROM \(name) t")) {
                dump += (try row[0].string() ?? "") + "\n"
            }
        }
        XCTAssertGreaterThan(tables.count, 5)
        var needles: [String] = []
        for record in records {
            for field in ["ip", "device_id"] {
                guard let value = record[field] as? String else { continue }
                needles.append(value)
                needles.append(value.utf8.map { String(format: "%02x", $0) }.joined())
            }
        }
        XCTAssertGreaterThan(needles.count, 100)
        let leaks = occurrences(of: needles, in: dump + "\n" + logs)
        XCTAssertEqual(leaks.count, 0, "\(leaks.count) original values found in the database or logs")
    }

    func testFromFileTwiceAddsNothing() async throws {
        let records = try sampleRecords()
        let file = try writeLines(try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) })
        defer { try? FileManager.default.removeItem(at: file) }
        let first = try etl(["--from-file", file.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("received 100, loaded 99, duplicates 0, quarantined 1"), first.stdout)
        let second = try etl(["--from-file", file.path])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("received 100, loaded 0, duplicates 100, quarantined 0, values sealed 0"), second.stdout)
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 99)
        let quarantined = try await count("vault.quarantine")
        XCTAssertEqual(quarantined, 1)
        try await assertNoPlaintext(in: records, logs: first.stderr + second.stderr)
    }

    /// Issue 12, acceptance 4: after `piivault forget`, the user's messages sent again to the queue and the same sample
    /// replayed from a file load no row of that user; the runs count them as suppressed and the queue drains.
    func testAForgottenUsersMessagesAreSuppressedFromTheQueueAndFromAReplay() async throws {
        let records = try sampleRecords()
        let file = try writeLines(try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) })
        defer { try? FileManager.default.removeItem(at: file) }
        let first = try etl(["--from-file", file.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let userID = try XCTUnwrap(records.compactMap { $0["user_id"] as? String }.first)
        let userMessages = records.filter { ($0["user_id"] as? String) == userID && $0["ip"] != nil && $0["device_id"] != nil }.count
        XCTAssertGreaterThan(userMessages, 0)
        func userRows() async throws -> Int {
            try await query("SELECT count(*) FROM user_logins WHERE user_id = \(userID)").first![0].requiredInt()
        }

        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        let forget = try runPiivault(["forget", "--database-url", officer, "--token-key", keys.appendingPathComponent("token.key").path,
                                      "--reason", "ERASE-4", "--user-id", userID], environment: ["PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(forget.status, 0, forget.stderr)
        let afterForget = try await userRows()
        XCTAssertEqual(afterForget, 0)

        // Sent again to the queue: new SQS message ids, so only the tombstone keeps the user out.
        let queue = "forgotten-\(ScratchDatabase.randomHex(4))"
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: queue)
        let summaryFile = FileManager.default.temporaryDirectory.appendingPathComponent("summary-\(queue).json")
        defer { try? FileManager.default.removeItem(at: summaryFile) }
        let fromQueue = try etl(["--queue-url", queueURL, "--summary-json", summaryFile.path])
        XCTAssertEqual(fromQueue.status, 0, fromQueue.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: summaryFile)) as! [String: Any]
        // moto now and then hands one message to two concurrent receives: such an extra copy is suppressed again
        // (the forgotten user's) or a duplicate, never loaded.
        let extra = try XCTUnwrap(summary["received"] as? Int) - 100
        let suppressed = try XCTUnwrap(summary["suppressed"] as? Int)
        XCTAssertTrue((userMessages...(userMessages + extra)).contains(suppressed), fromQueue.stdout)
        XCTAssertTrue(fromQueue.stdout.contains("suppressed \(suppressed)"), fromQueue.stdout)
        XCTAssertEqual(summary["loaded"] as? Int, 99 - userMessages)
        let depth = try await queueDepth(queueURL)
        XCTAssertEqual(depth, 0, "suppressed messages are deleted from the queue")
        let afterQueue = try await userRows()
        XCTAssertEqual(afterQueue, 0)

        // The same sample replayed from the file: the user's messages are suppressed, the others are duplicates.
        let replay = try etl(["--from-file", file.path])
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertTrue(replay.stdout.contains("loaded 0, duplicates \(100 - userMessages)") && replay.stdout.contains("suppressed \(userMessages)"),
                      replay.stdout)
        let afterReplay = try await userRows()
        XCTAssertEqual(afterReplay, 0)
        let recorded = try await query("SELECT suppressed FROM etl_runs ORDER BY id DESC LIMIT 1").first![0].requiredInt()
        XCTAssertEqual(recorded, userMessages, "etl_runs counts the suppressed messages")
        // `piivault runs` shows them, per run (json and table).
        let operatorURL = try await database.createLogin(memberOf: "piivault_etl")
        let shown = try runPiivault(["runs", "--database-url", operatorURL, "--format", "json"])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let runs = try XCTUnwrap(try JSONSerialization.jsonObject(with: shown.stdoutData) as? [[String: Any]])
        XCTAssertEqual(runs.map { $0["suppressed"] as? Int }, [userMessages, userMessages, 0], shown.stdout)
        let table = try runPiivault(["runs", "--database-url", operatorURL])
        XCTAssertEqual(table.status, 0, table.stderr)
        // Aligned columns: each row's cell starts where the header's "supp" does.
        let lines = table.stdout.split(separator: "\n").map(String.init)
        let offset = try XCTUnwrap(lines.first?.range(of: "  supp  ").map { lines[0].distance(from: lines[0].startIndex, to: $0.lowerBound) + 2 },
                                   table.stdout)
        XCTAssertEqual(lines.dropFirst().map { $0.dropFirst(offset).prefix { $0 != " " } }.map(String.init),
                       ["\(userMessages)", "\(userMessages)", "0"], table.stdout)
        try await assertNoPlaintext(in: records, logs: first.stderr + fromQueue.stderr + replay.stderr + forget.stdout + forget.stderr)
    }

    /// Issue 12, acceptance 5 (the race itself): a forget that commits after a batch was prepared but before its
    /// insert (the insert waits on the vault-wide lock forget holds) makes the batch fail closed: no row of the user,
    /// the run fails (exit 1), and the next run suppresses the message.
    func testAForgetCommittedWhileABatchWaitsOnTheVaultLockLoadsNoRowOfThatUser() async throws {
        try await forgetCommittedWhileABatchWaitsOnTheVaultLock()
    }

    /// Issue 25: the same race when the database's default isolation is REPEATABLE READ. A batch skips its re-checks
    /// when the erasure count it reads under the lock is unchanged; read by a snapshot taken before the wait, it would
    /// miss the forget it waited for. The ETL begins each batch READ COMMITTED, so the batch still fails closed.
    func testTheRaceFailsClosedWhenTheDatabaseDefaultsToRepeatableRead() async throws {
        let admin = try await database.connect()
        try await admin.execute(PostgresQuery(
            unsafeSQL: "ALTER DATABASE \(database.name) SET default_transaction_isolation = 'repeatable read'"))
        await admin.close()
        try await forgetCommittedWhileABatchWaitsOnTheVaultLock()
    }

    /// Issue 25: the same race with the trigger that counts tombstones switched off by the tables' owner. The forget
    /// then leaves the erasure count as it was, so the count must not vouch for the batch's look-ups: the batch checks
    /// them again and fails closed, and the run warns that the count is not kept.
    func testTheRaceFailsClosedWhileTheTriggerThatCountsTombstonesIsSwitchedOff() async throws {
        let owner = try await database.connect()
        try await owner.execute("ALTER TABLE vault.tombstones DISABLE TRIGGER tombstones_count_erasure")
        await owner.close()
        let stderr = try await forgetCommittedWhileABatchWaitsOnTheVaultLock()
        XCTAssertTrue(stderr.contains("the vault's erasure count is not being kept"), stderr)
    }

    /// Issue 25: the owner switches the tombstones' counting trigger off, records a tombstone and switches it on again,
    /// in one transaction, after the run began and while its batch waits on the lock (an erasure by hand that skips
    /// the lock, as a restore with triggers disabled is). The count has not moved and the trigger is on when the
    /// batch gets the lock, but it is not the trigger the run found: the batch checks again and fails closed.
    func testTheRaceFailsClosedWhenTheTriggerWasSwitchedOffAndOnAgainSinceTheRunBegan() async throws {
        let stderr = try await forgetCommittedWhileABatchWaitsOnTheVaultLock(tombstoneWithTheTriggerOff: true)
        XCTAssertFalse(stderr.contains("the vault's erasure count is not being kept"), stderr)
    }

    /// A forget in progress holds the vault-wide lock while the run's one batch is prepared and waits on it; the
    /// forget's tombstone is written by the forget itself (uncommitted when the run starts) or, with
    /// `tombstoneWithTheTriggerOff`, by the owner while the batch waits, in one transaction that switches the counting
    /// trigger off and on again around it. Returns the run's standard error.
    @discardableResult
    private func forgetCommittedWhileABatchWaitsOnTheVaultLock(tombstoneWithTheTriggerOff: Bool = false) async throws -> String {
        var record = try XCTUnwrap(try sampleRecords().first { $0["user_id"] != nil && $0["ip"] != nil && $0["device_id"] != nil })
        record["user_id"] = "race-user-1"
        let file = try writeLines([String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)])
        defer { try? FileManager.default.removeItem(at: file) }
        let hash = TombstoneHasher(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
            .hash(userID: "race-user-1")

        // A forget in progress, as ForgetService runs it (READ COMMITTED whatever the database's default, which the
        // lock requires): it holds the vault-wide lock and has written the tombstone, not yet committed.
        let forgetting = try await database.connect()
        try await forgetting.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        _ = try await forgetting.query("SELECT vault.lock_vault_values_exclusive()")
        if !tombstoneWithTheTriggerOff {
            try await forgetting.execute("INSERT INTO vault.tombstones (subject_hash) VALUES (\(hash))")
        }

        let invocation = try etlInvocation(["--from-file", file.path])
        let run = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        // The batch is prepared (the tombstone is not committed, so not seen) and its insert waits on the lock.
        let deadline = Date().addingTimeInterval(30)
        while true {
            let waiting = try await query(vaultLockWaitersQuery)
                .first![0].requiredInt()
            if waiting > 0 { break }
            XCTAssertTrue(run.isRunning, "the run ended before its insert waited on the lock")
            guard run.isRunning, Date() < deadline else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        if tombstoneWithTheTriggerOff {
            let owner = try await database.connect()
            for sql: PostgresQuery in ["BEGIN", "ALTER TABLE vault.tombstones DISABLE TRIGGER tombstones_count_erasure",
                                       "INSERT INTO vault.tombstones (subject_hash) VALUES (\(hash))",
                                       "ALTER TABLE vault.tombstones ENABLE TRIGGER tombstones_count_erasure", "COMMIT"] {
                try await owner.execute(sql)
            }
            await owner.close()
        }
        try await forgetting.execute("COMMIT")
        await forgetting.close()

        let exited = try await run.waitForExit(timeout: 30)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("erased by piivault forget while it loaded"), run.stderr)
        let rows = try await query("SELECT count(*) FROM user_logins WHERE user_id = 'race-user-1'").first![0].requiredInt()
        XCTAssertEqual(rows, 0)

        let again = try etl(["--from-file", file.path])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("loaded 0") && again.stdout.contains("suppressed 1"), again.stdout)
        return run.stderr
    }

    /// Issue 12, acceptance 5: an ETL run and `forget` of the same user, started together 20 times, never leave a
    /// login token without its sealed value nor a row of the forgotten user. Each round the other user's new login
    /// reuses the forgotten user's device id (a value forget would delete), so the shared-value race is exercised too.
    /// A run that fails closed is run again until it completes.
    func testETLAndForgetLoopedConcurrentlyNeverLeaveADanglingTokenOrAForgottenRow() async throws {
        let template = try XCTUnwrap(try sampleRecords().first { $0["user_id"] != nil && $0["ip"] != nil && $0["device_id"] != nil })
        func line(_ user: String, _ device: String, _ date: String) throws -> String {
            var record = template
            record["user_id"] = user
            record["ip"] = "198.51.100.9"
            record["device_id"] = device
            record["create_date"] = date
            return String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)
        }
        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        let tokenKey = keys.appendingPathComponent("token.key").path
        for round in 1...20 {
            let forgotten = "loop-x-\(round)", other = "loop-y-\(round)", device = "loop-device-x-\(round)"
            let first = try writeLines([try line(forgotten, device, "2026-01-01")])
            defer { try? FileManager.default.removeItem(at: first) }
            let loadFirst = try etl(["--from-file", first.path])
            XCTAssertEqual(loadFirst.status, 0, loadFirst.stderr)
            let second = try writeLines([try line(other, device, "2026-01-02"), try line(forgotten, device, "2026-01-03")])
            defer { try? FileManager.default.removeItem(at: second) }

            let invocation = try etlInvocation(["--from-file", second.path])
            let run = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
            let forget = try runPiivault(["forget", "--database-url", officer, "--token-key", tokenKey, "--reason", "LOOP-\(round)",
                                          "--user-id", forgotten], environment: ["PIIVAULT_TOKEN_KEY": nil])
            XCTAssertEqual(forget.status, 0, forget.stderr)
            let exited = try await run.waitForExit(timeout: 60)
            XCTAssertTrue(exited)
            XCTAssertTrue(run.status == 0 || run.stderr.contains("while it loaded"), "round \(round): \(run.stderr)")
            var attempts = 0
            var status = run.status
            while status != 0 && attempts < 3 {
                attempts += 1
                let again = try etl(["--from-file", second.path])
                status = again.status
            }
            XCTAssertEqual(status, 0, "round \(round): the run completes once the forget is done")

            let dangling = try await query("""
                SELECT count(*) FROM user_logins AS l
                 WHERE (l.masked_ip IS NOT NULL AND NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip))
                    OR (l.masked_device_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id))
                """).first![0].requiredInt()
            XCTAssertEqual(dangling, 0, "round \(round): a login token without its sealed value")
            let forgottenRows = try await query("SELECT count(*) FROM user_logins WHERE user_id = \(forgotten)").first![0].requiredInt()
            XCTAssertEqual(forgottenRows, 0, "round \(round): a row of the forgotten user")
            let otherRows = try await query("SELECT count(*) FROM user_logins WHERE user_id = \(other)").first![0].requiredInt()
            XCTAssertEqual(otherRows, 1, "round \(round): the other user's login is loaded")
        }
    }

    /// Four ETL processes committing batches of 8,000 users each at the same moment: a batch takes one lock (the
    /// vault-wide one, shared), not one per user, so together they do not exhaust the server's shared lock table
    /// (about max_locks_per_transaction x max_connections entries, 64 x 200 on the test cluster; 20,000 to 25,000
    /// advisory locks fit in it).
    func testFourProcessesCommittingBatchesOfEightThousandUsersAtOnceAllSucceed() async throws {
        let files = try (0..<4).map { process in
            try writeLines((0..<8000).map { i in
                #"{"user_id": "bulk-\#(process)-\#(i)", "device_type": "ios", "ip": "10.\#(process).\#(i >> 8).\#(i & 255)", "device_id": "bulk-device-\#(process)-\#(i)"}"#
            })
        }
        defer { for file in files { try? FileManager.default.removeItem(at: file) } }
        try await loadTogether(files, batchSize: 8000)
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 32_000)
    }

    /// Four ETL processes sealing the same 600 values at the same moment, each in its own order: their batches
    /// insert into the vault's primary key in token order, so they wait on each other in one direction and never
    /// deadlock (and a deadlock with anything else is retried).
    func testFourProcessesSealingTheSameValuesAtOnceAllSucceed() async throws {
        var generator = SystemRandomNumberGenerator()
        let files = try (0..<4).map { process in
            try writeLines((0..<3000).map { i in i }.shuffled(using: &generator).map { i in
                #"{"user_id": "shared-\#(process)-\#(i)", "device_type": "ios", "ip": "10.9.\#((i % 300) >> 8).\#((i % 300) & 255)", "device_id": "shared-device-\#(i % 300)"}"#
            })
        }
        defer { for file in files { try? FileManager.default.removeItem(at: file) } }
        try await loadTogether(files, batchSize: 3000)
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 12_000)
        let values = try await count("vault.secrets")
        XCTAssertEqual(values, 600, "each value sealed once")
    }

    /// Runs one `etl --from-file` per file, lets them prepare their first batch while the vault-wide lock is held
    /// (as forget holds it), then releases it so that the batches go in together; every run must succeed.
    private func loadTogether(_ files: [URL], batchSize: Int) async throws {
        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        _ = try await holder.query("SELECT vault.lock_vault_values_exclusive()")
        let runs = try files.map { file in
            let invocation = try etlInvocation(["--from-file", file.path, "--batch-size", String(batchSize)])
            return try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        }
        try await waitUntil("every batch waits on the vault-wide lock", timeout: 120) {
            let waiting = try await self.query(vaultLockWaitersQuery).requiredFirst("pg_locks")[0].requiredInt()
            return waiting >= files.count || runs.contains { !$0.isRunning }
        }
        try await holder.execute("COMMIT")
        await holder.close()
        for run in runs {
            let exited = try await run.waitForExit(timeout: 120)
            XCTAssertTrue(exited)
            XCTAssertEqual(run.status, 0, String(run.stderr.suffix(1000)))
        }
    }

    /// The shared-value race, made to happen: another user's batch has looked up the vault (it found the forgotten
    /// user's device id sealed, so it does not seal it again) and waits on the vault-wide lock (held here by another
    /// session), while `forget` queues behind it. Forget must wait for the batch and then keep the value the batch
    /// now references.
    func testForgetWaitsForABatchThatReliesOnAValueItWouldDelete() async throws {
        var record = try XCTUnwrap(try sampleRecords().first { $0["user_id"] != nil && $0["ip"] != nil && $0["device_id"] != nil })
        record["ip"] = "198.51.100.10"
        record["device_id"] = "race-shared-device"
        func file(_ user: String) throws -> URL {
            record["user_id"] = user
            return try writeLines([String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)])
        }
        let first = try file("race-x"), second = try file("race-y")
        defer { for url in [first, second] { try? FileManager.default.removeItem(at: url) } }
        let loadFirst = try etl(["--from-file", first.path])
        XCTAssertEqual(loadFirst.status, 0, loadFirst.stderr)
        let tokenKey = keys.appendingPathComponent("token.key").path
        func waiters() async throws -> Int {
            try await query(vaultLockWaitersQuery).requiredFirst("pg_locks")[0].requiredInt()
        }
        func wait(until condition: () async throws -> Bool) async throws {
            let deadline = Date().addingTimeInterval(30)
            while try await !condition() {
                guard Date() < deadline else { return XCTFail("timed out") }
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        _ = try await holder.query("SELECT vault.lock_vault_values_exclusive()")
        let invocation = try etlInvocation(["--from-file", second.path])
        let run = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        try await wait { try await waiters() >= 1 || !run.isRunning }
        let officer = try await database.createLogin(memberOf: "piivault_compliance")
        let forget = try BackgroundProcess(try piivaultBinary(), [
            "forget", "--database-url", officer, "--token-key", tokenKey, "--reason", "RACE", "--user-id", "race-x",
        ], environment: ["PIIVAULT_TOKEN_KEY": nil])
        try await wait { try await waiters() >= 2 || !forget.isRunning }
        try await holder.execute("COMMIT")
        await holder.close()
        let runExited = try await run.waitForExit(timeout: 30)
        let forgetExited = try await forget.waitForExit(timeout: 30)
        XCTAssertTrue(runExited && forgetExited)
        XCTAssertEqual(forget.status, 0, forget.stderr)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(forget.stdout.contains("deleted 0 sealed values") && forget.stdout.contains("kept 2 sealed values"), forget.stdout)
        let dangling = try await query("""
            SELECT count(*) FROM user_logins AS l
             WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip)
                OR NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id)
            """).first![0].requiredInt()
        XCTAssertEqual(dangling, 0, "a login token without its sealed value")
        let rowsY = try await query("SELECT count(*) FROM user_logins WHERE user_id = 'race-y'").first![0].requiredInt()
        XCTAssertEqual(rowsY, 1)
    }

    func testAFileOverlappingAnEarlierRunLoadsOnlyTheNewMessages() async throws {
        // The loader COPies straight into user_logins and falls back to the idempotent path when a row is already
        // there; half old, half new exercises the fallback with real work to do.
        let lines = try sampleRecords().map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let firstHalf = try writeLines(Array(lines.prefix(50)))
        let all = try writeLines(lines)
        defer { for file in [firstHalf, all] { try? FileManager.default.removeItem(at: file) } }
        let first = try etl(["--from-file", firstHalf.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let firstRows = try await count("user_logins")
        let firstQuarantined = try await count("vault.quarantine")
        XCTAssertEqual(firstRows + firstQuarantined, 50)
        let second = try etl(["--from-file", all.path])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("received 100, loaded \(99 - firstRows), duplicates 50"), second.stdout)
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 99)
        let distinct = try await query("SELECT count(DISTINCT message_id) AS n FROM user_logins").first!["n"].requiredInt()
        XCTAssertEqual(distinct, 99)
        let rowsMissingASealedValue = try await query("""
            SELECT count(*) AS n FROM user_logins l
             WHERE NOT EXISTS (SELECT 1 FROM vault.secrets s WHERE s.token = l.masked_ip)
                OR NOT EXISTS (SELECT 1 FROM vault.secrets s WHERE s.token = l.masked_device_id)
            """).first!["n"].requiredInt()
        XCTAssertEqual(rowsMissingASealedValue, 0, "every token of every row has its sealed value")
    }

    func testRedeliveryAfterCommitAddsNoRows() async throws {
        let queue = "redeliver-\(ScratchDatabase.randomHex(4))"
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: queue)
        // Load everything in one batch, then die before deleting: every message comes back.
        let crashed = try etl(["--queue-url", queueURL, "--visibility-timeout", "2", "--batch-size", "200"],
                              environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "1"])
        XCTAssertEqual(crashed.status, 75, crashed.stderr)
        let afterCrash = try await count("user_logins")
        let quarantinedAfterCrash = try await count("vault.quarantine")
        XCTAssertGreaterThan(afterCrash, 0)
        // What the crashed run held comes back when its visibility timeout ends. A long poll the crashed run had
        // open when it exited still runs in the queue service and may take messages after that, for nobody: they
        // stay in flight for another visibility timeout (real SQS does the same). So rerun until the queue is
        // empty, at most three times, and count over all reruns.
        var counts: [String: Int] = [:]
        var outputs = ""
        // A short visibility timeout on the reruns too, so that a message a rerun's last poll took after the run
        // ended is back soon; one the queue hands out twice meanwhile is a duplicate, which the counts allow for.
        for _ in 0..<3 {
            try await waitUntilNothingInFlight(queueURL, timeout: 40)
            let rerun = try etl(["--queue-url", queueURL, "--visibility-timeout", "10"])
            XCTAssertEqual(rerun.status, 0, rerun.stderr)
            outputs += rerun.stdout
            counts.merge(summaryCounts(rerun.stdout), uniquingKeysWith: +)
            if try await queueDepth(queueURL) == 0 { break }
        }
        // Every message comes again; the ones the crashed run committed are the duplicates, plus any the queue
        // delivered twice during the reruns (SQS delivers at least once; moto's concurrent receives do so now and
        // then).
        let received = try XCTUnwrap(counts["received"], outputs)
        XCTAssertGreaterThanOrEqual(received, 100, outputs)
        XCTAssertEqual(counts["duplicates"], afterCrash + quarantinedAfterCrash + (received - 100), outputs)
        XCTAssertEqual(counts["loaded"], 99 - afterCrash, outputs)
        XCTAssertEqual(counts["quarantined"], 1 - quarantinedAfterCrash, outputs)
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 99, "redelivered messages add no row")
        let quarantined = try await count("vault.quarantine")
        XCTAssertEqual(quarantined, 1)
        let depth = try await queueDepth(queueURL)
        XCTAssertEqual(depth, 0)
    }

    func testHostileMessagesAreQuarantinedAndUnsealExactly() async throws {
        let valid = #"{"user_id": "u-ok", "device_type": "ios", "ip": "192.0.2.1", "device_id": "111-11-1111"}"#
        let hostile: [String] = [
            "not json at all",
            #"{"user_id": 1, "device_type": "ios", "ip": "192.0.2.2", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": {"nested": {"deep": [1, 2]}}, "ip": "192.0.2.3", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "999.1.1.1", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "localhost", "device_id": "d"}"#,
            #"{"user_id": "\#(String(repeating: "x", count: 129))", "device_type": "ios", "ip": "192.0.2.4", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.5", "device_id": "d", "locale": "\#(String(repeating: "l", count: 33))"}"#,
            #"{"user_id": "\ud800", "device_type": "ios", "ip": "192.0.2.6", "device_id": "d"}"#,
            #"{"user_id": "u", "device_type": "ios", "ip": "192.0.2.7", "device_id": "   "}"#,
            #"{"user_id": "u'; DROP TABLE user_logins; --", "device_type": "ios", "ip": "192.0.2.8", "device_id": "d"}"#,
            #"{"user_id": "big", "device_type": "ios", "ip": "192.0.2.9", "device_id": "d", "pad": "\#(String(repeating: "p", count: 256 * 1024))"}"#,
            "[]", "null", #"{"user_id": "u"}"#, "{",
        ]
        let file = try writeLines([valid] + hostile)
        defer { try? FileManager.default.removeItem(at: file) }
        let result = try etl(["--from-file", file.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let loaded = try await query("SELECT user_id FROM user_logins ORDER BY user_id")
        XCTAssertEqual(try loaded.map { try $0[0].requiredString() },
                       ["big", "u'; DROP TABLE user_logins; --", "u-ok"], "SQL-looking strings are just data")
        let quarantine = try await query("""
            SELECT q.message_id, q.reason, q.sealed_body, k.key_id, k.sealed_key
              FROM vault.quarantine q JOIN vault.data_keys k ON k.id = q.data_key_id
            """)
        XCTAssertEqual(quarantine.count, hostile.count - 2)
        let secretKey = try KeyLoading.loadVaultSecretKey(path: keys.appendingPathComponent("vault.key").path) {
            throw TestSetupError("the test key has no passphrase")
        }
        let lines = [valid] + hostile
        for row in quarantine {
            let messageID = try row["message_id"].requiredString()
            let opener = try DataKeyOpener(
                sealedDataKey: SealedDataKey(keyID: KeyID(hex: try row["key_id"].requiredString())!,
                                             sealed: try row["sealed_key"].requiredBytes()),
                secretKey: secretKey)
            let body = try opener.openQuarantined(try row["sealed_body"].requiredBytes(), messageID: messageID)
            // message ids come from the line's content: the body must be exactly the line that has this id.
            let lineNumber = try XCTUnwrap(lines.firstIndex { FileMessageSource.messageID(body: Array($0.utf8)) == messageID }) + 1
            XCTAssertEqual(body, Array(lines[lineNumber - 1].utf8), "quarantined body of line \(lineNumber) unseals exactly")
            let reason = try row["reason"].requiredString()
            XCTAssertFalse(reason.contains("192.0.2"), reason)
            XCTAssertFalse(reason.contains("999.1.1.1"), reason)
        }
    }

    func testTwoProcessesDrainingOneQueueLoadEachMessageOnce() async throws {
        let records = try sampleRecords()
        let queue = "two-\(ScratchDatabase.randomHex(4))"
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("\(queue).json")
        try JSONSerialization.data(withJSONObject: records).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let queueURL = try await send(file, queue: queue, repeat: 2)  // 200 messages: every valid record twice
        // A short visibility timeout, so that a message whose delete moto lost (two DeleteMessageBatch calls that
        // overlap can undo one another there; SQS itself does not) is back soon for the check at the end.
        let invocation = try etlInvocation(["--queue-url", queueURL, "--batch-size", "20", "--concurrency", "2",
                                            "--visibility-timeout", "5"])
        let results = try await withThrowingTaskGroup(of: ProcessResult.self) { group in
            for _ in 0..<2 {
                group.addTask { try runPiivault(invocation.arguments, environment: invocation.environment) }
            }
            var all: [ProcessResult] = []
            for try await result in group { all.append(result) }
            return all
        }
        for result in results { XCTAssertEqual(result.status, 0, result.stderr) }
        let rows = try await count("user_logins")
        XCTAssertEqual(rows, 198, "each of the 198 valid messages exactly once")
        let distinct = try await query("SELECT count(DISTINCT message_id) FROM user_logins").first![0].requiredInt()
        XCTAssertEqual(distinct, 198)
        let secrets = try await count("vault.secrets")
        XCTAssertEqual(secrets, 198, "99 ips and 99 device ids, each sealed once")
        // Whatever is still queued was loaded already: a rerun loads nothing and empties the queue.
        if try await queueDepth(queueURL) > 0 {
            try await waitUntilNothingInFlight(queueURL, timeout: 30)
            let rerun = try etl(["--queue-url", queueURL, "--visibility-timeout", "5"])
            XCTAssertEqual(rerun.status, 0, rerun.stderr)
            XCTAssertEqual(summaryCounts(rerun.stdout)["loaded"], 0, rerun.stdout)
            let rowsAfter = try await count("user_logins")
            XCTAssertEqual(rowsAfter, 198)
        }
        let depth = try await queueDepth(queueURL)
        XCTAssertEqual(depth, 0)
    }

    func testMissingKeyFileIsAClearError() throws {
        let result = try runPiivault(["etl", "--from-file", "/dev/null", "--token-key", "/nonexistent/token.key",
                                      "--database-url", database.url])
        XCTAssertEqual(result.status, PIIVaultExitCode.dataError.rawValue, "exit 65: a missing key file (SECURITY.md)")
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error:"), result.stderr)
        XCTAssertTrue(result.stderr.contains("/nonexistent/token.key does not exist; give the key file's path with --token-key"),
                      result.stderr)
    }
}

/// Today's date in UTC, as `create_date` shows it.
enum MessagePreparerDate {
    static func utcToday() -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day], from: Date())
        return String(format: "%04d-%02d-%02d", parts.year!, parts.month!, parts.day!)
    }
}
