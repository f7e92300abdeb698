import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// The auditor's tools: checkpoints signed with the auditor's key (checked with the stock `minisign` too), the JSON
/// lines export for a SIEM, the HTML review report.
extension AuditTests {
    private func folder() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("auditor-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    private func minisignVerify(_ file: URL, publicKey: URL, signature: URL? = nil) throws -> ProcessResult {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/minisign") else {
            throw TestSetupError("minisign is not installed; run scripts/install-deps")
        }
        return try runProcess("/usr/bin/minisign", ["-V", "-p", publicKey.path, "-m", file.path]
                                + (signature.map { ["-x", $0.path] } ?? []))
    }

    func testASignedCheckpointVerifiesWithMinisignAndPiivaultAndNothingElseDoes() async throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let keygen = try runPiivault(["audit", "keygen", "--dir", dir.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let secretKey = dir.appendingPathComponent("auditor.key"), publicKey = dir.appendingPathComponent("auditor.pub")
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: secretKey.path)[.posixPermissions] as? Int, 0o600)
        XCTAssertEqual(try runPiivault(["audit", "keygen", "--dir", dir.path]).status, 1, "never overwrites")

        let statement = dir.appendingPathComponent("checkpoint.txt")
        let signed = try runPiivault(["audit", "checkpoint", "--database-url", auditorURL, "--sign", secretKey.path,
                                      "--out", statement.path])
        XCTAssertEqual(signed.status, 0, signed.stderr)
        let head = signed.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertTrue(head.hasPrefix("50:"), head)

        // The stock tool accepts it, and shows the signed head.
        let stock = try minisignVerify(statement, publicKey: publicKey)
        XCTAssertEqual(stock.status, 0, stock.stdout + stock.stderr)
        XCTAssertTrue((stock.stdout + stock.stderr).contains("Trusted comment: piivault checkpoint \(head) at "), stock.stdout + stock.stderr)
        let verified = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", statement.path,
                                        "--auditor-key", publicKey.path])
        XCTAssertEqual(verified.status, 0, verified.stdout + verified.stderr)
        XCTAssertTrue(verified.stdout.contains("signed checkpoint 50 "), verified.stdout)

        // One changed byte: refused by both.
        let changed = dir.appendingPathComponent("changed.txt")
        var bytes = Array(try Data(contentsOf: statement))
        let index = try XCTUnwrap(bytes.firstIndex(of: UInt8(ascii: ":")).map { $0 + 3 })
        bytes[index] = bytes[index] == UInt8(ascii: "a") ? UInt8(ascii: "b") : UInt8(ascii: "a")
        try Data(bytes).write(to: changed)
        try FileManager.default.copyItem(atPath: statement.path + ".minisig", toPath: changed.path + ".minisig")
        XCTAssertNotEqual(try minisignVerify(changed, publicKey: publicKey).status, 0)
        let refused = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", changed.path,
                                       "--auditor-key", publicKey.path])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("the signature does not match the checkpoint"), refused.stderr)

        // Signed by another key: refused by both.
        let other = dir.appendingPathComponent("other")
        try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
        XCTAssertEqual(try runPiivault(["audit", "keygen", "--dir", other.path]).status, 0)
        let forged = dir.appendingPathComponent("forged.txt")
        XCTAssertEqual(try runPiivault(["audit", "checkpoint", "--database-url", auditorURL, "--sign",
                                        other.appendingPathComponent("auditor.key").path, "--out", forged.path]).status, 0)
        XCTAssertNotEqual(try minisignVerify(forged, publicKey: publicKey).status, 0)
        let foreign = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", forged.path,
                                       "--auditor-key", publicKey.path])
        XCTAssertEqual(foreign.status, 1, foreign.stdout + foreign.stderr)
        XCTAssertTrue(foreign.stderr.contains("not by the auditor key"), foreign.stderr)

        // The owner rewrites the chain consistently: it verifies alone, not against the signed checkpoint.
        try await rewriteChainConsistently()
        let alone = try runPiivault(["audit", "verify", "--database-url", auditorURL])
        XCTAssertEqual(alone.status, 0, alone.stdout)
        let caught = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", statement.path,
                                      "--auditor-key", publicKey.path])
        XCTAssertEqual(caught.status, 1, caught.stdout + caught.stderr)
        XCTAssertTrue(caught.stdout.hasPrefix("access log broken at entry 50: rewritten"), caught.stdout)
    }

    func testTheJSONLinesExportReturnsExactlyTheEntriesAfterNAndEachHashRecomputes() throws {
        let result = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "jsonl", "--after-seq", "37"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 13)
        let objects = try lines.map { try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        XCTAssertEqual(objects.map { $0["seq"] as? Int }, (38...50).map { $0 })
        // The independent verifier's own serialisation recomputes each line's hash from the previous one.
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck").path
        let check = try runProcess("python3", ["-c", """
            import hashlib, json, sys
            sys.path.insert(0, sys.argv[1])
            from verify_access_log import entry_bytes
            bad = 0
            for line in sys.stdin:
                row = json.loads(line)
                if hashlib.sha256(bytes.fromhex(row["prev_hash"]) + entry_bytes(row)).hexdigest() != row["hash"]:
                    bad += 1
            print(bad)
            """, script], input: Data(result.stdout.utf8))
        XCTAssertEqual(check.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "0", check.stderr)
        // Consecutive lines chain.
        for (previous, next) in zip(objects, objects.dropFirst()) {
            XCTAssertEqual(next["prev_hash"] as? String, previous["hash"] as? String)
        }
        // Filters combine with it.
        let filtered = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "jsonl", "--after-seq", "37",
                                        "--action", "lookup", "--outcome", "ok"])
        XCTAssertEqual(filtered.stdout.split(separator: "\n").count, (38...50).filter { $0 % 3 == 0 }.count)
        let none = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "jsonl", "--after-seq", "50"])
        XCTAssertEqual(none.status, 0)
        XCTAssertEqual(none.stdout, "")
    }
}

extension AuditTests {
    func testTheHTMLReportOpensInHeadlessChromiumWithChartsAndTheLogsCounts() async throws {
        guard let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw TestSetupError("chromium is not installed; run scripts/install-deps")
        }
        // Two refusals among the 50 entries, so the page has unusual outcomes to list.
        let owner = try await database.connect()
        try await owner.execute("SELECT audit.append_entry('unmask', 'INC-9', 'user_id:u1', 0, 'refused: not permitted', 'mallory', 'host-x')")
        try await owner.execute("SELECT audit.append_entry('unmask', 'INC-9', 'user_id:u2', 0, 'refused: over row cap', 'mallory', 'host-x')")
        await owner.close()
        let dir = try FileManager.default.temporaryDirectory.appendingPathComponent("report-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let page = dir.appendingPathComponent("review.html")
        let result = try runPiivault(["audit", "report", "--database-url", auditorURL, "--html", page.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "report written to \(page.path): 52 entries\n")
        let html = try String(contentsOf: page, encoding: .utf8)
        XCTAssertFalse(html.contains("<script"), "no scripts")
        XCTAssertFalse(html.contains("http://") && !html.contains("http://www.w3.org/2000/svg"), "nothing loaded from elsewhere")

        let chromiumArguments = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                 "--user-data-dir=\(dir.appendingPathComponent("profile").path)"]
        // The DOM as Chromium parsed and laid it out.
        let dom = try runProcess(chromium, chromiumArguments + ["--dump-dom", page.absoluteString])
        XCTAssertEqual(dom.status, 0, dom.stderr)
        func counts(_ chart: String) throws -> [Int] {
            let start = try XCTUnwrap(dom.stdout.range(of: "id=\"\(chart)\""))
            let end = try XCTUnwrap(dom.stdout.range(of: "</svg>", range: start.upperBound..<dom.stdout.endIndex))
            let svg = dom.stdout[start.upperBound..<end.lowerBound]
            return svg.components(separatedBy: "data-count=\"").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        }
        XCTAssertEqual(try counts("per-officer").reduce(0, +), 52)
        XCTAssertEqual(try counts("per-officer"), [52], "one login appended every entry")
        XCTAssertEqual(try counts("per-day").reduce(0, +), 52)
        XCTAssertTrue(dom.stdout.contains("<span id=\"entry-count\">52</span>"))
        XCTAssertTrue(dom.stdout.contains("Intact: 52 entries"), "the verification result")
        let unusualRows = dom.stdout.components(separatedBy: "refused: ").count - 1
        XCTAssertEqual(unusualRows, 2)

        // A screenshot: the charts render to pixels.
        let screenshot = dir.appendingPathComponent("review.png")
        let shot = try runProcess(chromium, chromiumArguments + ["--screenshot=\(screenshot.path)", "--window-size=1200,1600",
                                                                 page.absoluteString])
        XCTAssertEqual(shot.status, 0, shot.stderr)
        let png = try Data(contentsOf: screenshot)
        XCTAssertEqual(Array(png.prefix(4)), [0x89, 0x50, 0x4E, 0x47])
        XCTAssertGreaterThan(png.count, 20_000, "a page with charts, not a blank one")
        if let keep = ProcessInfo.processInfo.environment["PIIVAULT_KEEP_SCREENSHOT"] {
            try? FileManager.default.removeItem(atPath: keep)
            try FileManager.default.copyItem(at: screenshot, to: URL(fileURLWithPath: keep))
        }
    }
}

extension AuditTests {
    func testSafeCSVGuardsFormulasAndATerminalSeesNoEscapeSequences() async throws {
        let owner = try await database.connect()
        try await owner.execute("SELECT audit.append_entry('unmask', '=HYPERLINK(\"http://x\")', 'user_id:@u', 0, 'ok', E'evil\\x1b[2J\\u202e', '@h')")
        await owner.close()
        let plain = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "csv", "--after-seq", "50"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertTrue(plain.stdout.contains(",\"=HYPERLINK(\"\"http://x\"\")\","), "exact bytes by default: \(plain.stdout)")
        XCTAssertTrue(plain.stdout.contains("\u{1b}[2J"), "a file or pipe gets the bytes as stored")
        let safe = try runPiivault(["audit", "log", "--database-url", auditorURL, "--format", "csv", "--after-seq", "50", "--safe-csv"])
        XCTAssertEqual(safe.status, 0, safe.stderr)
        XCTAssertTrue(safe.stdout.contains(",\"'=HYPERLINK(\"\"http://x\"\")\","), safe.stdout)
        XCTAssertTrue(safe.stdout.contains(",\"'@h\","), safe.stdout)
        XCTAssertFalse(safe.stdout.contains(",=") || safe.stdout.contains(",@"), safe.stdout)

        // On a terminal (script(1) gives it a pseudo-terminal), the escape sequence and the bidi override are shown
        // as code points, not obeyed.
        let binary = try piivaultBinary()
        let terminal = try runProcess("/usr/bin/script", ["-qec", "\(binary) audit log --database-url '\(auditorURL!)' --format csv --after-seq 50", "/dev/null"])
        XCTAssertEqual(terminal.status, 0, terminal.stdout + terminal.stderr)
        XCTAssertFalse(terminal.stdout.contains("\u{1b}[2J"), terminal.stdout)
        XCTAssertFalse(terminal.stdout.unicodeScalars.contains { $0.value == 0x202E }, terminal.stdout)
        XCTAssertTrue(terminal.stdout.contains("evil\\u{1b}[2J\\u{202e}"), terminal.stdout.debugDescription)
    }
}

extension AuditTests {
    /// Issue 24, defect 8: the report classifies outcomes (`ok: 6 rows deleted` is a success, not a red refusal),
    /// lists attempts by analyst, ETL and auditor logins in a table of their own and leaves them out of the
    /// accesses-per-officer chart, and lets a long subject wrap instead of widening the page.
    func testTheReportClassifiesOutcomesAndListsOtherLoginsApart() async throws {
        let owner = try await database.connect()
        let longSubject = "message_id:" + String(repeating: "m0123456789", count: 30)
        try await owner.execute("SELECT audit.append_entry('forget', 'ERASE-1', \(longSubject), 6, 'ok: 6 rows deleted', 'o', 'h')")
        await owner.close()
        var analyst = ""
        for role in ["piivault_analyst", "piivault_etl", "piivault_auditor"] {
            let login = try await database.createLogin(memberOf: role)
            if role == "piivault_analyst" { analyst = try XCTUnwrap(URLComponents(string: login)?.user) }
            let connection = try await PostgresConnection.connect(login)
            try await connection.execute("CALL audit.record_denied('unmask', 'curious', 'user_id', 'o', 'h', NULL)")
            await connection.close()
        }
        // A login dropped since is not taken for an officer: its refused attempts stay among the other logins'.
        let admin = try await database.connect()
        try await admin.execute(PostgresQuery(unsafeSQL: "DROP ROLE \"\(analyst)\""))
        await admin.close()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("report-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let page = dir.appendingPathComponent("review.html")
        let result = try runPiivault(["audit", "report", "--database-url", auditorURL, "--html", page.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let html = try String(contentsOf: page, encoding: .utf8)
        func section(_ id: String) throws -> String { try reportSection(id, of: html) }
        let unusual = try section("unusual")
        XCTAssertTrue(unusual.contains("None"), unusual)
        XCTAssertFalse(unusual.contains("rows deleted"), unusual)
        let others = try section("refused-others")
        XCTAssertEqual(others.components(separatedBy: "<tr><td class=\"num\">").count - 1, 3, others)
        XCTAssertTrue(others.contains("refused: not permitted"), others)
        let destructive = try section("destructive")
        XCTAssertTrue(destructive.contains("<td class=\"ok\">ok: 6 rows deleted</td>"), destructive)
        XCTAssertTrue(destructive.contains("<td class=\"subject\">message_id:m0123"), destructive)
        XCTAssertTrue(html.contains("td.subject,td.reason{overflow-wrap:anywhere"), "long subjects wrap")
        let chart = try section("per-officer")
        let counts = chart.components(separatedBy: "data-count=\"").dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }
        XCTAssertEqual(counts, [51], "only the officer's 51 entries, not the three refused logins")
    }
}

extension AuditTests {
    /// An officer who has left (SECURITY.md: revoke their membership) is still an officer for the period they were
    /// one: their accesses stay in the review's charts, not among the refused attempts of other logins.
    func testTheReportKeepsARevokedOfficersAccessesAsAnOfficers() async throws {
        let aliceURL = try await database.createLogin(memberOf: "piivault_compliance")
        let alice = try XCTUnwrap(URLComponents(string: aliceURL)?.user)
        let officer = try await PostgresConnection.connect(aliceURL)
        let token = "ip.v1." + String(repeating: "e", count: 64)
        _ = try await officer.query("""
            SELECT log_seq FROM vault.request_unmask_tokens(ARRAY[\(token)], 'SAR-LEFT', 'o', 'h', 100, '0011223344556677')
            """)
        await officer.close()
        let owner = try await database.connect()
        try await owner.execute(PostgresQuery(unsafeSQL: "REVOKE piivault_compliance FROM \"\(alice)\""))
        await owner.close()

        let page = FileManager.default.temporaryDirectory.appendingPathComponent("left-\(ScratchDatabase.randomHex(4)).html")
        defer { try? FileManager.default.removeItem(at: page) }
        let result = try runPiivault(["audit", "report", "--database-url", auditorURL, "--html", page.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let html = try String(contentsOf: page, encoding: .utf8)
        func section(_ id: String) throws -> String { try reportSection(id, of: html) }
        let others = try section("refused-others"), perOfficer = try section("per-officer")
        XCTAssertFalse(others.contains(alice), others)
        XCTAssertTrue(perOfficer.contains(alice), perOfficer)
    }
}

extension AuditTests {
    /// Issue 24, defect 5: a checkpoint signed on a copy of the database (`CREATE DATABASE c TEMPLATE db`, which
    /// carries the same log byte for byte) is refused against the original, and one of the original against the copy,
    /// each in one line; the original's own checkpoint still matches.
    func testACheckpointOfACopyIsRefused() async throws {
        let dir = try folder()
        defer { try? FileManager.default.removeItem(at: dir) }
        XCTAssertEqual(try runPiivault(["audit", "keygen", "--dir", dir.path]).status, 0)
        let secretKey = dir.appendingPathComponent("auditor.key").path, publicKey = dir.appendingPathComponent("auditor.pub").path
        let copy = try await ScratchDatabase.create(prefix: "auditcopy", template: database.name)
        defer { Task { await copy.drop() } }
        let auditorLogin = try XCTUnwrap(URLComponents(string: auditorURL)?.user)
        let copyConnection = try await copy.connect()
        try await copyConnection.execute(PostgresQuery(unsafeSQL: "GRANT CONNECT ON DATABASE \(copy.name) TO \(auditorLogin)"))
        await copyConnection.close()
        var copyURL = try XCTUnwrap(URLComponents(string: auditorURL))
        copyURL.path = "/" + copy.name
        let copyAuditorURL = try XCTUnwrap(copyURL.string)

        let ofCopy = dir.appendingPathComponent("copy.txt").path, ofOriginal = dir.appendingPathComponent("original.txt").path
        XCTAssertEqual(try runPiivault(["audit", "checkpoint", "--database-url", copyAuditorURL, "--sign", secretKey,
                                        "--out", ofCopy]).status, 0)
        XCTAssertEqual(try runPiivault(["audit", "checkpoint", "--database-url", auditorURL, "--sign", secretKey,
                                        "--out", ofOriginal]).status, 0)
        XCTAssertTrue(try String(contentsOfFile: ofCopy, encoding: .utf8).contains("\ndatabase-id: "))

        let refused = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", ofCopy,
                                       "--auditor-key", publicKey])
        XCTAssertEqual(refused.status, 1, refused.stdout + refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("is a checkpoint of another database"), refused.stderr)
        let refusedOnCopy = try runPiivault(["audit", "verify", "--database-url", copyAuditorURL, "--checkpoint",
                                             ofOriginal, "--auditor-key", publicKey])
        XCTAssertEqual(refusedOnCopy.status, 1, refusedOnCopy.stdout + refusedOnCopy.stderr)
        let matches = try runPiivault(["audit", "verify", "--database-url", auditorURL, "--checkpoint", ofOriginal,
                                       "--auditor-key", publicKey])
        XCTAssertEqual(matches.status, 0, matches.stdout + matches.stderr)
        XCTAssertTrue(matches.stdout.contains("matches"), matches.stdout)
    }
}

extension AuditTests {
    /// The part of a report page from the element with `id` to the next heading.
    func reportSection(_ id: String, of html: String) throws -> String {
        let start = try XCTUnwrap(html.range(of: "id=\"\(id)\""), "no \(id) in the page")
        let end = html.range(of: "<h2>", range: start.upperBound..<html.endIndex)?.lowerBound ?? html.endIndex
        return String(html[start.upperBound..<end])
    }
}
