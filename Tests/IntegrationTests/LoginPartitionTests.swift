import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// user_logins partitioned by ETL run (migration 0035): each run loads a table of its own, indexed when the run ends;
/// message ids stay unique across partitions; finished runs from before this month are merged into one partition.
extension ETLTests {
    /// `count` login lines of users `prefix-N`, written to a new file.
    private func loginFile(_ prefix: String, count: Int) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(ScratchDatabase.randomHex(4)).ndjson")
        let lines = (0..<count).map { i in
            #"{"user_id": "\#(prefix)-\#(i)", "device_type": "ios", "ip": "198.51.100.\#(i % 250)", "device_id": "\#(prefix)-device-\#(i)", "locale": "RU", "app_version": "2.3.0"}"#
        }
        try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    /// The partitions of user_logins, each with its rows and its number of indexes, in partition order.
    private func partitions() async throws -> [(name: String, rows: Int, indexes: Int)] {
        let names = try await query("""
            SELECT c.relname::text AS name FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'public.user_logins'::regclass ORDER BY c.relname
            """).map { try $0["name"].requiredString() }
        var result: [(String, Int, Int)] = []
        for name in names {
            let indexes = try await query(PostgresQuery(unsafeSQL:
                "SELECT count(*) AS n FROM pg_index WHERE indrelid = 'public.\(name)'::regclass")).first!["n"].requiredInt()
            result.append((name, try await count("public.\(name)"), indexes))
        }
        return result
    }

    func testEachRunLoadsAPartitionOfItsOwnIndexedWhenItEnds() async throws {
        let file = try loginFile("part", count: 30)
        defer { try? FileManager.default.removeItem(at: file) }
        let first = try etl(["--from-file", file.path, "--batch-size", "10"])
        XCTAssertEqual(first.status, 0, first.stderr)
        let runID = try await query("SELECT max(id) AS id FROM etl_runs").first!["id"].requiredInt()
        var parts = try await partitions()
        XCTAssertEqual(parts.map(\.name), ["user_logins_before_partitions", "user_logins_run_\(runID)"])
        XCTAssertEqual(parts[1].rows, 30)
        XCTAssertEqual(parts[1].indexes, 6, "user_id, three digests, create_date, rows without a subject hash")
        let ids = try await count("public.login_message_ids")
        XCTAssertEqual(ids, 30)

        // Loaded again: every message is a duplicate, found in login_message_ids across partitions.
        let again = try etl(["--from-file", file.path, "--batch-size", "10"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(summaryCounts(again.stdout)["duplicates"], 30, again.stdout)
        let logins = try await count("public.user_logins")
        XCTAssertEqual(logins, 30)
        parts = try await partitions()
        XCTAssertEqual(parts.count, 3)
        XCTAssertEqual(parts[2].rows, 0)

        // Deleting a login frees its message id (as the unique index did); a message id never changes.
        _ = try await query("DELETE FROM user_logins WHERE user_id = 'part-0'")
        let idsLeft = try await count("public.login_message_ids")
        XCTAssertEqual(idsLeft, 29)
        do {
            _ = try await query("UPDATE user_logins SET message_id = 'other' WHERE user_id = 'part-1'")
            XCTFail("a message id changed")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "0A000", error.description)
        }
        // Nobody but the owner reaches a partition directly (every write goes through the parent's triggers).
        let etlLogin = try await database.createLogin(memberOf: "piivault_etl")
        let direct = try await PostgresConnection.connect(etlLogin)
        do {
            _ = try await direct.query(PostgresQuery(unsafeSQL: "SELECT count(*) FROM public.user_logins_run_\(runID)"))
            XCTFail("the ETL login read a partition directly")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", error.description)
        }
        await direct.close()
    }

    func testARunThatDiedIsIndexedByTheNextRun() async throws {
        let file = try loginFile("dead", count: 30)
        let other = try loginFile("next", count: 5)
        defer { try? FileManager.default.removeItem(at: file); try? FileManager.default.removeItem(at: other) }
        let killed = try etl(["--from-file", file.path, "--batch-size", "10"],
                             environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "1"])
        XCTAssertEqual(killed.status, 75, killed.stderr)
        let deadRun = try await query("SELECT max(id) AS id FROM etl_runs").first!["id"].requiredInt()
        var parts = try await partitions()
        XCTAssertEqual(parts.last?.name, "user_logins_run_\(deadRun)")
        XCTAssertEqual(parts.last?.rows, 10, "one batch committed")
        XCTAssertEqual(parts.last?.indexes, 0, "not indexed while its run might still load it")

        let next = try etl(["--from-file", other.path])
        XCTAssertEqual(next.status, 0, next.stderr)
        let outcome = try await query("SELECT outcome FROM etl_runs WHERE id = \(deadRun)").first!["outcome"].requiredString()
        XCTAssertEqual(outcome, "abandoned")
        parts = try await partitions()
        XCTAssertEqual(parts.first { $0.name == "user_logins_run_\(deadRun)" }?.indexes, 6)
    }

    func testFinishedRunsFromBeforeThisMonthAreMergedIntoOnePartition() async throws {
        var files: [URL] = []
        defer { for file in files { try? FileManager.default.removeItem(at: file) } }
        for i in 0..<3 {
            files.append(try loginFile("merge\(i)", count: 20))
            let run = try etl(["--from-file", files[i].path])
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        let runs = try await query("SELECT id FROM etl_runs ORDER BY id").map { try $0["id"].requiredInt() }
        XCTAssertEqual(runs.count, 3)
        // Those three runs began last month.
        _ = try await query("UPDATE etl_runs SET started_at = started_at - interval '40 days', finished_at = finished_at - interval '40 days'")
        let lookupBefore = try await query("SELECT masked_ip FROM user_logins WHERE user_id = 'merge1-7'").first!["masked_ip"].requiredString()

        files.append(try loginFile("merge3", count: 5))
        let fourth = try etl(["--from-file", files[3].path])
        XCTAssertEqual(fourth.status, 0, fourth.stderr)
        XCTAssertTrue(fourth.stderr.contains("merged the user_logins partitions of 3 finished runs from before this month into one"),
                      fourth.stderr)
        let parts = try await partitions()
        let fourthRun = try await query("SELECT max(id) AS id FROM etl_runs").first!["id"].requiredInt()
        XCTAssertEqual(parts.map(\.name), ["user_logins_before_partitions", "user_logins_run_\(fourthRun)",
                                           "user_logins_runs_\(runs[0])_\(runs[2])"])
        XCTAssertEqual(parts[2].rows, 60)
        XCTAssertEqual(parts[2].indexes, 6)
        let mergedIDs = try await count("public.login_message_ids")
        XCTAssertEqual(mergedIDs, 65)
        let lookupAfter = try await query("SELECT masked_ip FROM user_logins WHERE user_id = 'merge1-7'").first!["masked_ip"].requiredString()
        XCTAssertEqual(lookupAfter, lookupBefore)
        // Still unique across the merged partition.
        let again = try etl(["--from-file", files[1].path])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(summaryCounts(again.stdout)["duplicates"], 20, again.stdout)
        XCTAssertFalse(again.stderr.contains("merged the user_logins partitions"), "nothing left to merge: \(again.stderr)")

        // A merge gives up, changing nothing, while a partition it would merge is being written.
        _ = try await query("UPDATE etl_runs SET started_at = started_at - interval '40 days' WHERE id >= \(fourthRun)")
        let writer = try await database.connect()
        _ = try await writer.query("BEGIN")
        _ = try await writer.query(PostgresQuery(unsafeSQL: "DELETE FROM user_logins WHERE user_id = 'merge3-0'"))
        let busy = try etl(["--from-file", files[0].path])
        XCTAssertEqual(busy.status, 0, busy.stderr)
        XCTAssertFalse(busy.stderr.contains("merged the user_logins partitions"), busy.stderr)
        XCTAssertTrue(busy.stderr.contains("could not merge older runs' partitions of user_logins: user_logins was busy"),
                      busy.stderr)
        _ = try await writer.query("ROLLBACK")
        await writer.close()
        // Only in READ COMMITTED: a REPEATABLE READ snapshot, taken before the wait for the lock, would not see an
        // erasure committed during the wait, and the copy would bring its rows back.
        let repeatable = try await database.connect()
        do {
            _ = try await repeatable.query("BEGIN ISOLATION LEVEL REPEATABLE READ")
            _ = try await repeatable.query("SELECT public.merge_run_partitions()")
            XCTFail("a merge ran in a REPEATABLE READ transaction")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "25000", error.description)
        }
        await repeatable.close()
        let unmerged = try await partitions()
        XCTAssertTrue(unmerged.contains { $0.name == "user_logins_run_\(fourthRun)" }, "\(unmerged)")
    }

    /// Values an earlier run sealed, met again by batches that do not ask the vault (the one before found none of its
    /// values there): each is kept once, as the earlier run sealed it, and every login's tokens are in the vault.
    func testValuesAlreadySealedAreKeptOnceWhenABatchDoesNotAskTheVault() async throws {
        func lines(_ prefix: String, _ range: Range<Int>, values: String) -> String {
            range.map { i in
                #"{"user_id": "\#(prefix)-\#(i)", "device_type": "ios", "ip": "203.0.113.\#(i % 250)", "device_id": "\#(values)-device-\#(i)"}"#
            }.joined(separator: "\n") + "\n"
        }
        let first = FileManager.default.temporaryDirectory.appendingPathComponent("sealed-once-a-\(ScratchDatabase.randomHex(4)).ndjson")
        let second = FileManager.default.temporaryDirectory.appendingPathComponent("sealed-once-b-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: first); try? FileManager.default.removeItem(at: second) }
        try lines("early", 100..<120, values: "old").write(to: first, atomically: true, encoding: .utf8)
        // The second run: a batch of new values (the vault holds none: the next batches do not ask), then two batches
        // of other users with the first run's ips and device ids.
        try (lines("new", 0..<10, values: "new") + lines("late", 100..<120, values: "old"))
            .write(to: second, atomically: true, encoding: .utf8)
        XCTAssertEqual(try etl(["--from-file", first.path]).status, 0)
        let sealedBefore = try await query("SELECT token, sealed FROM vault.secrets ORDER BY token")
            .map { [try $0["token"].requiredString(), try $0["sealed"].requiredBytes().map { String($0) }.joined()] }
        XCTAssertEqual(sealedBefore.count, 40)

        let run = try etl(["--from-file", second.path, "--batch-size", "10", "--summary-json", "-"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let summary = try JSONSerialization.jsonObject(
            with: Data(run.stdout.split(separator: "\n").last.map(String.init)?.utf8 ?? "".utf8)) as? [String: Any]
        XCTAssertEqual(summary?["loaded"] as? Int, 30, run.stdout)
        XCTAssertEqual(summary?["values_sealed"] as? Int, 20, "only the new batch's 20 values: \(run.stdout)")
        let sealedAfter = try await query("SELECT token, sealed FROM vault.secrets ORDER BY token")
            .map { [try $0["token"].requiredString(), try $0["sealed"].requiredBytes().map { String($0) }.joined()] }
        XCTAssertEqual(sealedAfter.count, 60)
        XCTAssertTrue(Set(sealedBefore).isSubset(of: Set(sealedAfter)), "the first run's sealed values kept as they were")
        let dangling = try await count("""
            (SELECT 1 FROM user_logins AS l WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip)
                OR NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id)) AS missing
            """)
        XCTAssertEqual(dangling, 0)
    }
}
