import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Dual control (issue 22), through the real binary and, for what the database itself must refuse, as a compliance
/// login in SQL: a policy per action, a request instead of the action (exit 75, nothing printed), approvals by
/// other compliance officers only, and the execution of exactly the approved request, once, by its requester,
/// within its window.
final class DualControlTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var officerA: String!
    var officerB: String!
    var records: [[String: Any]] = []

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "dual")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("dual-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let sample = try TestServices.fixture("fetch-sample-messages.json")
        records = try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as! [[String: Any]]
        let lines = try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let input = keys.appendingPathComponent("sample.ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let etl = try runPiivault([
            "etl", "--from-file", input.path, "--database-url", database.url, "--token-key", tokenKeyPath,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
        officerA = try await database.createLogin(memberOf: "piivault_compliance")
        officerB = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    private var secretKeyPath: String { keys.appendingPathComponent("vault.key").path }
    private var tokenKeyPath: String { keys.appendingPathComponent("token.key").path }

    private func piivault(_ arguments: [String], as login: String) throws -> ProcessResult {
        try runPiivault(arguments + ["--database-url", login],
                        environment: ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil])
    }

    private func unmask(_ arguments: [String], as login: String) throws -> ProcessResult {
        try piivault(["unmask", "--key-file", secretKeyPath, "--token-key", tokenKeyPath] + arguments, as: login)
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

    /// Access-log entries after `seq`, as `db_user|action|subject|outcome`.
    private func entries(after seq: Int) async throws -> [String] {
        try await query("SELECT db_user, action, subject, outcome FROM audit.access_log WHERE seq > \(seq) ORDER BY seq")
            .map { row in try ["db_user", "action", "subject", "outcome"].map { try row[$0].requiredString() }
                .joined(separator: "|") }
    }

    /// Sessions waiting for the access log's append lock.
    private func accessLogWaiters() async throws -> Int {
        try await query("""
            SELECT count(*) AS n FROM pg_locks AS l JOIN pg_class AS c ON c.oid = l.relation
             WHERE NOT l.granted AND c.relname = 'access_log'
            """).requiredFirst("pg_locks")["n"].requiredInt()
    }

    /// Request `id`'s state as `piivault requests` lists it to `login`.
    private func requestState(_ id: Int, as login: String) throws -> String? {
        let listed = try piivault(["requests", "--format", "json"], as: login)
        let requests = try XCTUnwrap(try JSONSerialization.jsonObject(with: listed.stdoutData) as? [[String: Any]])
        return requests.first { $0["id"] as? Int == id }?["state"] as? String
    }

    private func logLength() async throws -> Int {
        try await query("SELECT count(*) AS n FROM audit.access_log").requiredFirst("count")["n"].requiredInt()
    }

    private func user(of url: String) -> String { URLComponents(string: url)!.user! }

    private func setPolicy(_ action: String, approvals: Int, extra: [String] = []) throws {
        let set = try piivault(["policy", "set", action, "--approvals", String(approvals)] + extra, as: database.url)
        XCTAssertEqual(set.status, 0, set.stderr)
    }

    /// The request number in `request N waits for M approval(s) ...`, checking the line and that nothing else was
    /// printed.
    private func requestNumber(_ result: ProcessResult, approvals: Int, line: UInt = #line) throws -> Int {
        XCTAssertEqual(result.status, 75, result.stderr, line: line)
        XCTAssertEqual(result.stdout, "", "no data while a request waits", line: line)
        let pattern = try NSRegularExpression(
            pattern: "^piivault: request ([0-9]+) waits for \(approvals) approval\\(s\\) by other compliance officers: piivault approve ([0-9]+)\n$")
        let match = try XCTUnwrap(pattern.firstMatch(in: result.stderr, range: NSRange(result.stderr.startIndex..., in: result.stderr)),
                                  result.stderr, line: line)
        let id = Int((result.stderr as NSString).substring(with: match.range(at: 1)))!
        XCTAssertEqual(Int((result.stderr as NSString).substring(with: match.range(at: 2))), id, line: line)
        return id
    }

    private func sampleUser() throws -> (id: String, values: [String]) {
        let record = try XCTUnwrap(records.first { ($0["ip"] as? String) != nil && ($0["user_id"] as? String) != nil })
        let id = record["user_id"] as! String
        let values = records.filter { ($0["user_id"] as? String) == id }
            .flatMap { [$0["ip"] as? String, $0["device_id"] as? String].compactMap { $0 } }
        return (id, values)
    }

    // MARK: Acceptance 1: unmask with one approval

    func testUnmaskWithOneApprovalRunsOnceForItsRequesterAfterAnotherOfficerApproves() async throws {
        let analyst = try await database.createLogin(memberOf: "piivault_analyst")
        let auditor = try await database.createLogin(memberOf: "piivault_auditor")
        let (userID, values) = try sampleUser()
        let start = try await logLength()
        try setPolicy("unmask", approvals: 1)
        let shown = try piivault(["policy", "show", "--format", "csv"], as: officerA)
        XCTAssertEqual(shown.status, 0, shown.stderr)
        XCTAssertTrue(shown.stdout.contains("unmask,1,1d,\(start + 1)"), shown.stdout)
        XCTAssertTrue(shown.stdout.contains("forget,0,1d,"), shown.stdout)

        let asked = try unmask(["--reason", "SAR-1", "--user-id", userID], as: officerA)
        let id = try requestNumber(asked, approvals: 1)
        for value in values { XCTAssertFalse(asked.stderr.contains(value), "no value while a request waits") }

        // Refused, and each refusal logged: the requester, an analyst, the auditor; running before approval.
        let own = try piivault(["approve", String(id), "--reason", "self"], as: officerA)
        XCTAssertEqual(own.status, 77, own.stderr)
        XCTAssertTrue(own.stderr.contains("by its own requester"), own.stderr)
        for outsider in [analyst, auditor] {
            let refused = try piivault(["approve", String(id), "--reason", "not mine to give"], as: outsider)
            XCTAssertEqual(refused.status, 77, refused.stderr)
        }
        let early = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(early.status, 77, early.stderr)
        XCTAssertTrue(early.stderr.contains("request \(id) has 0 of 1 approval(s)"), early.stderr)
        XCTAssertEqual(early.stdout, "")

        let approved = try piivault(["approve", String(id), "--reason", "checked SAR-1"], as: officerB)
        XCTAssertEqual(approved.status, 0, approved.stderr)
        XCTAssertTrue(approved.stdout.contains("approval 1 of 1"), approved.stdout)
        let byB = try unmask(["--request", String(id)], as: officerB)
        XCTAssertEqual(byB.status, 77, "only the requester runs it: \(byB.stderr)")
        XCTAssertTrue(byB.stderr.contains("asked by another login"), byB.stderr)
        let otherUser = try XCTUnwrap(records.compactMap { $0["user_id"] as? String }.first { $0 != userID })
        let otherParameters = try unmask(["--request", String(id), "--reason", "SAR-1", "--user-id", otherUser], as: officerA)
        XCTAssertEqual(otherParameters.status, 77, otherParameters.stderr)
        XCTAssertTrue(otherParameters.stderr.contains("asked for other parameters"), otherParameters.stderr)
        // The approvers approved SAR-1: run under another reason, the entry would say the access was approved for it.
        let otherReason = try unmask(["--request", String(id), "--reason", "curiosity", "--user-id", userID], as: officerA)
        XCTAssertEqual(otherReason.status, 77, otherReason.stderr)
        XCTAssertTrue(otherReason.stderr.contains("approved for another reason"), otherReason.stderr)
        XCTAssertTrue(otherReason.stdout.isEmpty, "no values printed")

        let run = try unmask(["--request", String(id), "--format", "json"], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
        let logins = try XCTUnwrap(try JSONSerialization.jsonObject(with: run.stdoutData) as? [[String: Any]])
        XCTAssertFalse(logins.isEmpty)
        XCTAssertTrue(logins.allSatisfy { $0["user_id"] as? String == userID })
        XCTAssertEqual(Set(logins.flatMap { [$0["ip"] as? String, $0["device_id"] as? String].compactMap { $0 } }),
                       Set(values))
        let again = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(again.status, 77, again.stderr)
        XCTAssertTrue(again.stderr.contains("already executed"), again.stderr)
        XCTAssertEqual(again.stdout, "")

        // After the window: refused (the window is moved back by the owner rather than waited for).
        let second = try requestNumber(try unmask(["--reason", "SAR-2", "--user-id", userID], as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(second), "--reason", "ok"], as: officerB).status, 0)
        _ = try await query("UPDATE audit.approval_requests SET expires_at = now() - interval '1 second' WHERE id = \(second)")
        let late = try unmask(["--request", String(second)], as: officerA)
        XCTAssertEqual(late.status, 77, late.stderr)
        XCTAssertTrue(late.stderr.contains("request \(second) expired"), late.stderr)
        XCTAssertEqual(late.stdout, "")

        let a = user(of: officerA), b = user(of: officerB)
        let logged = try await entries(after: start)
        let notMember = "refused: not permitted (login is not a member of piivault_compliance)"
        XCTAssertEqual(logged, [
            "\(user(of: database.url))|policy|action:unmask|ok: approvals 0 -> 1, window 86400s -> 86400s",
            "\(a)|request|user_id:\(userID)|pending: unmask needs 1 approval(s) by other compliance officers within 86400s",
            "\(a)|approve|request:\(id)|refused: approve of request \(id) by its own requester",
            "\(user(of: analyst))|approve|request:\(id)|\(notMember)",
            "\(user(of: auditor))|approve|request:\(id)|\(notMember)",
            "\(a)|unmask|user_id:\(userID)|refused: dual control: request \(id) has 0 of 1 approval(s)",
            "\(b)|approve|request:\(id)|ok: approval 1 of 1 for unmask",
            "\(b)|unmask|user_id:\(userID)|refused: dual control: request \(id) was asked by another login",
            "\(a)|unmask|user_id:\(otherUser)|refused: dual control: request \(id) was asked for other parameters",
            "\(a)|unmask|user_id:\(userID)|refused: dual control: request \(id) was approved for another reason; give its own reason (piivault requests shows it)",
            "\(a)|unmask|user_id:\(userID)|ok [approved request \(id)]",
            "\(a)|unmask|user_id:\(userID)|refused: dual control: request \(id) was already executed (entry \(start + 11))",
            "\(a)|request|user_id:\(userID)|pending: unmask needs 1 approval(s) by other compliance officers within 86400s",
            "\(b)|approve|request:\(second)|ok: approval 1 of 1 for unmask",
        ] + [logged.last ?? ""])
        XCTAssertTrue(logged.last?.hasPrefix("\(a)|unmask|user_id:\(userID)|refused: dual control: request \(second) expired at ") == true,
                      logged.last ?? "")

        let requests = try piivault(["requests", "--format", "json"], as: officerB)
        XCTAssertEqual(requests.status, 0, requests.stderr)
        let listed = try XCTUnwrap(try JSONSerialization.jsonObject(with: requests.stdoutData) as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["id"] as? Int }, [second, id])
        XCTAssertEqual(listed.map { $0["state"] as? String }, ["expired", "executed"])
        XCTAssertTrue((listed[1]["approvers"] as? String ?? "").hasPrefix("\(b) at "), "\(listed[1])")
        let pending = try piivault(["requests", "--pending", "--format", "csv"], as: officerA)
        XCTAssertEqual(pending.stdout.split(separator: "\r\n").count, 1, "only the header: \(pending.stdout)")

        let verify = try piivault(["audit", "verify"], as: database.url)
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
        // The independent verifier agrees on the chain with the request, approval and execution entries in it.
        let independent = try await independentAccessLogCheck(database)
        XCTAssertEqual(independent.status, 0, independent.stdout + independent.stderr)
        let head = independent.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ").last.map(String.init) ?? "?"
        XCTAssertTrue(verify.stdout.hasSuffix("head \(head)\n"), verify.stdout + " vs " + independent.stdout)

        // The report: the requests and approvals; the policy change flagged; an access without approval (written by
        // the owner past the functions, which only the owner can do) flagged too.
        _ = try await query("SELECT audit.append_entry('unmask', 'INC-1', 'user_id:x', 1, 'ok', 'owner', 'host')")
        try assertReportShowsDualControl(requestID: id, auditor: auditor)
    }

    private func assertReportShowsDualControl(requestID id: Int, auditor: String) throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestSetupError("chromium is not installed; run scripts/install-deps")
        }
        let dir = keys.appendingPathComponent("report")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let page = dir.appendingPathComponent("review.html")
        let result = try runPiivault(["audit", "report", "--database-url", auditor, "--html", page.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let dom = try runProcess(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                            "--user-data-dir=\(dir.appendingPathComponent("profile").path)",
                                            "--dump-dom", page.absoluteString])
        XCTAssertEqual(dom.status, 0, dom.stderr)
        func section(_ id: String) throws -> String {
            let start = try XCTUnwrap(dom.stdout.range(of: "id=\"\(id)\""), "no \(id) in the page")
            let end = try XCTUnwrap(dom.stdout.range(of: "</table>", range: start.upperBound..<dom.stdout.endIndex))
            return String(dom.stdout[start.upperBound..<end.lowerBound])
        }
        let dual = try section("dual-control")
        XCTAssertTrue(dual.contains("request:\(id)"), dual)
        XCTAssertTrue(dual.contains("ok: approval 1 of 1 for unmask"), dual)
        XCTAssertTrue(dual.contains("pending: unmask needs 1 approval(s)"), dual)
        XCTAssertTrue(dual.contains("[approved request \(id)]"), dual)
        XCTAssertTrue(dom.stdout.contains("id=\"policy-changes\">1 policy change(s)"), "the policy change is flagged")
        let flagged = try section("executed-without-approval")
        XCTAssertTrue(flagged.contains("INC-1"), flagged)
        XCTAssertFalse(flagged.contains("[approved request"), "the approved access is not flagged: \(flagged)")
    }

    // MARK: Acceptance 2: two approvals, from two logins

    func testTwoApprovalsNeedTwoDistinctApproversAndTheSameApproverTwiceCountsOnce() async throws {
        let officerC = try await database.createLogin(memberOf: "piivault_compliance")
        let (userID, _) = try sampleUser()
        try setPolicy("unmask", approvals: 2, extra: ["--window", "15m"])
        let id = try requestNumber(try unmask(["--reason", "SAR-3", "--user-id", userID], as: officerA), approvals: 2)
        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "one"], as: officerB).status, 0)
        let twice = try piivault(["approve", String(id), "--reason", "one again"], as: officerB)
        XCTAssertEqual(twice.status, 77, twice.stderr)
        XCTAssertTrue(twice.stderr.contains("already approved by this login"), twice.stderr)
        let short = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(short.status, 77, short.stderr)
        XCTAssertTrue(short.stderr.contains("has 1 of 2 approval(s)"), short.stderr)
        let third = try piivault(["approve", String(id), "--reason", "two"], as: officerC)
        XCTAssertEqual(third.status, 0, third.stderr)
        XCTAssertTrue(third.stdout.contains("approval 2 of 2"), third.stdout)
        let run = try unmask(["--request", String(id), "--format", "json"], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    /// A policy raised after a request was approved: the request runs only with the approvals the policy asks now,
    /// and `requests` and `approve` say so instead of calling it approved.
    func testARequestApprovedBeforeItsPolicyWasRaisedIsShownWaitingForTheNewCount() async throws {
        let officerC = try await database.createLogin(memberOf: "piivault_compliance")
        let (userID, _) = try sampleUser()
        try setPolicy("unmask", approvals: 1)
        let id = try requestNumber(try unmask(["--reason", "SAR-5", "--user-id", userID], as: officerA), approvals: 1)
        let first = try piivault(["approve", String(id), "--reason", "one"], as: officerB)
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("approval 1 of 1; approved"), first.stdout)
        try setPolicy("unmask", approvals: 2)
        func listed() throws -> [String: Any] {
            let result = try piivault(["requests", "--format", "json"], as: officerA)
            XCTAssertEqual(result.status, 0, result.stderr)
            let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: result.stdoutData) as? [[String: Any]])
            return try XCTUnwrap(rows.first { $0["id"] as? Int == id })
        }
        let raised = try listed()
        XCTAssertEqual(raised["state"] as? String, "pending", "\(raised)")
        XCTAssertEqual(raised["approvals_required"] as? Int, 2, "\(raised)")
        let short = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(short.status, 77, short.stderr)
        XCTAssertTrue(short.stderr.contains("has 1 of 2 approval(s)"), short.stderr)
        let second = try piivault(["approve", String(id), "--reason", "two"], as: officerC)
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertTrue(second.stdout.contains("approval 2 of 2; approved"), second.stdout)
        XCTAssertEqual(try listed()["state"] as? String, "approved")
        let run = try unmask(["--request", String(id), "--format", "json"], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    // MARK: Who may change a policy

    func testOnlyTheOwnerOrThePolicyAdminRoleChangesAPolicyAndEveryChangeIsLogged() async throws {
        let admin = try await database.createLogin(memberOf: "piivault_policy_admin")
        let refused = try piivault(["policy", "set", "forget", "--approvals", "1"], as: officerA)
        XCTAssertEqual(refused.status, 77, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("piivault_policy_admin"), refused.stderr)
        let start = try await logLength()
        let set = try piivault(["policy", "set", "forget", "--approvals", "2", "--window", "2d", "--reason", "CAB-9"], as: admin)
        XCTAssertEqual(set.status, 0, set.stderr)
        let changes = try await entries(after: start)
        XCTAssertEqual(changes,
                       ["\(user(of: admin))|policy|action:forget|ok: approvals 0 -> 2, window 86400s -> 172800s"])
        let bad = try piivault(["policy", "set", "etl", "--approvals", "1"], as: admin)
        XCTAssertEqual(bad.status, 64, bad.stderr)
        let tooMany = try piivault(["policy", "set", "unmask", "--approvals", "4"], as: admin)
        XCTAssertEqual(tooMany.status, 64, tooMany.stderr)
    }

    /// `policy set` appends under READ COMMITTED whatever the database's default: under REPEATABLE READ, a change
    /// that waited for another session's append read the log's head from before that append and failed on the
    /// duplicate sequence number.
    func testAPolicyChangeWaitingOnAnotherAppendSucceedsUnderRepeatableReadDefaults() async throws {
        _ = try await query(PostgresQuery(unsafeSQL:
            "ALTER DATABASE \(database.name) SET default_transaction_isolation = 'repeatable read'"))
        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        _ = try await holder.query("SELECT audit.append_entry('unmask', 'case 1', 'user_id:u1', 1, 'ok', 'o', 'h')")
        let change = try BackgroundProcess(try piivaultBinary(), [
            "policy", "set", "forget", "--approvals", "1", "--reason", "CAB-1", "--database-url", database.url,
        ])
        try await waitUntil("the change waits on the access log", timeout: 30) {
            try await self.accessLogWaiters() >= 1 || !change.isRunning
        }
        try await holder.execute("COMMIT")
        await holder.close()
        let exited = try await change.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(change.status, 0, change.stderr)
    }

    // MARK: Acceptance 3: forget

    func testForgetWaitsForApprovalItsDryRunDoesNotAndTheApprovedRequestErases() async throws {
        let (userID, _) = try sampleUser()
        try setPolicy("forget", approvals: 1)
        func rows() async throws -> Int {
            try await query("SELECT count(*) AS n FROM public.user_logins WHERE user_id = \(userID)")
                .requiredFirst("count")["n"].requiredInt()
        }
        let before = try await rows()
        XCTAssertGreaterThan(before, 0)
        let dryRun = try piivault(["forget", "--user-id", userID, "--reason", "GDPR-1", "--dry-run",
                                   "--token-key", tokenKeyPath], as: officerA)
        XCTAssertEqual(dryRun.status, 0, "a dry run counts, deletes nothing, needs no approval: \(dryRun.stderr)")
        let forget = ["forget", "--user-id", userID, "--reason", "GDPR-1", "--token-key", tokenKeyPath]
        let id = try requestNumber(try piivault(forget, as: officerA), approvals: 1)
        let stillThere = try await rows()
        XCTAssertEqual(stillThere, before, "nothing deleted while the request waits")
        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "verified identity"], as: officerB).status, 0)
        // unmask cannot take a forget request's target (the user's hash): it says which command runs it.
        let underUnmask = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(underUnmask.status, 64, underUnmask.stderr)
        XCTAssertTrue(underUnmask.stderr.contains("request \(id) is for forget, not unmask; run piivault forget with its parameters and --request \(id)"),
                      underUnmask.stderr)
        let run = try piivault(forget + ["--request", String(id)], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
        let after = try await rows()
        XCTAssertEqual(after, 0)
        let again = try piivault(forget + ["--request", String(id)], as: officerA)
        XCTAssertEqual(again.status, 77, again.stderr)

        // A quarantined body: the same flow; the request is listed as pending until approved.
        let messageID = try await query("SELECT message_id FROM vault.quarantine LIMIT 1")
            .requiredFirst("quarantine")["message_id"].requiredString()
        let quarantined = ["forget", "--quarantined", messageID, "--reason", "INC-12"]
        let bodyID = try requestNumber(try piivault(quarantined, as: officerA), approvals: 1)
        let listed = try piivault(["requests", "--pending", "--format", "json"], as: officerB)
        XCTAssertEqual(listed.status, 0, listed.stderr)
        let pending = try XCTUnwrap(try JSONSerialization.jsonObject(with: listed.stdoutData) as? [[String: Any]])
        XCTAssertEqual(pending.map { $0["id"] as? Int }, [bodyID])
        XCTAssertEqual(pending.first?["subject"] as? String, "message_id:\(messageID)")
        XCTAssertEqual(pending.first?["state"] as? String, "pending")
        XCTAssertEqual(pending.first?["requester"] as? String, user(of: officerA))
        XCTAssertEqual(try piivault(["approve", String(bodyID), "--reason", "INC-12 ok"], as: officerB).status, 0)
        let erased = try piivault(quarantined + ["--request", String(bodyID)], as: officerA)
        XCTAssertEqual(erased.status, 0, erased.stderr)
        let bodies = try await query("SELECT count(*) AS n FROM vault.quarantine WHERE message_id = \(messageID)")
            .requiredFirst("count")["n"].requiredInt()
        XCTAssertEqual(bodies, 0)
    }

    /// A forget that starts while the owner's policy change is uncommitted waits for it on the access log, then is
    /// held to the new policy: before, it read the old policy (no approvals) before that wait and erased unapproved,
    /// logged right after the change.
    func testAForgetRacingAPolicyChangeIsHeldToTheNewPolicy() async throws {
        let (userID, _) = try sampleUser()
        let owner = try await database.connect()
        try await owner.execute("BEGIN")
        _ = try await owner.query("SELECT * FROM audit.set_policy('forget', 1, NULL, 'tighten', 'o', 'h')")
        let run = try BackgroundProcess(try piivaultBinary(), [
            "forget", "--user-id", userID, "--reason", "GDPR-9", "--token-key", tokenKeyPath, "--database-url", officerA,
        ], environment: ["PIIVAULT_TOKEN_KEY": nil])
        try await waitUntil("forget waits on the access log", timeout: 30) {
            try await self.accessLogWaiters() >= 1 || !run.isRunning
        }
        try await owner.execute("COMMIT")
        await owner.close()
        let exited = try await run.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 75, "a request, not an erasure: \(run.stderr)")
        let rows = try await query("SELECT count(*) AS n FROM public.user_logins WHERE user_id = \(userID)")
            .requiredFirst("count")["n"].requiredInt()
        XCTAssertGreaterThan(rows, 0, "nothing erased without the approval the policy now asks for")
    }

    /// Approving a request while it is being run: both wait on the access log (here behind another session's append),
    /// and the run goes first. The approval took the request's row before the log, the run the log before the row,
    /// and Postgres broke the cycle by failing one of them; now the approval is refused as already executed.
    func testAnApprovalArrivingWhileItsRequestRunsDoesNotDeadlock() async throws {
        let (userID, _) = try sampleUser()
        try setPolicy("forget", approvals: 1)
        let forget = ["forget", "--user-id", userID, "--reason", "GDPR-7", "--token-key", tokenKeyPath]
        let id = try requestNumber(try piivault(forget, as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "verified"], as: officerB).status, 0)
        let officerC = try await database.createLogin(memberOf: "piivault_compliance")
        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        try await holder.execute("LOCK TABLE audit.access_log IN EXCLUSIVE MODE")
        let run = try BackgroundProcess(try piivaultBinary(), forget + ["--request", String(id), "--database-url", officerA],
                                        environment: ["PIIVAULT_TOKEN_KEY": nil])
        try await waitUntil("the run waits on the access log", timeout: 30) { try await self.accessLogWaiters() >= 1 || !run.isRunning }
        let approval = try BackgroundProcess(try piivaultBinary(), [
            "approve", String(id), "--reason", "me too", "--database-url", officerC,
        ])
        try await waitUntil("the approval waits too", timeout: 30) { try await self.accessLogWaiters() >= 2 || !approval.isRunning }
        try await holder.execute("COMMIT")
        await holder.close()
        let runEnded = try await run.waitForExit(timeout: 60)
        let approvalEnded = try await approval.waitForExit(timeout: 60)
        XCTAssertTrue(runEnded && approvalEnded)
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertEqual(approval.status, 77, approval.stderr)
        XCTAssertTrue(approval.stderr.contains("already executed"), approval.stderr)
        XCTAssertFalse(run.stderr.contains("deadlock") || approval.stderr.contains("deadlock"), run.stderr + approval.stderr)
    }

    /// An approved forget request erases the user it was asked for, and no other. The approvers approve a keyed hash
    /// of the user id, which rows loaded before subject hashes were recorded do not carry: under dual control a forget
    /// of a user with such rows is refused (65, nothing logged), whether asked for or run under another user's
    /// approved request, and a request runs only for the user id it was asked for (refused and logged otherwise).
    /// The next ETL run records those rows' hashes, and the user can be asked for.
    func testAnApprovedForgetRequestErasesOnlyTheUserItWasAskedFor() async throws {
        // A user with no rows (yet): a forget leaves the tombstone that keeps their later messages out.
        let userID = "ghost-user"
        let otherUser = try sampleUser().id
        // The other user's rows as a pre-0017 load left them: no subject hash.
        let recordedHash = try await query("SELECT subject_hash FROM public.user_logins WHERE user_id = \(otherUser) LIMIT 1")
            .requiredFirst("user_logins")["subject_hash"].requiredString()
        _ = try await query("UPDATE public.user_logins SET subject_hash = NULL WHERE user_id = \(otherUser)")
        func otherRows() async throws -> Int {
            try await query("SELECT count(*) AS n FROM public.user_logins WHERE user_id = \(otherUser)")
                .requiredFirst("count")["n"].requiredInt()
        }
        let rowsBefore = try await otherRows()
        XCTAssertGreaterThan(rowsBefore, 0)
        try setPolicy("forget", approvals: 1)
        let logged = try await logLength()
        let asked = try piivault(["forget", "--user-id", otherUser, "--reason", "GDPR-3", "--token-key", tokenKeyPath],
                                 as: officerA)
        XCTAssertEqual(asked.status, 65, asked.stderr)
        XCTAssertTrue(asked.stderr.contains("loaded before piivault recorded subject hashes"), asked.stderr)
        let afterAsking = try await logLength()
        XCTAssertEqual(afterAsking, logged, "nothing logged")

        // A dry run counts and logs nothing: it needs no approval, hash or not.
        let dryRun = try piivault(["forget", "--user-id", otherUser, "--reason", "GDPR-3", "--dry-run",
                                   "--token-key", tokenKeyPath], as: officerA)
        XCTAssertEqual(dryRun.status, 0, dryRun.stderr)

        let id = try requestNumber(try piivault(["forget", "--user-id", userID, "--reason", "GDPR-2",
                                                 "--token-key", tokenKeyPath], as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "verified"], as: officerB).status, 0)
        let subject = try await query("SELECT subject FROM audit.access_log WHERE seq = \(id)")
            .requiredFirst("access_log")["subject"].requiredString()
        let hash = String(subject.dropFirst("user_hash:".count))
        // Run straight through the function with the other user's id: refused and logged, nothing erased.
        let officer = try await PostgresConnection.connect(officerA)
        _ = try await officer.query("SELECT set_config('piivault.approval_request', \(String(id)), false)")
        let refused = try await officer.query("""
            SELECT rows_deleted FROM vault.forget_user(\(hash), \(otherUser), 'GDPR-2', 'o', 'h', false)
            """).requiredFirst("vault.forget_user")["rows_deleted"].requiredInt()
        await officer.close()
        XCTAssertEqual(refused, 0)
        let outcome = try await query("SELECT outcome FROM audit.access_log ORDER BY seq DESC LIMIT 1")
            .requiredFirst("access_log")["outcome"].requiredString()
        XCTAssertEqual(outcome, "refused: dual control: request \(id) was asked for another user")
        let rowsAfter = try await otherRows()
        XCTAssertEqual(rowsAfter, rowsBefore, "the other user's rows are not erased")
        // The request still runs for its own user, and forgets which user that was.
        let run = try piivault(["forget", "--user-id", userID, "--reason", "GDPR-2", "--token-key", tokenKeyPath,
                                "--request", String(id)], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
        let kept = try await query("SELECT count(*) AS n FROM audit.approval_requests WHERE user_id = \(userID)")
            .requiredFirst("count")["n"].requiredInt()
        XCTAssertEqual(kept, 0, "the erased user's id is not kept with the request")

        // The next ETL run records the hash of the rows that have none (it holds the token key), as it would have
        // when loading them; the other user can then be asked for like any other.
        let empty = keys.appendingPathComponent("empty.ndjson")
        try "".write(to: empty, atomically: true, encoding: .utf8)
        let etl = try runPiivault(["etl", "--from-file", empty.path, "--database-url", database.url,
                                   "--token-key", tokenKeyPath, "--vault-public-key", keys.appendingPathComponent("vault.pub").path])
        XCTAssertEqual(etl.status, 0, etl.stderr)
        XCTAssertTrue(etl.stderr.contains("recorded the subject hash of \(rowsBefore) rows"), etl.stderr)
        let hashes = try await query("SELECT DISTINCT subject_hash FROM public.user_logins WHERE user_id = \(otherUser)")
            .map { try $0["subject_hash"].string() }
        XCTAssertEqual(hashes, [recordedHash])
        _ = try requestNumber(try piivault(["forget", "--user-id", otherUser, "--reason", "GDPR-4",
                                            "--token-key", tokenKeyPath], as: officerA), approvals: 1)
    }

    /// A window the owner shortened holds the requests already waiting, as a raised approval count does: a request
    /// asked under two days is expired once the window is one second and a second has passed, for approving, for
    /// running and in the list.
    func testAShortenedWindowHoldsTheRequestsAlreadyWaiting() async throws {
        let (userID, _) = try sampleUser()
        try setPolicy("unmask", approvals: 1, extra: ["--window", "2d"])
        let id = try requestNumber(try unmask(["--reason", "SAR-5", "--user-id", userID], as: officerA), approvals: 1)
        try setPolicy("unmask", approvals: 1, extra: ["--window", "1s"])
        try await Task.sleep(for: .milliseconds(1_200))
        let approve = try piivault(["approve", String(id), "--reason", "late"], as: officerB)
        XCTAssertEqual(approve.status, 77, approve.stderr)
        XCTAssertTrue(approve.stderr.contains("request \(id) has expired"), approve.stderr)
        // Approved before the change (as the owner could record it): still expired for running.
        _ = try await query("INSERT INTO audit.approvals (request_id, approver, seq) VALUES (\(id), 'someone-else', \(id))")
        let run = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(run.status, 77, run.stderr)
        XCTAssertTrue(run.stderr.contains("request \(id) expired at"), run.stderr)
        XCTAssertTrue(run.stdout.isEmpty, "no values printed")
        XCTAssertEqual(try requestState(id, as: officerB), "expired")
    }

    /// An approval counts while its approver is still a compliance officer: once the owner revoked the approver's
    /// membership (an officer who left, a login taken from one), what they approved and was not run yet waits again.
    func testAnApprovalByAnOfficerWhoLeftNoLongerCounts() async throws {
        let (userID, _) = try sampleUser()
        try setPolicy("unmask", approvals: 1)
        let id = try requestNumber(try unmask(["--reason", "SAR-6", "--user-id", userID], as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "ok"], as: officerB).status, 0)
        _ = try await query(PostgresQuery(unsafeSQL: "REVOKE piivault_compliance FROM \"\(user(of: officerB))\""))
        let run = try unmask(["--request", String(id)], as: officerA)
        XCTAssertEqual(run.status, 77, run.stderr)
        XCTAssertTrue(run.stderr.contains("request \(id) has 0 of 1 approval(s)"), run.stderr)
        XCTAssertTrue(run.stdout.isEmpty, "no values printed")
        XCTAssertEqual(try requestState(id, as: officerA), "pending")
    }

    // MARK: Acceptance 3: rewrap

    func testRewrapWaitsForApprovalItsDryRunDoesNotAndTheApprovedRequestRewraps() async throws {
        let newKeys = keys.appendingPathComponent("b")
        let keygen = try runPiivault(["keygen", "--vault-key-only", "--dir", newKeys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let newKeyID = try KeyLoading.loadVaultPublicKey(path: newKeys.appendingPathComponent("vault.pub").path).keyID.hex
        func sealedToNew() async throws -> Int {
            try await query("SELECT count(*) AS n FROM vault.data_keys WHERE key_id = \(newKeyID)")
                .requiredFirst("count")["n"].requiredInt()
        }
        try setPolicy("rewrap", approvals: 1)
        let rewrap = ["rewrap", "--key-file", secretKeyPath, "--to", newKeys.appendingPathComponent("vault.pub").path,
                      "--reason", "KEY-ROTATE-1"]
        let dryRun = try piivault(rewrap + ["--dry-run"], as: officerA)
        XCTAssertEqual(dryRun.status, 0, "a dry run needs no approval: \(dryRun.stderr)")
        let id = try requestNumber(try piivault(rewrap, as: officerA), approvals: 1)
        let untouched = try await sealedToNew()
        XCTAssertEqual(untouched, 0, "nothing re-keyed while the request waits")
        XCTAssertEqual(try piivault(["deny", String(id), "--reason", "not this week"], as: officerB).status, 0)
        let denied = try piivault(rewrap + ["--request", String(id)], as: officerA)
        XCTAssertEqual(denied.status, 77, denied.stderr)
        XCTAssertTrue(denied.stderr.contains("was denied"), denied.stderr)
        let lateApproval = try piivault(["approve", String(id), "--reason", "changed my mind"], as: officerB)
        XCTAssertEqual(lateApproval.status, 77, "a denied request cannot be approved: \(lateApproval.stderr)")

        let second = try requestNumber(try piivault(rewrap, as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(second), "--reason", "CAB-7"], as: officerB).status, 0)
        let run = try piivault(rewrap + ["--request", String(second)], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
        let rewrapped = try await sealedToNew()
        XCTAssertGreaterThan(rewrapped, 0)
    }

    /// A policy on unmask alone also holds rewrap and retokenize, which hand an officer every sealed value (a full
    /// rewrap, retokenize) or data key to open with the vault key: each becomes a request, and runs once approved.
    func testAPolicyOnUnmaskAloneHoldsRewrapAndRetokenizeToo() async throws {
        let newKeys = keys.appendingPathComponent("c")
        let keygen = try runPiivault(["keygen", "--vault-key-only", "--dir", newKeys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let keyID = try await query("SELECT key_id FROM vault.data_keys ORDER BY id LIMIT 1")
            .requiredFirst("key")["key_id"].requiredString()
        try setPolicy("unmask", approvals: 1)
        let rewrap = ["rewrap", "--key-file", secretKeyPath, "--to", newKeys.appendingPathComponent("vault.pub").path,
                      "--reason", "KEY-ROTATE-2", "--full"]
        let id = try requestNumber(try piivault(rewrap, as: officerA), approvals: 1)

        let officer = try await PostgresConnection.connect(officerA)
        defer { Task { await officer.close() } }
        let retokenize = try await officer.query("""
            SELECT log_seq FROM vault.request_retokenize(2, 'eeeeeeeeeeeeeeee', \(keyID), 'r', 'o', 'h')
            """).requiredFirst("request_retokenize")["log_seq"].requiredInt()
        let state = try await officer.query("SELECT state FROM audit.dual_control_state(\(retokenize))")
        XCTAssertEqual(try state.first?["state"].string(), "pending")
        do {
            _ = try await officer.query("SELECT vault.start_retokenize(\(retokenize))")
            XCTFail("retokenize started without an approved request")
        } catch let error as PostgresError {
            XCTAssertTrue(error.isPermissionDenied, "\(error)")
        }

        XCTAssertEqual(try piivault(["approve", String(id), "--reason", "CAB-8"], as: officerB).status, 0)
        let run = try piivault(rewrap + ["--request", String(id)], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
    }

    // MARK: lookup and retention: the same flow, through the same runner

    func testLookupAndRetentionWaitForApprovalAndRunTheApprovedRequestOnce() async throws {
        let ip = try XCTUnwrap(records.compactMap { $0["ip"] as? String }.first)
        try setPolicy("lookup", approvals: 1)
        try setPolicy("retention", approvals: 1)

        let lookup = ["lookup", "--token-key", tokenKeyPath, "--reason", "DSAR-5", "--ip", ip, "--format", "json"]
        let lookupID = try requestNumber(try piivault(lookup, as: officerA), approvals: 1)
        XCTAssertEqual(try piivault(["approve", String(lookupID), "--reason", "ok"], as: officerB).status, 0)
        let found = try piivault(lookup + ["--request", String(lookupID)], as: officerA)
        XCTAssertEqual(found.status, 0, found.stderr)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: found.stdoutData) as? [[String: Any]])
        XCTAssertFalse(rows.isEmpty)
        XCTAssertEqual(try piivault(lookup + ["--request", String(lookupID)], as: officerA).status, 77, "once")
        try setPolicy("unmask", approvals: 1)
        let unmaskUnderLookup = try unmask(["--request", String(lookupID)], as: officerA)
        XCTAssertEqual(unmaskUnderLookup.status, 77, "a lookup request does not unmask: \(unmaskUnderLookup.stderr)")
        XCTAssertTrue(unmaskUnderLookup.stderr.contains("request \(lookupID) is for lookup, not unmask"),
                      unmaskUnderLookup.stderr)

        func logins() async throws -> Int {
            try await query("SELECT count(*) AS n FROM public.user_logins").requiredFirst("count")["n"].requiredInt()
        }
        // The sample carries no create_date: half of its rows are dated ten days back (by the owner) for retention.
        _ = try await query("""
            UPDATE public.user_logins SET create_date = current_date - 10
             WHERE message_id IN (SELECT message_id FROM public.user_logins ORDER BY message_id LIMIT 50)
            """)
        let before = try await logins()
        let retention = ["retention", "--older-than", "1", "--reason", "RET-2026-12"]
        let dryRun = try piivault(retention + ["--dry-run"], as: officerA)
        XCTAssertEqual(dryRun.status, 0, "a dry run needs no approval: \(dryRun.stderr)")
        let retentionID = try requestNumber(try piivault(retention, as: officerA), approvals: 1)
        let kept = try await logins()
        XCTAssertEqual(kept, before, "nothing deleted while the request waits")
        let otherCutoff = try piivault(["retention", "--older-than", "2", "--reason", "RET-2026-12",
                                        "--request", String(retentionID)], as: officerA)
        XCTAssertEqual(otherCutoff.status, 77, otherCutoff.stderr)
        XCTAssertTrue(otherCutoff.stderr.contains("asked for other parameters"), otherCutoff.stderr)
        XCTAssertEqual(try piivault(["approve", String(retentionID), "--reason", "policy RP-1"], as: officerB).status, 0)
        let run = try piivault(retention + ["--request", String(retentionID)], as: officerA)
        XCTAssertEqual(run.status, 0, run.stderr)
        let left = try await logins()
        XCTAssertLessThan(left, before)
    }

    // MARK: Acceptance 4: the database refuses, whatever the client does

    func testEveryFunctionThatReleasesDeletesOrReKeysIsRefusedWithoutAnApprovedRequest() async throws {
        let (userID, _) = try sampleUser()
        let keyID = try await query("SELECT key_id FROM vault.data_keys ORDER BY id LIMIT 1")
            .requiredFirst("key")["key_id"].requiredString()
        let subjectHash = try await query("SELECT subject_hash FROM public.user_logins WHERE user_id = \(userID) LIMIT 1")
            .requiredFirst("hash")["subject_hash"].requiredString()
        let token = try await query("SELECT token FROM vault.secrets ORDER BY token LIMIT 1")
            .requiredFirst("token")["token"].requiredString()
        let messageID = try await query("SELECT message_id FROM vault.quarantine LIMIT 1")
            .requiredFirst("quarantine")["message_id"].requiredString()
        let logins = try await query("SELECT count(*) AS n FROM public.user_logins").requiredFirst("n")["n"].requiredInt()

        // A grant taken while the policy was 0, released after it changed: refused too.
        let officer = try await PostgresConnection.connect(officerA)
        let early = try await officer.query("""
            SELECT log_seq FROM vault.request_unmask_user(\(userID), 'r', 'o', 'h', 100, \(keyID))
            """).requiredFirst("request")["log_seq"].requiredInt()
        // A rewrap run started while the policy was 0 stops at its next batch once the policy asks for approvals.
        let startedRewrap = try await officer.query("""
            SELECT log_seq FROM vault.request_rewrap(\(keyID), 'dddddddddddddddd', false, 'r', 'o', 'h', false)
            """).requiredFirst("request_rewrap")["log_seq"].requiredInt()
        _ = try await officer.query("SELECT vault.start_rewrap(\(startedRewrap))")
        for action in DualControlService.actions { try setPolicy(action, approvals: 1) }

        func refused(_ sql: String, line: UInt = #line) async {
            do {
                _ = try await officer.query(PostgresQuery(unsafeSQL: sql))
                XCTFail("not refused: \(sql)", line: line)
            } catch let error as PostgresError {
                XCTAssertTrue(error.isPermissionDenied, "\(sql): \(error)", line: line)
            } catch {
                XCTFail("\(sql): \(error)", line: line)
            }
        }
        await refused("SELECT * FROM vault.release_unmask_user(\(early))")
        await refused("SELECT * FROM vault.release_rewrap_keys(\(startedRewrap), 0, 100)")

        /// A request step as the officer: must come back as a pending request (no grant).
        func pending(_ sql: String, line: UInt = #line) async throws -> Int {
            let row = try await officer.query(PostgresQuery(unsafeSQL: sql)).requiredFirst(sql)
            let seq = try row["log_seq"].requiredInt()
            let state = try await officer.query("SELECT state FROM audit.dual_control_state(\(seq))")
            XCTAssertEqual(try state.first?["state"].string(), "pending", sql, line: line)
            return seq
        }
        let q = { (s: String) in "'" + s.replacingOccurrences(of: "'", with: "''") + "'" }
        let u = try await pending("SELECT * FROM vault.request_unmask_user(\(q(userID)), 'r', 'o', 'h', 100, '\(keyID)')")
        await refused("SELECT * FROM vault.release_unmask_user(\(u))")
        // A superuser is not a second officer (pg_has_role counts it a member of every role): refused, and logged.
        let bySuperuser = try await query("SELECT outcome FROM audit.decide_request(\(u), true, 'su-approves', 'o', 'h')")
            .requiredFirst("audit.decide_request")["outcome"].requiredString()
        XCTAssertTrue(bySuperuser.hasPrefix("refused: not permitted (a superuser is not a compliance officer)"), bySuperuser)
        let t = try await pending("SELECT * FROM vault.request_unmask_tokens(ARRAY['\(token)'], 'r', 'o', 'h', 100, '\(keyID)')")
        await refused("SELECT * FROM vault.release_unmask_tokens(\(t))")
        let m = try await pending("SELECT * FROM vault.request_unmask_quarantined(\(q(messageID)), 'r', 'o', 'h', '\(keyID)')")
        await refused("SELECT * FROM vault.release_unmask_quarantined(\(m))")
        let l = try await pending("SELECT * FROM vault.request_lookup_tokens(ARRAY['\(token)'], 'r', 'o', 'h', 100)")
        await refused("SELECT * FROM vault.release_lookup_tokens(\(l))")
        _ = try await pending("SELECT * FROM vault.forget_user('\(subjectHash)', \(q(userID)), 'r', 'o', 'h', false)")
        _ = try await pending("SELECT * FROM vault.forget_quarantined(\(q(messageID)), 'r', 'o', 'h', false)")
        let r = try await pending("SELECT * FROM vault.request_retention(1, 'r', 'o', 'h')")
        await refused("SELECT vault.retention_delete_logins(\(r), 100)")
        await refused("SELECT * FROM vault.retention_delete_values(\(r), 100)")
        await refused("SELECT vault.retention_delete_data_keys(\(r))")
        let w = try await pending("SELECT * FROM vault.request_rewrap('\(keyID)', 'ffffffffffffffff', true, 'r', 'o', 'h', false)")
        await refused("SELECT vault.start_rewrap(\(w))")
        let k = try await pending("SELECT * FROM vault.request_retokenize(2, 'eeeeeeeeeeeeeeee', '\(keyID)', 'r', 'o', 'h')")
        await refused("SELECT vault.start_retokenize(\(k))")

        // A request number that is not approved: refused in the log, still no grant.
        _ = try await officer.query("SELECT set_config('piivault.approval_request', \(String(u)), false)")
        let unapproved = try await officer.query(PostgresQuery(unsafeSQL:
            "SELECT * FROM vault.request_unmask_user(\(q(userID)), 'r', 'o', 'h', 100, '\(keyID)')")).requiredFirst("request")
        XCTAssertEqual(try unapproved["outcome"].requiredString(), "refused: dual control: request \(u) has 0 of 1 approval(s)")
        await refused("SELECT * FROM vault.release_unmask_user(\(try unapproved["log_seq"].requiredInt()))")
        await officer.close()

        let left = try await query("SELECT count(*) AS n FROM public.user_logins").requiredFirst("n")["n"].requiredInt()
        XCTAssertEqual(left, logins, "nothing deleted")
        let grants = try await query("SELECT count(*) AS n FROM audit.access_grants WHERE seq > \(startedRewrap)")
            .requiredFirst("n")["n"].requiredInt()
        XCTAssertEqual(grants, 0, "no grant for a request")
    }
}
