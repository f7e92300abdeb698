import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault unmask`, the real binary, after a real `piivault etl` run of the 100-message sample into Postgres: what a
/// compliance officer gets back, what everyone else gets (nothing, and an entry saying so), and that nothing is
/// printed unless the access-log entry is committed.
///
/// Outputs are checked for the sample's original values with `assertNoPlaintext`, which names how many leaked, never
/// which.
final class UnmaskTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var compliance: String!
    var records: [[String: Any]] = []
    var lines: [String] = []

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "unmask")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("unmask-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let sample = try TestServices.fixture("fetch-sample-messages.json")
        records = try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as! [[String: Any]]
        lines = try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let input = keys.appendingPathComponent("sample.ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        try load(input)
        compliance = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    private var secretKeyPath: String { keys.appendingPathComponent("vault.key").path }

    private func load(_ file: URL) throws {
        let etl = try runPiivault([
            "etl", "--from-file", file.path, "--database-url", database.url,
            "--token-key", keys.appendingPathComponent("token.key").path,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
    }

    private var tokenKeyPath: String { keys.appendingPathComponent("token.key").path }

    /// Runs `piivault unmask` as `login` (default: the compliance officer) with the right key file and the token key
    /// (to check values against their tokens) unless told otherwise; the operating-system user is pinned so the log
    /// can be checked.
    private func unmask(_ arguments: [String], login: String? = nil, keyFile: String?? = .none,
                        tokenKey: String?? = .none, environment: [String: String?] = [:]) throws -> ProcessResult {
        var base = ["unmask", "--database-url", login ?? compliance!]
        switch tokenKey {
        case .none: base += ["--token-key", tokenKeyPath]
        case .some(.some(let path)): base += ["--token-key", path]
        case .some(.none): break
        }
        switch keyFile {
        case .none: base += ["--key-file", secretKeyPath]
        case .some(.some(let path)): base += ["--key-file", path]
        case .some(.none): break
        }
        var env: [String: String?] = ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil]
        for (key, value) in environment { env[key] = value }
        return try runPiivault(base + arguments, environment: env)
    }

    private func query(_ query: PostgresQuery) async throws -> PostgresRows {
        let owner = try await database.connect()
        do {
            let rows = try await owner.query(query)
            await owner.close()
            return rows
        } catch {
            await owner.close()
            throw error
        }
    }

    private func execute(_ sql: String) async throws {
        let owner = try await database.connect()
        defer { Task { await owner.close() } }
        try await owner.executeScript(sql)
    }

    /// Access-log entries after `seq`, as `db_user|os_user|action|reason|subject|row_count|outcome`.
    private func entries(after seq: Int = 0) async throws -> [String] {
        let rows = try await query("""
            SELECT db_user, os_user, action, reason, subject, row_count::text AS row_count, outcome
              FROM audit.access_log WHERE seq > \(seq) ORDER BY seq
            """)
        return try rows.map { row in
            try ["db_user", "os_user", "action", "reason", "subject", "row_count", "outcome"]
                .map { try row[$0].requiredString() }.joined(separator: "|")
        }
    }

    private func logLength() async throws -> Int {
        try await query("SELECT count(*) AS n FROM audit.access_log").first!["n"].requiredInt()
    }

    private func user(of url: String) -> String { URLComponents(string: url)!.user! }

    /// The sample's original ip and device_id values (as sent and canonical).
    private var originals: [String] {
        var values: Set<String> = []
        for record in records {
            for field in ["ip", "device_id"] { if let value = record[field] as? String { values.insert(value) } }
        }
        return values.sorted()
    }

    /// Fails when any original value of the sample appears in `output` (says how many, never which).
    private func assertNoPlaintext(_ output: String, _ context: String, line: UInt = #line) {
        let leaks = originals.filter { output.contains($0) }.count
        XCTAssertEqual(leaks, 0, "\(context): \(leaks) original values in the output", line: line)
    }

    private func tokenizer() throws -> Tokenizer {
        Tokenizer(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
    }

    /// A sample user with a complete record, and that record.
    private func completeRecord() throws -> [String: Any] {
        try XCTUnwrap(records.first { ($0["ip"] as? String) != nil && ($0["device_id"] as? String) != nil
                                      && ($0["user_id"] as? String) != nil })
    }

    // MARK: Acceptance 1: the originals, one entry per call

    func testByUserIDAndByTokenTheOfficerGetsTheOriginalsAndEachCallIsOneEntry() async throws {
        let record = try completeRecord()
        let userID = record["user_id"] as! String
        let tokenizer = try tokenizer()
        let userRecords = records.filter { ($0["user_id"] as? String) == userID }
        let expected = try Set(userRecords.map { record in
            [try tokenizer.tokenize(record["ip"] as! String, as: .ip).canonical,
             try tokenizer.tokenize(record["device_id"] as! String, as: .deviceID).canonical]
        })
        let before = try await logLength()

        let byUser = try unmask(["--reason", "SAR-2026-001", "--user-id", userID, "--format", "json"])
        XCTAssertEqual(byUser.status, 0, byUser.stderr)
        let logins = try XCTUnwrap(try JSONSerialization.jsonObject(with: byUser.stdoutData) as? [[String: Any]])
        XCTAssertEqual(logins.count, userRecords.count)
        XCTAssertEqual(Set(logins.map { [$0["ip"] as? String ?? "", $0["device_id"] as? String ?? ""] }), expected)
        for login in logins {
            XCTAssertEqual(login["user_id"] as? String, userID)
            XCTAssertEqual(login["masked_ip"] as? String,
                           try tokenizer.tokenize(login["ip"] as! String, as: .ip).token, "the token beside its value")
        }
        XCTAssertTrue(byUser.stderr.contains("access logged as entry \(before + 1)"), byUser.stderr)

        let ipToken = try tokenizer.tokenize(record["ip"] as! String, as: .ip)
        let deviceToken = try tokenizer.tokenize(record["device_id"] as! String, as: .deviceID)
        let byToken = try unmask(["--reason", "SAR-2026-002", "--format", "csv",
                                  "--token", deviceToken.token, ipToken.token])
        XCTAssertEqual(byToken.status, 0, byToken.stderr)
        XCTAssertEqual(byToken.stdout, "token,field,value\r\n\(deviceToken.token),device_id,\(deviceToken.canonical)\r\n"
                                       + "\(ipToken.token),ip,\(ipToken.canonical)\r\n")

        let table = try unmask(["--reason", "SAR-2026-003", "--token", ipToken.token])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("\(ipToken.token)  ip     \(ipToken.canonical)"), table.stdout)

        let officer = user(of: compliance)
        let subject = "tokens:" + [deviceToken.token, ipToken.token].sorted().joined(separator: ",")
        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(officer)|officer-on-duty|unmask|SAR-2026-001|user_id:\(userID)|\(userRecords.count)|ok",
            "\(officer)|officer-on-duty|unmask|SAR-2026-002|\(subject)|2|ok",
            "\(officer)|officer-on-duty|unmask|SAR-2026-003|tokens:\(ipToken.token)|1|ok",
        ])
        assertNoPlaintext(logged.joined(separator: "\n"), "the access log")
    }

    func testAQuarantinedBodyComesBackExactly() async throws {
        let id = try await query("SELECT message_id FROM vault.quarantine").first!["message_id"].requiredString()
        let index = try XCTUnwrap(lines.firstIndex { FileMessageSource.messageID(body: Array($0.utf8)) == id })
        let result = try unmask(["--reason", "INC-7", "--quarantined", id, "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        XCTAssertEqual(object["body"] as? String, lines[index])
        XCTAssertEqual((object["body_base64"] as? String).flatMap { Data(base64Encoded: $0) }, Data(lines[index].utf8))
        XCTAssertTrue((object["reason"] as? String ?? "").hasPrefix("missing required fields"), "\(object)")
        let logged = try await entries(after: try await logLength() - 1)
        XCTAssertEqual(logged, ["\(user(of: compliance))|officer-on-duty|unmask|INC-7|message_id:\(id)|1|ok"])
    }

    /// Values that could not be written (standard output on a full disk) fail the command instead of exiting 0 over
    /// a short file; the access stays logged, and the note saying so still comes.
    func testValuesThatCannotBeWrittenFailTheCommand() async throws {
        let userID = try completeRecord()["user_id"] as! String
        let before = try await logLength()
        let result = try runProcess("/bin/sh", [
            "-c", "exec \"$0\" \"$@\" >/dev/full", try piivaultBinary(), "unmask", "--database-url", compliance!,
            "--key-file", secretKeyPath, "--token-key", tokenKeyPath, "--reason", "SAR-2026-009", "--user-id", userID,
            "--format", "csv",
        ], environment: ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("piivault: access logged as entry \(before + 1)\n"), result.stderr)
        XCTAssertTrue(result.stderr.contains(
            "piivault: error: cannot write standard output (No space left on device); what the command printed there may be incomplete"),
            result.stderr)
        assertNoPlaintext(result.stderr, "standard error")
        let length = try await logLength()
        XCTAssertEqual(length, before + 1, "one entry")
    }

    // MARK: Acceptance 2: fail closed

    func testNothingIsPrintedWhenTheEntryCannotBeWrittenOrCommitted() async throws {
        let token = try tokenizer().tokenize(try completeRecord()["ip"] as! String, as: .ip).token
        let before = try await logLength()
        // The append itself fails.
        try await execute("""
            CREATE FUNCTION public.refuse_append() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'access log is read-only for this test'; END $$;
            CREATE TRIGGER refuse_append BEFORE INSERT ON audit.access_log
                FOR EACH ROW EXECUTE FUNCTION public.refuse_append();
            """)
        let appendFails = try unmask(["--reason", "case 1", "--token", token])
        XCTAssertEqual(appendFails.status, PIIVaultExitCode.failure.rawValue, appendFails.stderr)
        XCTAssertEqual(appendFails.stdout, "", "no value without an entry")
        XCTAssertTrue(appendFails.stderr.contains("read-only for this test"), appendFails.stderr)
        assertNoPlaintext(appendFails.stdout + appendFails.stderr, "append fails")

        // The append succeeds and the values open, but COMMIT fails: still nothing printed.
        try await execute("""
            DROP TRIGGER refuse_append ON audit.access_log;
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON audit.access_log
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_append();
            """)
        let commitFails = try unmask(["--reason", "case 2", "--token", token])
        XCTAssertEqual(commitFails.status, PIIVaultExitCode.failure.rawValue, commitFails.stderr)
        XCTAssertEqual(commitFails.stdout, "", "no value when the commit fails")
        XCTAssertTrue(commitFails.stderr.contains("read-only for this test"), commitFails.stderr)
        assertNoPlaintext(commitFails.stdout + commitFails.stderr, "commit fails")
        let stillBefore = try await logLength()
        XCTAssertEqual(stillBefore, before, "nothing was committed")

        // The same call with the log writable again prints the value: the failures above were the log's.
        try await execute("DROP TRIGGER refuse_commit ON audit.access_log")
        let works = try unmask(["--reason", "case 3", "--token", token])
        XCTAssertEqual(works.status, 0, works.stderr)
        XCTAssertTrue(works.stdout.contains(token), works.stdout)
        let after = try await logLength()
        XCTAssertEqual(after, before + 1)
    }

    // MARK: Acceptance 3: gating

    func testEveryoneElseGetsNoPlaintextAClearErrorAndARefusalOnTheLog() async throws {
        let record = try completeRecord()
        let token = try tokenizer().tokenize(record["ip"] as! String, as: .ip).token
        let userID = record["user_id"] as! String

        // Refused before the database is reached: no entry.
        let exposed = keys.appendingPathComponent("exposed.key")
        try FileManager.default.copyItem(atPath: secretKeyPath, toPath: exposed.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: exposed.path)
        let locked = keys.appendingPathComponent("locked")
        let passphrase = keys.appendingPathComponent("passphrase")
        let wrongPassphrase = keys.appendingPathComponent("wrong-passphrase")
        try "correct horse battery staple\n".write(to: passphrase, atomically: true, encoding: .utf8)
        try "incorrect horse\n".write(to: wrongPassphrase, atomically: true, encoding: .utf8)
        for file in [passphrase, wrongPassphrase] {  // passphrase files are secrets like key files: 0600
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path)
        }
        let lockedKeygen = try runPiivault(["keygen", "--dir", locked.path, "--passphrase"],
                                           environment: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(lockedKeygen.status, 0, lockedKeygen.stderr)
        let before = try await logLength()
        let offline: [(String, ProcessResult, Int32, String)] = [
            ("no reason", try unmask(["--token", token]), 64, "--reason is required"),
            ("blank reason", try unmask(["--reason", "  ", "--token", token]), 64, "--reason is required"),
            ("no key file", try unmask(["--reason", "r", "--token", token], keyFile: .some(nil)), 64, "--key-file is required"),
            ("missing key file", try unmask(["--reason", "r", "--token", token],
                                            keyFile: keys.appendingPathComponent("nope.key").path), 65,
             "nope.key does not exist; give the key file's path with --key-file"),
            ("mode 0644", try unmask(["--reason", "r", "--token", token], keyFile: exposed.path), 77, "chmod 600"),
            ("a value given as a token", try unmask(["--reason", "r", "--token", record["ip"] as! String]), 64,
             "are not tokens"),
            ("wrong passphrase", try unmask(["--reason", "r", "--token", token],
                                            keyFile: locked.appendingPathComponent("vault.key").path,
                                            environment: ["PIIVAULT_PASSPHRASE_FILE": wrongPassphrase.path]),
             77, "passphrase"),
        ]
        for (name, result, status, message) in offline {
            XCTAssertEqual(result.status, status, "\(name): \(result.stderr)")
            XCTAssertEqual(result.stdout, "", name)
            XCTAssertTrue(result.stderr.contains(message), "\(name): \(result.stderr)")
            assertNoPlaintext(result.stdout + result.stderr, name)
        }
        let afterOffline = try await logLength()
        XCTAssertEqual(afterOffline, before, "refused before the database was reached: nothing logged")

        // The right passphrase opens the locked key, which is another vault's key: refused by key id, and logged.
        let otherVault = try unmask(["--reason", "wrong key case", "--user-id", userID],
                                    keyFile: locked.appendingPathComponent("vault.key").path,
                                    environment: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(otherVault.status, 77, otherVault.stderr)
        XCTAssertEqual(otherVault.stdout, "")
        XCTAssertTrue(otherVault.stderr.contains("use the vault.key with key id"), otherVault.stderr)
        assertNoPlaintext(otherVault.stdout + otherVault.stderr, "another vault's key")

        // Other roles: the database refuses, and the attempt is logged under their own login.
        var expected = try await entries(after: before)
        XCTAssertEqual(expected.count, 1)
        XCTAssertTrue(expected[0].hasPrefix("\(user(of: compliance))|officer-on-duty|unmask|wrong key case|user_id:\(userID)|0|refused: vault key mismatch (sealed to "), expected[0])
        for role in ["piivault_analyst", "piivault_etl", "piivault_auditor"] {
            let login = try await database.createLogin(memberOf: role)
            let result = try unmask(["--reason", "curious", "--token", token], login: login)
            XCTAssertEqual(result.status, 77, "\(role): \(result.stderr)")
            XCTAssertEqual(result.stdout, "", role)
            XCTAssertTrue(result.stderr.contains("not a member of piivault_compliance"), "\(role): \(result.stderr)")
            assertNoPlaintext(result.stdout + result.stderr, role)
            expected.append("\(user(of: login))|officer-on-duty|unmask|curious|tokens:\(token)|0|"
                            + "refused: not permitted (login is not a member of piivault_compliance)")
        }
        let logged = try await entries(after: before)
        XCTAssertEqual(logged, expected)

        // The compliance role itself cannot read the vault's tables directly.
        let officer = try await PostgresConnection.connect(compliance)
        for table in ["vault.secrets", "vault.data_keys", "vault.quarantine", "audit.access_log"] {
            do {
                try await officer.query(PostgresQuery(unsafeSQL: "SELECT * FROM \(table)"))
                XCTFail("compliance may select \(table) directly")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42501", "\(table): \(error)")
            }
        }
        await officer.close()
    }

    // MARK: Unknown token, wrong key, moved value: each its own outcome

    func testUnknownTokensMovedAndDamagedValuesAreToldApart() async throws {
        let tokenizer = try tokenizer()
        let first = try completeRecord()
        let second = try XCTUnwrap(records.first { ($0["ip"] as? String).map { $0 != first["ip"] as! String } ?? false })
        let victim = try tokenizer.tokenize(first["ip"] as! String, as: .ip).token
        let source = try tokenizer.tokenize(second["ip"] as! String, as: .ip).token
        let before = try await logLength()

        let stranger = "ip.v1." + String(repeating: "0", count: 64)
        let unknown = try unmask(["--reason", "r1", "--token", victim, stranger])
        XCTAssertEqual(unknown.status, 1, unknown.stderr)
        XCTAssertTrue(unknown.stdout.contains(victim), "the known token is still printed")
        XCTAssertTrue(unknown.stderr.contains("1 of 2 tokens are not in the vault: \(stranger)"), unknown.stderr)

        // As a superuser could: copy another row's sealed value over this one.
        try await execute("""
            UPDATE vault.secrets SET sealed = (SELECT sealed FROM vault.secrets WHERE token = '\(source)')
             WHERE token = '\(victim)'
            """)
        let moved = try unmask(["--reason", "r2", "--token", victim])
        XCTAssertEqual(moved.status, 65, moved.stderr)
        XCTAssertEqual(moved.stdout, "")
        XCTAssertTrue(moved.stderr.contains("belongs to token \(source)"), moved.stderr)
        assertNoPlaintext(moved.stdout + moved.stderr, "moved")

        // Flip every bit of one byte (overwriting it with a fixed value would leave it unchanged 1 time in 256).
        try await execute("""
            UPDATE vault.secrets SET sealed = set_byte(sealed, 29, get_byte(sealed, 29) # 255) WHERE token = '\(victim)'
            """)
        let damaged = try unmask(["--reason", "r3", "--user-id", first["user_id"] as! String])
        XCTAssertEqual(damaged.status, 65, damaged.stderr)
        XCTAssertEqual(damaged.stdout, "")
        XCTAssertTrue(damaged.stderr.contains("is damaged"), damaged.stderr)

        let outcomes = try await entries(after: before).map { $0.split(separator: "|").suffix(2).joined(separator: "|") }
        // The values were released under an entry each, then refused when they did not open.
        let logins = records.filter { ($0["user_id"] as? String) == (first["user_id"] as! String) }.count
        XCTAssertEqual(outcomes, [
            "1|unknown tokens: 1 of 2 not in the vault",
            "1|ok", "0|refused: value moved (\(victim) holds the value of \(source))",
            "\(logins)|ok", "0|refused: value damaged (token \(victim))",
        ])
        let verify = try runPiivault(["audit", "verify", "--database-url",
                                      try await database.createLogin(memberOf: "piivault_auditor")])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    func testOverTheRowCapIsRefusedAndLoggedUntilRaised() async throws {
        let tokens = try records.prefix(5).compactMap { $0["ip"] as? String }.map { try tokenizer().tokenize($0, as: .ip).token }
        let before = try await logLength()
        let capped = try unmask(["--reason", "bulk", "--max-rows", "2", "--token"] + tokens)
        XCTAssertEqual(capped.status, 1, capped.stderr)
        XCTAssertEqual(capped.stdout, "")
        XCTAssertTrue(capped.stderr.contains("raise --max-rows"), capped.stderr)
        let raised = try unmask(["--reason", "bulk", "--max-rows", "5", "--format", "json", "--token"] + tokens)
        XCTAssertEqual(raised.status, 0, raised.stderr)
        XCTAssertEqual((try JSONSerialization.jsonObject(with: raised.stdoutData) as? [Any])?.count, Set(tokens).count)
        let outcomes = try await entries(after: before).map { $0.split(separator: "|").last.map(String.init) ?? "" }
        XCTAssertEqual(outcomes, ["refused: over row cap (\(Set(tokens).count) tokens asked, cap 2)", "ok"])
    }

    // MARK: Issue 14, item 2: a release is exactly the rows its entry counted

    func testAReleaseReturnsExactlyTheRowsItsEntryCountedAndTheETLCannotAddRowsWithoutAMessageID() async throws {
        let userID = try completeRecord()["user_id"] as! String
        let token = try tokenizer().tokenize(try completeRecord()["ip"] as! String, as: .ip).token
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        do {
            try await etl.execute("INSERT INTO user_logins (user_id, masked_ip) VALUES (\(userID), \(token))")
            XCTFail("the ETL login added a login without a message id")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23514", error.description)
        }
        await etl.close()

        // A seed row (adopted from an existing table, without a message id) is released under the entry that counted
        // it; rows without a message id that appear after the request are not. Only the owner can add them, and only
        // by dropping the check first; the release must not depend on the check.
        try await execute("""
            ALTER TABLE user_logins_before_partitions DROP CONSTRAINT IF EXISTS user_logins_message_id_required;
            INSERT INTO user_logins (user_id, masked_ip) VALUES ('\(userID)', '\(token)');
            """)
        let officer = try await PostgresConnection.connect(compliance)
        let keyID = try KeyLoading.loadVaultSecretKey(path: secretKeyPath) { throw CancellationError() }.keyID.hex
        let asked = try await officer.query(
            "SELECT * FROM vault.request_unmask_user(\(userID), 'SAR-14', 'o', 'h', 100, \(keyID))")
        let counted = try XCTUnwrap(try asked.first?["row_count"].int())
        let seq = try XCTUnwrap(try asked.first?["log_seq"].int())
        try await execute("""
            INSERT INTO user_logins (user_id, masked_ip) SELECT '\(userID)', '\(token)' FROM generate_series(1, 5);
            """)
        let released = try await officer.query("SELECT * FROM vault.release_unmask_user(\(seq))")
        await officer.close()
        XCTAssertEqual(released.count, counted, "released \(released.count) rows under an entry that counted \(counted)")
        XCTAssertEqual(released.filter { $0["message_id"].isNull }.count, 1, "the seed row counted, not the later ones")
    }

    // MARK: Issue 14, item 3: no login outside compliance holds the log's lock

    func testNoLoginOutsideComplianceCanHoldTheLogsLockOrWriteFreeText() async throws {
        let token = try tokenizer().tokenize(try completeRecord()["ip"] as! String, as: .ip).token
        let before = try await logLength()
        var open: [PostgresConnection] = []
        for role in ["piivault_analyst", "piivault_etl", "piivault_auditor"] {
            let login = try await database.createLogin(memberOf: role)
            // Inside an explicit transaction, which would keep the lock until it ends: the append is rolled back.
            let held = try await PostgresConnection.connect(login)
            open.append(held)
            try await held.execute("BEGIN")
            do {
                try await held.query("CALL audit.record_denied('unmask', 'r', 'tokens', 'o', 'h', NULL)")
                XCTFail("\(role) appended inside a transaction block")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "2D000", "\(role): \(error)")
            }
            // Several statements in one query string run in one transaction: the same.
            let other = try await PostgresConnection.connect(login)
            do {
                try await other.executeScript("CALL audit.record_denied('unmask', 'r', 'tokens', 'o', 'h', NULL); SELECT 1")
                XCTFail("\(role) appended in a multi-statement transaction")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "2D000", "\(role): \(error)")
            }
            // The appending function on its own, in a transaction: refused.
            try await other.execute("BEGIN")
            do {
                try await other.query("SELECT audit.append_denied('unmask', 'r', 'tokens', 'o', 'h')")
                XCTFail("\(role) appended without the procedure")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42501", "\(role): \(error)")
            }
            try await other.execute("ROLLBACK")
            // Fixed values only: no text of the caller's choosing in action or subject.
            for (action, subject) in [("unmask", "user_id:192.0.2.1"), ("export 192.0.2.1", "tokens"),
                                      ("unmask", "tokens:192.0.2.1"), ("unmask", "message_id:x")] {
                do {
                    try await other.query("CALL audit.record_denied(\(action), 'r', \(subject), 'o', 'h', NULL)")
                    XCTFail("\(role) wrote \(action) / \(subject)")
                } catch let error as PostgresError {
                    XCTAssertEqual(error.sqlState, "22023", "\(role): \(error)")
                }
            }
            // On its own, with fixed values, the refusal is recorded and committed.
            let seq = try await other.query("CALL audit.record_denied('unmask', 'r', \("tokens:" + token), 'o', 'h', NULL)")
            XCTAssertNotNil(try seq.first?["seq"].int())
            await other.close()
        }
        let recorded = try await logLength()
        XCTAssertEqual(recorded, before + 3, "one refusal per role, nothing from the refused calls")
        // With those transactions still open, the officer's unmask goes through.
        let result = try unmask(["--reason", "while others wait", "--token", token])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains(token), result.stdout)
        for connection in open { await connection.close() }
    }

    /// A login outside compliance whose search path names `audit` (`ALTER ROLE ... SET search_path`) still has its
    /// refused attempt logged: the database checks its caller by the procedure's name with its schema, which Postgres
    /// leaves out when the path shows it, so piivault sets the path before it calls. A routine of the same name in a
    /// schema of the login's own, which could append without committing, is refused.
    func testARefusalIsLoggedWhateverTheLoginsSearchPathAndAnImpostorProcedureIsRefused() async throws {
        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let name = try XCTUnwrap(URLComponents(string: analyst)?.user)
        try await execute("ALTER ROLE \(name) SET search_path = audit, public")
        let before = try await logLength()
        let result = try unmask(["--reason", "curious", "--user-id", "someone"], login: analyst)
        XCTAssertEqual(result.status, 77, result.stderr)
        XCTAssertFalse(result.stderr.contains("could not be logged"), result.stderr)
        let logged = try await logLength()
        XCTAssertEqual(logged, before + 1, "the refusal is an entry: \(result.stderr)")

        // The impostor: the same name and arguments in the login's own schema, first on its path, no COMMIT.
        try await execute("CREATE SCHEMA mine AUTHORIZATION \(name)")
        let connection = try await PostgresConnection.connect(analyst)
        try await connection.execute("SET search_path = mine, audit")
        try await connection.execute("""
            CREATE PROCEDURE mine.record_denied(action text, reason text, subject text, os_user text,
                                                client_host text, INOUT seq bigint DEFAULT NULL)
                LANGUAGE plpgsql AS $$ BEGIN seq := audit.append_denied(action, reason, subject, os_user, client_host); END $$
            """)
        try await connection.execute("BEGIN")
        do {
            try await connection.query("CALL record_denied('unmask', 'r', 'tokens', 'o', 'h', NULL)")
            XCTFail("a procedure of the login's own appended inside its transaction")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(error)")
        }
        try await connection.execute("ROLLBACK")
        await connection.close()
        let after = try await logLength()
        XCTAssertEqual(after, logged)
    }

    func testAnUnmaskThatTimesOutOnTheLogsLockSaysWhoHoldsItAndWhatToDo() async throws {
        let token = try tokenizer().tokenize(try completeRecord()["ip"] as! String, as: .ip).token
        let other = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_compliance"))
        let pid = try await other.query("SELECT pg_backend_pid() AS pid").first!["pid"].requiredInt()
        let keyID = try KeyLoading.loadVaultSecretKey(path: secretKeyPath) { throw CancellationError() }.keyID.hex
        // The function waits 10 s for the log's lock; 1 s in this scratch database is enough to see what it says.
        let admin = try await database.connect()
        try await admin.execute(
            "ALTER FUNCTION vault.request_unmask_tokens(text[], text, text, text, integer, text) SET lock_timeout = '1s'")
        await admin.close()
        try await other.execute("BEGIN")
        try await other.query(
            "SELECT * FROM vault.request_unmask_tokens(ARRAY[\(token)], 'held open', 'o', 'h', 10, \(keyID))")
        let result = try unmask(["--reason", "blocked", "--token", token])  // waits out the lock timeout
        try await other.execute("ROLLBACK")
        await other.close()
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertEqual(result.stdout, "")
        XCTAssertTrue(result.stderr.contains("the access log is locked by pid \(pid) (login "), result.stderr)
        XCTAssertTrue(result.stderr.contains("pg_terminate_backend"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
    }

    // MARK: Issue 14, item 5: values the ETL login plants

    func testAValuePlantedByTheETLLoginIsReportedAsForgedAndAForeignKeyOnlyWithholdsItsOwnRows() async throws {
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        let sealer = try DataKeySealer(vaultPublicKey: try KeyLoading.loadVaultPublicKey(
            path: keys.appendingPathComponent("vault.pub").path))
        let plantedToken = "ip.v1." + String(repeating: "7", count: 64)
        let plantedValue = "203.0.113.66"
        let dataKey = try await etl.query("""
            INSERT INTO vault.data_keys (key_id, sealed_key)
            VALUES (\(sealer.sealedDataKey.keyID.hex), decode(\(hex(sealer.sealedDataKey.sealed)), 'hex')) RETURNING id
            """).first!["id"].requiredInt()
        try await etl.execute("""
            INSERT INTO vault.secrets (token, field, data_key_id, sealed)
            VALUES (\(plantedToken), 'ip', \(dataKey), decode(\(hex(try sealer.seal(plantedValue, token: plantedToken))), 'hex'))
            """)
        try await etl.execute("""
            INSERT INTO user_logins (user_id, device_type, masked_ip, message_id) VALUES ('planted-user', 'ios', \(plantedToken), 'planted-1')
            """)
        // A data key under a key id no vault has, holding a value for a row added to a real user.
        let record = try completeRecord()
        let userID = record["user_id"] as! String
        let foreignToken = "ip.v1." + String(repeating: "8", count: 64)
        let foreignKey = try await etl.query("""
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('ffffffffffffffff', '\\x00') RETURNING id
            """).first!["id"].requiredInt()
        try await etl.execute("""
            INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES (\(foreignToken), 'ip', \(foreignKey), '\\x00');
            """)
        try await etl.execute("""
            INSERT INTO user_logins (user_id, device_type, masked_ip, message_id) VALUES (\(userID), 'ios', \(foreignToken), 'planted-2')
            """)
        // Nor can the ETL login then record another key for version 1, under which unmask would take the planted value
        // for one tokenized with the wrong key instead of a forged one (migration 0031); claiming the version for
        // another key returns the accepted one and records nothing.
        do {
            try await etl.execute("INSERT INTO vault.token_keys (version, key_id, accepted) VALUES (1, 'ffffffffffffffff', false)")
            XCTFail("the ETL login recorded another token key")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(error)")
        }
        let claimed = try await etl.query("SELECT vault.claim_token_key(1, 'ffffffffffffffff') AS k").first?["k"].string()
        XCTAssertEqual(claimed, try tokenizer().keyID.description)
        await etl.close()
        let before = try await logLength()

        let forged = try unmask(["--reason", "SAR-forged", "--user-id", "planted-user"])
        XCTAssertEqual(forged.status, 65, forged.stderr)
        XCTAssertFalse(forged.stdout.contains(plantedValue), forged.stdout)
        XCTAssertTrue(forged.stdout.contains("(withheld)"), forged.stdout)
        XCTAssertTrue(forged.stderr.contains("1 values are forged"), forged.stderr)
        XCTAssertTrue(forged.stderr.contains(plantedToken), forged.stderr)
        let byToken = try unmask(["--reason", "SAR-forged-2", "--token", plantedToken])
        XCTAssertEqual(byToken.status, 65, byToken.stderr)
        XCTAssertEqual(byToken.stdout, "")

        // The real user's own rows are printed; the row sealed to an unknown key is withheld and named.
        let mixed = try unmask(["--reason", "SAR-mixed", "--user-id", userID, "--format", "json"])
        XCTAssertEqual(mixed.status, 77, mixed.stderr)
        let logins = try XCTUnwrap(try JSONSerialization.jsonObject(with: mixed.stdoutData) as? [[String: Any]])
        let ip = try tokenizer().tokenize(record["ip"] as! String, as: .ip).canonical
        XCTAssertTrue(logins.contains { $0["ip"] as? String == ip }, mixed.stdout)
        XCTAssertEqual(logins.filter { $0["ip_withheld"] as? Bool == true }.map { $0["masked_ip"] as? String }, [foreignToken])
        XCTAssertTrue(mixed.stderr.contains("sealed to another vault key (ffffffffffffffff): \(foreignToken)"), mixed.stderr)

        let outcomes = try await entries(after: before).map { $0.split(separator: "|").suffix(2).joined(separator: "|") }
        let logins2 = records.filter { ($0["user_id"] as? String) == userID }.count + 1
        XCTAssertEqual(outcomes, [
            "1|ok", "0|refused: forged value (\(plantedToken) not the value of its token)",
            "1|ok", "0|refused: forged value (\(plantedToken) not the value of its token)",
            "\(logins2)|ok", "0|refused: vault key mismatch (1 values sealed to ffffffffffffffff, key file is \(try KeyLoading.loadVaultSecretKey(path: secretKeyPath) { throw CancellationError() }.keyID))",
        ])

        // Without the token key the check cannot be made: refused unless skipped on purpose.
        let noKey = try unmask(["--reason", "r", "--user-id", "planted-user"], tokenKey: .some(nil))
        XCTAssertEqual(noKey.status, 64, noKey.stderr)
        XCTAssertTrue(noKey.stderr.contains("--token-key is required"), noKey.stderr)
        let unchecked = try unmask(["--reason", "r", "--user-id", "planted-user", "--no-verify-tokens"], tokenKey: .some(nil))
        XCTAssertEqual(unchecked.status, 0, unchecked.stderr)
        XCTAssertTrue(unchecked.stdout.contains(plantedValue), "unchecked, the planted value passes as genuine")
    }

    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    // MARK: Issue 12: lookup by value

    func testLookupFindsTheLoginsOfAValueAndLogsTokensOnly() async throws {
        let record = try completeRecord()
        let userID = record["user_id"] as! String
        let tokenizer = try tokenizer()
        let ip = try tokenizer.tokenize(record["ip"] as! String, as: .ip)
        let device = try tokenizer.tokenize(record["device_id"] as! String, as: .deviceID)
        func lookup(_ arguments: [String], login: String? = nil) throws -> ProcessResult {
            try runPiivault(["lookup", "--database-url", login ?? compliance!, "--token-key", tokenKeyPath] + arguments,
                            environment: ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil])
        }
        let before = try await logLength()
        let expectedRows = records.filter { ($0["ip"] as? String).map { (try? tokenizer.tokenize($0, as: .ip).token) == ip.token } ?? false }.count

        // Written non-canonically (IPv4-mapped IPv6), as a data subject might give it.
        let byIP = try lookup(["--reason", "SAR-12-1", "--ip", "::ffff:" + ip.canonical, "--format", "json"])
        XCTAssertEqual(byIP.status, 0, byIP.stderr)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: byIP.stdoutData) as? [[String: Any]])
        XCTAssertEqual(rows.count, expectedRows)
        XCTAssertTrue(rows.contains { $0["user_id"] as? String == userID && $0["masked_ip"] as? String == ip.token && $0["value"] as? Int == 1 },
                      byIP.stdout)
        // Typed as unmask types them: app_version a number (the sample's are all set), not a string.
        for row in rows {
            XCTAssertNotNil(row["app_version"] as? Int, "app_version as a number: \(byIP.stdout)")
            XCTAssertNil(row["app_version"] as? String, byIP.stdout)
        }

        let byDevice = try lookup(["--reason", "SAR-12-2", "--device-id", record["device_id"] as! String])
        XCTAssertEqual(byDevice.status, 0, byDevice.stderr)
        XCTAssertTrue(byDevice.stdout.contains(userID) && byDevice.stdout.contains(device.token), byDevice.stdout)

        let unknown = try lookup(["--reason", "SAR-12-3", "--ip", "198.51.100.250"])
        XCTAssertEqual(unknown.status, 1, unknown.stderr)
        XCTAssertEqual(unknown.stdout, "")
        XCTAssertFalse(unknown.stderr.contains("198.51.100.250"), unknown.stderr)

        let invalid = try lookup(["--reason", "SAR-12-4", "--ip", "999.1.1.1"])
        XCTAssertEqual(invalid.status, 64, invalid.stderr)
        XCTAssertFalse(invalid.stderr.contains("999.1.1.1"), "an invalid value is not echoed: \(invalid.stderr)")

        // Another vault's token key of the same version: its tokens match no row. Refused (as etl and unmask refuse
        // it), not answered "no logins involve these values"; nothing logged, as nothing was looked up.
        let otherKeys = keys.appendingPathComponent("other-vault")
        XCTAssertEqual(try runPiivault(["keygen", "--dir", otherKeys.path]).status, 0)
        let wrongKey = try runPiivault(["lookup", "--database-url", compliance!, "--token-key",
                                        otherKeys.appendingPathComponent("token.key").path, "--reason", "SAR-12-5",
                                        "--ip", ip.canonical],
                                       environment: ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(wrongKey.status, 77, wrongKey.stderr)
        XCTAssertTrue(wrongKey.stderr.contains("this vault's version 1 tokens were made with key id"), wrongKey.stderr)

        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let refused = try lookup(["--reason", "curious", "--ip", ip.canonical], login: analyst)
        XCTAssertEqual(refused.status, 77, refused.stderr)
        XCTAssertEqual(refused.stdout, "")

        let logged = try await entries(after: before)
        let officer = user(of: compliance)
        XCTAssertEqual(logged, [
            "\(officer)|officer-on-duty|lookup|SAR-12-1|tokens:\(ip.token)|\(expectedRows)|ok",
            "\(officer)|officer-on-duty|lookup|SAR-12-2|tokens:\(device.token)|\(records.filter { ($0["device_id"] as? String) == (record["device_id"] as! String) }.count)|ok",
            "\(officer)|officer-on-duty|lookup|SAR-12-3|tokens:\(try tokenizer.tokenize("198.51.100.250", as: .ip).token)|0|not found: no logins with these tokens",
            "\(user(of: analyst))|officer-on-duty|lookup|curious|tokens:\(ip.token)|0|refused: not permitted (login is not a member of piivault_compliance)",
        ])
        let everything = [byIP, byDevice, unknown, invalid, wrongKey, refused].map { $0.stdout + $0.stderr }.joined()
            + logged.joined()
        assertNoPlaintext(everything, "lookup's output and log")
        XCTAssertFalse(everything.contains("198.51.100.250"))
    }

    // MARK: Acceptance 5: concurrency, with the real binary

    func testEightProcessesUnmaskingAtOnceLeaveOneUnbrokenChain() async throws {
        let tokenizer = try tokenizer()
        let tokens = try records.compactMap { $0["ip"] as? String }.prefix(8).map { try tokenizer.tokenize($0, as: .ip).token }
        let before = try await logLength()
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("unmask-8-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: output) }
        // Eight processes started together, each unmasking three times in a row.
        var processes: [Process] = []
        for (index, token) in tokens.enumerated() {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            let binary = try piivaultBinary()
            process.arguments = ["-c", """
                for i in 1 2 3; do "$0" unmask --database-url "$1" --key-file "$2" --token-key "$5" --reason "parallel $3" --token "$4" || exit 1; done
                """, binary, compliance, secretKeyPath, String(index), token, tokenKeyPath]
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = try FileHandle(forWritingTo: {
                let url = output.appendingPathComponent("\(index).err")
                FileManager.default.createFile(atPath: url.path, contents: nil)
                return url
            }())
            processes.append(process)
        }
        for process in processes { try process.run() }
        for process in processes { process.waitUntilExit() }
        for (index, process) in processes.enumerated() {
            let stderr = (try? String(contentsOf: output.appendingPathComponent("\(index).err"), encoding: .utf8)) ?? ""
            XCTAssertEqual(process.terminationStatus, 0, "process \(index): \(stderr)")
        }
        let after = try await logLength()
        XCTAssertEqual(after, before + 24)
        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let verify = try runPiivault(["audit", "verify", "--database-url", auditor])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        XCTAssertTrue(verify.stdout.hasPrefix("access log intact: \(after) entries"), verify.stdout)
    }

    // MARK: Scale: 10,000 tokens in one call (the timing is `make bench`'s)

    func testTenThousandTokensInOneCall() async throws {
        // 5,000 more messages with distinct values: 10,000 more tokens.
        let file = keys.appendingPathComponent("bulk.ndjson")
        var text = ""
        for i in 0..<5000 {
            text += #"{"user_id": "bulk-\#(i)", "app_version": "1.0", "device_type": "ios", "ip": "10.9.\#(i / 256).\#(i % 256)", "locale": null, "device_id": "bulk-device-\#(i)"}"# + "\n"
        }
        try text.write(to: file, atomically: true, encoding: .utf8)
        try load(file)
        let tokens = try await query("""
            SELECT token FROM vault.secrets WHERE token IN (SELECT masked_ip FROM user_logins WHERE user_id LIKE 'bulk-%'
                                                         UNION SELECT masked_device_id FROM user_logins WHERE user_id LIKE 'bulk-%')
            """).map { try $0["token"].requiredString() }
        XCTAssertEqual(tokens.count, 10_000)
        let started = Date()
        let result = try runPiivault(
            ["unmask", "--database-url", compliance, "--key-file", secretKeyPath, "--token-key", tokenKeyPath,
             "--reason", "bulk export",
             "--max-rows", "10000", "--token-file", "-", "--format", "csv"],
            input: Data((tokens.joined(separator: "\n") + "\n").utf8))
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = result.stdout.split(separator: "\r\n")
        XCTAssertEqual(rows.count, 10_001, "a header and 10,000 values")
        XCTAssertTrue(rows.contains("\(try tokenizer().tokenize("10.9.19.135", as: .ip).token),ip,10.9.19.135"))
        print("unmask of 10,000 tokens (debug build, whole process): \(String(format: "%.2f", seconds)) s")
        let logged = try await query("SELECT row_count, outcome FROM audit.access_log ORDER BY seq DESC LIMIT 1")
        XCTAssertEqual(try logged.first?["row_count"].int(), 10_000)
        XCTAssertEqual(try logged.first?["outcome"].string(), "ok")
    }

    // MARK: Issue 12: forget

    private func forget(_ arguments: [String], login: String? = nil) throws -> ProcessResult {
        try runPiivault(["forget", "--database-url", login ?? compliance!, "--token-key", tokenKeyPath] + arguments,
                        environment: ["USER": "officer-on-duty", "PIIVAULT_TOKEN_KEY": nil])
    }

    /// Acceptance 2, 3, 7: two users share one ip, each has its own device id. Forgetting the first deletes its rows
    /// and its device id's sealed value, keeps the shared ip's (the second user still unmasks it), writes one forget
    /// entry naming a keyed hash, keeps the tombstone; a dry run, a refused analyst and a failing append change nothing.
    func testForgetErasesOneUserKeepsSharedValuesAndFailsClosed() async throws {
        let template = try completeRecord()
        let sharedIP = "203.0.113.77", deviceA = "forget-device-aaaa-0001", deviceB = "forget-device-bbbb-0002"
        func message(_ user: String, _ device: String, _ id: String) throws -> String {
            var record = template
            record["user_id"] = user
            record["ip"] = sharedIP
            record["device_id"] = device
            if record["message_id"] != nil { record["message_id"] = id }
            return String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)
        }
        let input = keys.appendingPathComponent("forget.ndjson")
        try ([try message("forget-user-a", deviceA, "m-forget-a"), try message("forget-user-b", deviceB, "m-forget-b")]
            .joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        try load(input)
        let tokenizer = try tokenizer()
        let ipToken = try tokenizer.tokenize(sharedIP, as: .ip).token
        let tokenA = try tokenizer.tokenize(deviceA, as: .deviceID).token
        let tokenB = try tokenizer.tokenize(deviceB, as: .deviceID).token
        func count(_ sql: String) async throws -> Int {
            try await query(PostgresQuery(unsafeSQL: sql)).first!["n"].requiredInt()
        }
        func state() async throws -> [Int] {
            [try await count("SELECT count(*) AS n FROM user_logins WHERE user_id = 'forget-user-a'"),
             try await count("SELECT count(*) AS n FROM user_logins WHERE user_id = 'forget-user-b'"),
             try await count("SELECT count(*) AS n FROM vault.secrets WHERE token = '\(ipToken)'"),
             try await count("SELECT count(*) AS n FROM vault.secrets WHERE token = '\(tokenA)'"),
             try await count("SELECT count(*) AS n FROM vault.secrets WHERE token = '\(tokenB)'"),
             try await count("SELECT count(*) AS n FROM vault.tombstones")]
        }
        let loaded = try await state()
        XCTAssertEqual(loaded, [1, 1, 1, 1, 1, 0])
        let before = try await logLength()
        var outputs: [ProcessResult] = []

        let dry = try forget(["--reason", "ERASE-1", "--user-id", "forget-user-a", "--dry-run"])
        outputs.append(dry)
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("would delete 1 login rows") && dry.stdout.contains("would delete 1 sealed values")
                      && dry.stdout.contains("kept 1 sealed values"), dry.stdout)
        let afterDry = try await state()
        XCTAssertEqual(afterDry, loaded, "a dry run changes nothing")
        let logAfterDry = try await logLength()
        XCTAssertEqual(logAfterDry, before, "a dry run logs nothing")

        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let refused = try forget(["--reason", "curious", "--user-id", "forget-user-a"], login: analyst)
        outputs.append(refused)
        XCTAssertEqual(refused.status, 77, refused.stderr)
        let afterRefusal = try await state()
        XCTAssertEqual(afterRefusal, loaded)

        try await execute("""
            CREATE FUNCTION public.refuse_append() RETURNS trigger LANGUAGE plpgsql AS
                $$ BEGIN RAISE EXCEPTION 'access log is read-only for this test'; END $$;
            CREATE TRIGGER refuse_append BEFORE INSERT ON audit.access_log
                FOR EACH ROW EXECUTE FUNCTION public.refuse_append();
            """)
        let appendFails = try forget(["--reason", "ERASE-1", "--user-id", "forget-user-a"])
        outputs.append(appendFails)
        XCTAssertEqual(appendFails.status, 1, appendFails.stderr)
        XCTAssertTrue(appendFails.stderr.contains("read-only for this test"), appendFails.stderr)
        let afterFailure = try await state()
        XCTAssertEqual(afterFailure, loaded, "no entry, no deletion")
        try await execute("DROP TRIGGER refuse_append ON audit.access_log")

        let done = try forget(["--reason", "ERASE-1", "--user-id", "forget-user-a"])
        outputs.append(done)
        XCTAssertEqual(done.status, 0, done.stderr)
        XCTAssertTrue(done.stdout.contains("deleted 1 login rows") && done.stdout.contains("deleted 1 sealed values"), done.stdout)
        let afterForget = try await state()
        XCTAssertEqual(afterForget, [0, 1, 1, 0, 1, 1], "user a's rows and device id gone; the shared ip and user b stay")

        let subject = TombstoneHasher(key: try KeyLoading.loadTokenKey(path: tokenKeyPath)).hash(userID: "forget-user-a")
        let tombstone = try await count("SELECT count(*) AS n FROM vault.tombstones WHERE subject_hash = '\(subject)'")
        XCTAssertEqual(tombstone, 1)
        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(user(of: analyst))|officer-on-duty|forget|curious|user_id|0|refused: not permitted (login is not a member of piivault_compliance)",
            "\(user(of: compliance))|officer-on-duty|forget|ERASE-1|user_hash:\(subject)|1|ok: 1 rows deleted, 1 values deleted, 1 values kept (shared with other users)",
        ])
        XCTAssertFalse(logged.joined().contains("forget-user-a"), "the log names the hash, not the user id")

        // The second user still unmasks the shared ip; the first has nothing left.
        let second = try unmask(["--reason", "ERASE-1 check", "--user-id", "forget-user-b", "--format", "json"])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains(sharedIP) && second.stdout.contains(deviceB), "user b unmasks both values")
        let first = try unmask(["--reason", "ERASE-1 check", "--user-id", "forget-user-a"])
        XCTAssertEqual(first.status, 1, first.stderr)
        XCTAssertFalse(first.stdout.contains(deviceA) || first.stdout.contains(sharedIP))

        // Acceptance 7: no ip or device id in forget's outputs, the log, or the database (a pg_dump).
        let everything = outputs.map { $0.stdout + $0.stderr }.joined() + logged.joined()
        for value in [sharedIP, deviceA, deviceB] + originals {
            XCTAssertFalse(everything.contains(value), "forget's outputs and log hold a value")
        }
        let dump = try runProcess("pg_dump", ["--data-only", "--dbname", database.url])
        XCTAssertEqual(dump.status, 0, dump.stderr)
        XCTAssertGreaterThan(dump.stdout.count, 1000)
        for value in [sharedIP, deviceA, deviceB] {
            XCTAssertFalse(dump.stdout.contains(value), "pg_dump holds a plaintext value")
            XCTAssertFalse(dump.stdout.contains(Data(value.utf8).map { String(format: "%02x", $0) }.joined()),
                           "pg_dump holds a value in hex")
        }
        assertNoPlaintext(dump.stdout, "pg_dump after forget")
    }
}

extension UnmaskTests {
    /// Issue 24, defect 6: values that do not match their tokens because of a token key mix-up are told apart from
    /// forged ones. A user loaded (before token keys were recorded) with a second version-1 key is "loaded with the
    /// wrong token key", not forged; unmask given that second key is told which key the vault's tokens were made with.
    func testATokenKeyMixUpIsNotCalledAForgery() async throws {
        let other = FileManager.default.temporaryDirectory.appendingPathComponent("unmask-other-\(ScratchDatabase.randomHex(4))")
        defer { try? FileManager.default.removeItem(at: other) }
        XCTAssertEqual(try runPiivault(["keygen", "--dir", other.path]).status, 0)
        let otherTokenKey = other.appendingPathComponent("token.key").path
        let owner = try await database.connect()
        let accepted = try await owner.query("SELECT key_id FROM vault.token_keys WHERE version = 1 AND accepted")
            .map { try $0["key_id"].requiredString() }
        XCTAssertEqual(accepted.count, 1)
        // What a run with the other key did before the vault recorded token keys: let it load, then record it as an
        // earlier run's key that the vault does not accept.
        try await owner.execute("DELETE FROM vault.token_keys WHERE version = 1")
        let input = other.appendingPathComponent("mixup.ndjson")
        try (#"{"user_id": "mixed-up-user", "device_type": "ios", "ip": "198.51.100.77", "device_id": "dev-mixup"}"# + "\n")
            .write(to: input, atomically: true, encoding: .utf8)
        let etl = try runPiivault(["etl", "--from-file", input.path, "--database-url", database.url,
                                   "--token-key", otherTokenKey,
                                   "--vault-public-key", keys.appendingPathComponent("vault.pub").path])
        XCTAssertEqual(etl.status, 0, etl.stderr)
        try await owner.execute("UPDATE vault.token_keys SET accepted = false WHERE version = 1")
        try await owner.execute("INSERT INTO vault.token_keys (version, key_id, accepted) VALUES (1, \(accepted[0]), true)")
        await owner.close()

        let mixedUp = try unmask(["--reason", "SAR-mixup", "--user-id", "mixed-up-user"])
        XCTAssertEqual(mixedUp.status, 65, mixedUp.stderr)
        XCTAssertFalse(mixedUp.stdout.contains("198.51.100.77"), mixedUp.stdout)
        XCTAssertTrue(mixedUp.stderr.contains("loaded with the wrong token key"), mixedUp.stderr)
        XCTAssertFalse(mixedUp.stderr.contains("are forged"), mixedUp.stderr)

        let user = try XCTUnwrap(records.first?["user_id"] as? String)
        let wrongKey = try unmask(["--reason", "SAR-wrong-key", "--user-id", user], tokenKey: .some(otherTokenKey))
        XCTAssertEqual(wrongKey.status, 77, wrongKey.stderr)
        XCTAssertTrue(wrongKey.stderr.contains("were made with token key \(accepted[0])"), wrongKey.stderr)
        XCTAssertFalse(wrongKey.stderr.contains("are forged"), wrongKey.stderr)
    }
}
