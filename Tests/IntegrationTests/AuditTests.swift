import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// The access log end to end: the in-database chain, `piivault audit log|verify|checkpoint` run as an auditor, the
/// independent Python verifier, concurrent appends, and who may call the reading functions.
///
/// Tampering is done as the table owner with the append-only trigger disabled, which is what a database superuser
/// can do; verify must name the damaged entry.
final class AuditTests: XCTestCase {
    var database: ScratchDatabase!
    var auditorURL: String!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "audit")
        let owner = try await database.connect()
        // 50 entries with awkward text (commas, quotes, a newline, non-ASCII) so the serialisation is exercised.
        try await owner.executeScript("""
            DO $$
            BEGIN
                FOR i IN 1..50 LOOP
                    PERFORM audit.append_entry(
                        CASE WHEN i % 3 = 0 THEN 'lookup' ELSE 'unmask' END,
                        format('case %s, "SAR" – Fall Nr. ü%s', i, CASE WHEN i % 10 = 0 THEN E'\\nsecond line' ELSE '' END),
                        format('user_id:u%s', i % 7), i % 5, 'ok', 'officer' || (i % 2), 'host-' || i);
                END LOOP;
            END
            $$;
            """)
        await owner.close()
        auditorURL = try await database.createLogin(memberOf: "piivault_auditor")
    }

    override func tearDown() async throws {
        await database?.drop()
    }

    // MARK: - Helpers

    private func verify(anchor: String? = nil) throws -> ProcessResult {
        try runPiivault(["audit", "verify", "--database-url", auditorURL] + (anchor.map { ["--anchor", $0] } ?? []))
    }

    private func checkpoint() throws -> String {
        let result = try runPiivault(["audit", "checkpoint", "--database-url", auditorURL])
        XCTAssertEqual(result.status, 0, result.stderr)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Changes entry 30's reason and recomputes every hash from there on, exactly as append_entry does: a rewrite only
    /// an anchor or a signed checkpoint can catch.
    func rewriteChainConsistently() async throws {
        try await tamper("""
            UPDATE audit.access_log SET reason = 'routine check' WHERE seq = 30;
            DO $$
            DECLARE
                entry audit.access_log;
                previous bytea;
            BEGIN
                SELECT hash INTO previous FROM audit.access_log WHERE seq = 29;
                FOR entry IN SELECT * FROM audit.access_log WHERE seq >= 30 ORDER BY seq LOOP
                    UPDATE audit.access_log
                       SET prev_hash = previous,
                           hash = sha256(previous || audit.entry_bytes(entry.seq, entry.at, entry.db_user,
                               entry.os_user, entry.client_host, entry.action, entry.reason, entry.subject,
                               entry.row_count, entry.outcome))
                     WHERE seq = entry.seq
                    RETURNING hash INTO previous;
                END LOOP;
            END
            $$
            """)
    }

    /// Runs `sql` as the table owner with the append-only trigger switched off, as a superuser could.
    func tamper(_ sql: String) async throws {
        let owner = try await database.connect()
        try await owner.executeScript("""
            ALTER TABLE audit.access_log DISABLE TRIGGER USER;
            \(sql);
            ALTER TABLE audit.access_log ENABLE TRIGGER USER;
            """)
        await owner.close()
    }

    /// The independent verifier's verdict (`intact N SEQ:HASH` or `broken N KIND`), fed the rows as JSON with `at` as
    /// Postgres prints a timestamptz, so it re-derives the canonical time format itself.
    private func crosscheck(anchor: String? = nil) async throws -> String {
        let result = try await independentAccessLogCheck(database, anchor: anchor)
        XCTAssertTrue(result.status == 0 || result.status == 1, "crosscheck failed: \(result.stderr)")
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func assertBroken(
        _ result: ProcessResult, entry: Int, kind: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(result.status, 1, result.stdout + result.stderr, file: file, line: line)
        XCTAssertTrue(result.stdout.hasPrefix("access log broken at entry \(entry): \(kind): "),
                      "\(result.stdout)\(result.stderr)", file: file, line: line)
    }

    // MARK: - Verify

    func testAnUntouchedLogVerifiesAndAgreesWithTheIndependentVerifier() async throws {
        let result = try verify()
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let head = try checkpoint()
        XCTAssertNotNil(head.range(of: #"^50:[0-9a-f]{64}$"#, options: .regularExpression), head)
        XCTAssertEqual(result.stdout, "access log intact: 50 entries, head \(head)\n")
        let independent = try await crosscheck()
        XCTAssertEqual(independent, "intact 50 \(head)")
        let anchored = try verify(anchor: head)
        XCTAssertEqual(anchored.status, 0, anchored.stdout + anchored.stderr)
        // An anchor taken earlier still matches once the log has grown.
        let owner = try await database.connect()
        try await owner.execute("SELECT audit.append_entry('unmask', 'case 51', 'user_id:u1', 1, 'ok', 'o', 'h')")
        await owner.close()
        XCTAssertEqual(try verify(anchor: head).status, 0)
    }

    func testAChangedReasonIsReportedAsModified() async throws {
        try await tamper("UPDATE audit.access_log SET reason = 'routine check' WHERE seq = 17")
        assertBroken(try verify(), entry: 17, kind: "modified")
        let independent = try await crosscheck()
        XCTAssertEqual(independent, "broken 17 modified")
        let checkpoint = try runPiivault(["audit", "checkpoint", "--database-url", auditorURL])
        XCTAssertEqual(checkpoint.status, 1, "a broken log is not anchored")
        XCTAssertEqual(checkpoint.stdout, "")
        XCTAssertTrue(checkpoint.stderr.contains("entry 17: modified") && checkpoint.stderr.contains("no checkpoint taken"),
                      checkpoint.stderr)
        XCTAssertFalse(checkpoint.stderr.contains("routine check"), "errors quote no logged text")
    }

    /// A time moved to the same instant BC printed as the same YYYY-MM-DD text, so the entry kept its hash (and every
    /// anchor) while it left each `--since` view. It is now modified, for piivault and the independent verifier alike.
    func testATimeMovedToTheSameInstantBCIsReportedAsModified() async throws {
        let anchor = try checkpoint()
        try await tamper("UPDATE audit.access_log SET at = (to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00 BC')::timestamptz WHERE seq = 12")
        assertBroken(try verify(), entry: 12, kind: "modified")
        assertBroken(try verify(anchor: anchor), entry: 12, kind: "modified")
        let independent = try await crosscheck()
        XCTAssertEqual(independent, "broken 12 modified")
        try await tamper("UPDATE audit.access_log SET at = 'infinity' WHERE seq = 12")
        assertBroken(try verify(), entry: 12, kind: "modified")
    }

    func testADeletedEntryIsReportedAsMissing() async throws {
        try await tamper("DELETE FROM audit.access_log WHERE seq = 23")
        assertBroken(try verify(), entry: 23, kind: "missing")
        let independent = try await crosscheck()
        XCTAssertEqual(independent, "broken 23 missing")
    }

    func testSwappedEntriesAreReportedAsReordered() async throws {
        try await tamper("""
            UPDATE audit.access_log SET seq = -10 WHERE seq = 10;
            UPDATE audit.access_log SET seq = 10 WHERE seq = 20;
            UPDATE audit.access_log SET seq = 20 WHERE seq = -10
            """)
        let result = try verify()
        assertBroken(result, entry: 10, kind: "reordered")
        XCTAssertTrue(result.stdout.contains("chained after entry 19"), result.stdout)
        XCTAssertTrue(result.stdout.contains("stored as entry 20"), result.stdout)
        let independent = try await crosscheck()
        XCTAssertEqual(independent, "broken 10 reordered")
    }

    func testATruncatedTailIsCaughtOnlyWithAnAnchor() async throws {
        let anchor = try checkpoint()
        try await tamper("DELETE FROM audit.access_log WHERE seq > 45")
        let unanchored = try verify()
        XCTAssertEqual(unanchored.status, 0, "without an anchor a cut tail looks like a shorter log")
        XCTAssertTrue(unanchored.stdout.hasPrefix("access log intact: 45 entries, head 45:"), unanchored.stdout)
        assertBroken(try verify(anchor: anchor), entry: 46, kind: "rewritten")
        let independent = try await crosscheck(anchor: anchor)
        XCTAssertEqual(independent, "broken 46 rewritten")
    }

    func testAConsistentlyRewrittenChainIsCaughtOnlyWithAnAnchor() async throws {
        let anchor = try checkpoint()
        let owner = try await database.connect()
        let before = try await owner.query("SELECT encode(hash, 'hex') AS hash FROM audit.access_log WHERE seq = 29")
        await owner.close()
        let anchorBeforeTheChange = "29:" + (try XCTUnwrap(try before.first?["hash"].string()))
        // Change entry 30 and recompute every hash from there on, exactly as append_entry does.
        try await rewriteChainConsistently()
        let unanchored = try verify()
        XCTAssertEqual(unanchored.status, 0, "a consistent rewrite verifies without an anchor: " + unanchored.stdout)
        XCTAssertNotEqual(try checkpoint(), anchor)
        assertBroken(try verify(anchor: anchor), entry: 50, kind: "rewritten")
        let independent = try await crosscheck(anchor: anchor)
        XCTAssertEqual(independent, "broken 50 rewritten")
        // An anchor from before the changed entry still matches: the rewrite started after it.
        XCTAssertEqual(try verify(anchor: anchorBeforeTheChange).status, 0)
    }

    func testAMalformedAnchorIsAUsageError() throws {
        let result = try verify(anchor: "50:nothex")
        XCTAssertEqual(result.status, 64, result.stderr)
    }

    // MARK: - Concurrency

    func testConcurrentAppendsLeaveOneUnbrokenChain() async throws {
        var logins: [String] = []
        for _ in 0..<8 { logins.append(try await database.createLogin(memberOf: "piivault_compliance")) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, login) in logins.enumerated() {
                group.addTask {
                    let connection = try await PostgresConnection.connect(login)
                    for call in 0..<20 {
                        let token = "ip.v1." + String(format: "%064x", index * 100 + call)
                        try await connection.query("""
                            SELECT * FROM vault.request_unmask_tokens(ARRAY[\(token)], \("concurrency test \(index)"),
                                                                      'officer', 'host', 10, '0011223344556677')
                            """)
                    }
                    await connection.close()
                }
            }
            try await group.waitForAll()
        }
        let result = try verify()
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("access log intact: 210 entries, head 210:"), result.stdout)
        let owner = try await database.connect()
        let shape = try await owner.query("SELECT min(seq) AS lo, max(seq) AS hi, count(DISTINCT seq) AS n FROM audit.access_log")
        await owner.close()
        XCTAssertEqual(try shape.first?["lo"].int(), 1)
        XCTAssertEqual(try shape.first?["hi"].int(), 210)
        XCTAssertEqual(try shape.first?["n"].int(), 210)
        let independent = try await crosscheck()
        XCTAssertTrue(independent.hasPrefix("intact 210 210:"), independent)
    }

    // MARK: - Reading the log

    func testTheAuditorListsAndFiltersTheLog() throws {
        let table = try runPiivault(["audit", "log", "--database-url", auditorURL])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertEqual(table.stdout.split(separator: "\n").count, 51, "a header and 50 entries")
        XCTAssertTrue(table.stdout.contains("\\u{a}second line"), "newlines in a reason are shown escaped")

        let json = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "json",
                                    "--action", "lookup", "--actor", "officer1"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: json.stdoutData) as? [[String: Any]])
        // lookup: seq divisible by 3; officer1: odd seq -> 3, 9, 15, ..., 45
        XCTAssertEqual(entries.compactMap { $0["seq"] as? Int }, Array(stride(from: 3, through: 45, by: 6)))
        XCTAssertEqual((entries.first?["hash"] as? String)?.count, 64)

        let csv = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "csv",
                                   "--since", "2000-01-01", "--until", "2000-01-02"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertEqual(csv.stdout, "seq,at,db_user,os_user,client_host,action,reason,subject,row_count,outcome,prev_hash,hash\r\n")

        let badTime = try runPiivault(["audit", "log", "--database-url", auditorURL, "--since", "yesterdayish"])
        XCTAssertEqual(badTime.status, 64, badTime.stderr)
        XCTAssertTrue(badTime.stderr.contains("--since is not a time"), badTime.stderr)
    }

    func testAnAnalystCannotReadOrVerifyTheLog() async throws {
        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        for subcommand in ["log", "verify", "checkpoint"] {
            let result = try runPiivault(["audit", subcommand, "--database-url", analyst])
            XCTAssertEqual(result.status, 77, "\(subcommand): \(result.stdout)\(result.stderr)")
            XCTAssertTrue(result.stderr.contains("piivault_"), result.stderr)
        }
    }

    // MARK: - The actions

    /// The actions are the rows of audit.actions, read by the gate functions: no entry names another action, a
    /// refused login records only the subjects its action's row lists, and a row added is an action at once.
    func testTheActionsAreTheRowsOfAuditActions() async throws {
        let owner = try await database.connect()
        defer { Task { await owner.close() } }
        let actions = try await owner.query("SELECT string_agg(action, ',' ORDER BY action) FROM audit.actions")
        XCTAssertEqual(try actions.first?[0].string(),
                       "approve,deny,forget,lookup,policy,request,retention,retokenize,rewrap,unmask")
        do {
            try await owner.execute("SELECT audit.append_entry('export', 'case', 'user_id:u1', 0, 'ok', 'o', 'h')")
            XCTFail("an entry named an action that is not a row of audit.actions")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "22023", "\(error)")
        }

        let analyst = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_analyst"))
        defer { Task { await analyst.close() } }
        let token = "ip.v1." + String(repeating: "0", count: 64)
        for (action, subject) in [("export", "tokens"), ("forget", "tokens"), ("rewrap", "tokens:" + token),
                                  ("retention", "user_id"), ("unmask", "cutoff")] {
            do {
                try await analyst.query("CALL audit.record_denied(\(action), 'r', \(subject), 'o', 'h', NULL)")
                XCTFail("a refused \(action) recorded subject \(subject)")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "22023", "\(action) / \(subject): \(error)")
            }
        }
        for (action, subject) in [("unmask", "tokens:" + token), ("lookup", "tokens"), ("forget", "message_id"),
                                  ("retention", "cutoff"), ("rewrap", "vault_key"), ("retokenize", "tokens")] {
            let seq = try await analyst.query("CALL audit.record_denied(\(action), 'r', \(subject), 'o', 'h', NULL)")
            XCTAssertNotNil(try seq.first?["seq"].int(), "\(action) / \(subject)")
        }

        try await owner.execute("INSERT INTO audit.actions (action, denied_subjects, denied_tokens) VALUES ('export', '{user_id}', false)")
        let seq = try await analyst.query("CALL audit.record_denied('export', 'r', 'user_id', 'o', 'h', NULL)")
        XCTAssertNotNil(try seq.first?["seq"].int(), "a new row is a new action")
        let last = try await owner.query("SELECT action || ' ' || subject FROM audit.access_log ORDER BY seq DESC LIMIT 1")
        XCTAssertEqual(try last.first?[0].string(), "export user_id")
    }

    // MARK: - The reading functions

    func testOnlyComplianceMayCallTheReadingFunctions() async throws {
        let calls: [PostgresQuery] = [
            "SELECT * FROM vault.request_unmask_tokens(ARRAY['ip.v1.' || repeat('0', 64)], 'case', 'o', 'h', 10, '0011223344556677')",
            "SELECT * FROM vault.request_unmask_user('u1', 'case', 'o', 'h', 10, '0011223344556677')",
            "SELECT * FROM vault.request_unmask_quarantined('m1', 'case', 'o', 'h', '0011223344556677')",
            "SELECT audit.record_refusal('unmask', 'case', 'tokens:x', 'wrong key', 'o', 'h')",
            "SELECT * FROM vault.tokens_sealed_with(1)",
            "SELECT audit.append_entry('unmask', 'case', 'x', 0, 'ok', 'o', 'h')",
        ]
        let releases: [PostgresQuery] = [
            "SELECT * FROM vault.release_unmask_tokens(1)", "SELECT * FROM vault.release_unmask_user(1)",
            "SELECT * FROM vault.release_unmask_quarantined(1)",
        ]
        for role in ["piivault_analyst", "piivault_etl", "piivault_auditor", nil] {
            let connection = try await PostgresConnection.connect(try await database.createLogin(memberOf: role))
            for call in calls + releases {
                do {
                    try await connection.query(call)
                    XCTFail("\(role ?? "no role") may call \(call.sql)")
                } catch let error as PostgresError {
                    XCTAssertEqual(error.sqlState, "42501", "\(role ?? "no role"): \(call.sql): \(error)")
                }
            }
            await connection.close()
        }
        let compliance = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_compliance"))
        for call in calls.dropLast() { try await compliance.query(call) }
        do {
            try await compliance.query(calls.last!)
            XCTFail("compliance must not append arbitrary entries")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(error)")
        }
        await compliance.close()
        XCTAssertEqual(try verify().status, 0)
    }

    func testSealedRowsAreReleasedOnlyAfterTheirEntryIsCommittedOnceToTheLoginThatAsked() async throws {
        let (a, b, none, zz) = ("ip.v1." + String(repeating: "a", count: 64), "dev.v1." + String(repeating: "b", count: 64),
                                "ip.v1." + String(repeating: "c", count: 64), "dev.v1." + String(repeating: "d", count: 64))
        let key = "0011223344556677"
        let owner = try await database.connect()
        try await owner.executeScript("""
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('\(key)', '\\xaa');
            INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES
                ('\(a)', 'ip', 1, '\\x01'), ('\(b)', 'device_id', 1, '\\x02');
            INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, message_id)
                VALUES ('u1', 'ios', '\(a)', '\(b)', 'm1'), ('u1', 'ios', '\(a)', '\(zz)', 'm2');
            INSERT INTO vault.quarantine (message_id, reason, data_key_id, sealed_body) VALUES ('mq', 'not JSON', 1, '\\x03');
            """)
        let login = try await database.createLogin(memberOf: "piivault_compliance")
        let compliance = try await PostgresConnection.connect(login)

        // The bypass the two steps close: ask and release in one transaction, then roll back the entry.
        try await compliance.execute("BEGIN")
        let inside = try await compliance.query(
            "SELECT * FROM vault.request_unmask_tokens(ARRAY[\(a)], 'SAR 0', 'alice', 'ws1', 10, \(key))")
        let insideSeq = try inside.first!["log_seq"].requiredInt()
        do {
            try await compliance.query("SELECT * FROM vault.release_unmask_tokens(\(insideSeq))")
            XCTFail("rows released before their entry was committed")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", error.description)
            XCTAssertTrue(error.description.contains("must be committed"), error.description)
        }
        try await compliance.execute("ROLLBACK")

        let asked = try await compliance.query(
            "SELECT * FROM vault.request_unmask_tokens(ARRAY[\(a), \(b), \(none)], 'SAR 1', 'alice', 'ws1', 10, \(key))")
        XCTAssertEqual(try asked.first?["log_seq"].int(), 51)
        XCTAssertEqual(try asked.first?["row_count"].int(), 2)
        let tokens = try await compliance.query("SELECT * FROM vault.release_unmask_tokens(51)")
        XCTAssertEqual(try tokens.map { try $0["token"].requiredString() }, [b, a])
        XCTAssertEqual(try tokens.first?["sealed"].bytes(), [0x02])
        XCTAssertEqual(try tokens.first?["sealed_key"].bytes(), [0xaa])
        for (connection, why) in [(compliance, "already released"),
                                  (try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_compliance")),
                                   "no unmask grant")] {
            do {
                try await connection.query("SELECT * FROM vault.release_unmask_tokens(51)")
                XCTFail("a grant is released once, to the login that asked")
            } catch let error as PostgresError {
                XCTAssertTrue(error.description.contains(why), error.description)
            }
        }

        let user = try await compliance.query("SELECT * FROM vault.request_unmask_user('u1', 'SAR 2', 'alice', 'ws1', 5, \(key))")
        // A login added after the request is not released under it.
        try await owner.execute("INSERT INTO user_logins (user_id, masked_ip, message_id) VALUES ('u1', \(a), 'm3')")
        let logins = try await compliance.query(
            "SELECT * FROM vault.release_unmask_user(\(try user.first!["log_seq"].requiredInt()))")
        XCTAssertEqual(try logins.map { try $0["message_id"].requiredString() }, ["m1", "m2"])
        XCTAssertEqual(try logins[0]["ip_sealed"].bytes(), [0x01])
        XCTAssertTrue(logins[1]["device_sealed"].isNull, "a token without a sealed value")

        let capped = try await compliance.query("SELECT * FROM vault.request_unmask_user('u1', 'SAR 3', 'alice', 'ws1', 1, \(key))")
        XCTAssertEqual(try capped.first?["outcome"].string(), "refused: over row cap (3 rows, cap 1)")
        let body = try await compliance.query("SELECT * FROM vault.request_unmask_quarantined('mq', 'case 4', 'alice', 'ws1', \(key))")
        let released = try await compliance.query(
            "SELECT * FROM vault.release_unmask_quarantined(\(try body.first!["log_seq"].requiredInt()))")
        XCTAssertEqual(try released.first?["sealed_body"].bytes(), [0x03])
        let otherKey = try await compliance.query(
            "SELECT * FROM vault.request_unmask_tokens(ARRAY[\(a)], 'SAR 5', 'alice', 'ws1', 10, 'ffffffffffffffff')")
        XCTAssertEqual(try otherKey.first?["other_key_id"].string(), key)
        let refusal = try await compliance.query(
            "SELECT audit.record_refusal('unmask', 'SAR 1', \("tokens:" + a), 'value damaged', 'alice', 'ws1') AS seq")
        XCTAssertEqual(try refusal.first?["seq"].int(), 56)
        for call: PostgresQuery in ["SELECT * FROM vault.request_unmask_user('u1', '  ', 'alice', 'ws1', 5, '0011223344556677')",
                                    "SELECT * FROM vault.request_unmask_tokens(ARRAY['192.0.2.1'], 'r', 'alice', 'ws1', 5, '0011223344556677')"] {
            do {
                try await compliance.query(call)
                XCTFail("no reason, or not a token: nothing may be logged or returned")
            } catch is PostgresError {}
        }
        await compliance.close()

        let log = try await owner.query("""
            SELECT seq, db_user, os_user, client_host, action, reason, subject, row_count, outcome
              FROM audit.access_log WHERE seq > 50 ORDER BY seq
            """)
        await owner.close()
        let loginUser = try XCTUnwrap(URLComponents(string: login)?.user)
        let lines = try log.map { row in
            try ["seq", "db_user", "os_user", "client_host", "action", "reason", "subject", "row_count", "outcome"]
                .map { try row[$0].requiredString() }.joined(separator: "|")
        }
        XCTAssertEqual(lines, [
            "51|\(loginUser)|alice|ws1|unmask|SAR 1|tokens:\(b),\(a),\(none)|2|unknown tokens: 1 of 3 not in the vault",
            "52|\(loginUser)|alice|ws1|unmask|SAR 2|user_id:u1|2|ok",
            "53|\(loginUser)|alice|ws1|unmask|SAR 3|user_id:u1|0|refused: over row cap (3 rows, cap 1)",
            "54|\(loginUser)|alice|ws1|unmask|case 4|message_id:mq|1|ok",
            "55|\(loginUser)|alice|ws1|unmask|SAR 5|tokens:\(a)|0|refused: vault key mismatch (sealed to \(key), key file is ffffffffffffffff)",
            "56|\(loginUser)|alice|ws1|unmask|SAR 1|tokens:\(a)|0|refused: value damaged",
        ])
        XCTAssertEqual(try verify().status, 0)
    }
}
