import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault runs`: the run history as the operator and the auditor see it.
extension ETLTests {
    private func writeRecords(_ records: [String], name: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(ScratchDatabase.randomHex(4)).json")
        try Data(("[" + records.joined(separator: ",") + "]").utf8).write(to: url)
        return url
    }

    /// Starts `etl` on `queueURL` in the background, with a long idle wait, and returns once its run row exists.
    private func startIdleRun(queueURL: String) async throws -> BackgroundProcess {
        let before = try await count("public.etl_runs")
        let invocation = try etlInvocation(["--queue-url", queueURL, "--idle-exit", "60"])
        let process = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        let deadline = Date().addingTimeInterval(20)
        while try await count("public.etl_runs") == before {
            guard process.isRunning, Date() < deadline else {
                throw TestSetupError("the run did not start: \(process.stderr)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        return process
    }

    func testRunsShowsCompletedInterruptedAndFailedRunsAndRefusesAnalysts() async throws {
        // 1. Completed.
        let one = #"{"user_id": "u1", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d-1"}"#
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("runs-\(ScratchDatabase.randomHex(4)).ndjson")
        try (one + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        XCTAssertEqual(try etl(["--from-file", file.path]).status, 0)

        // 2. Interrupted: SIGTERM while it waits on an empty queue.
        let empty = try writeRecords([], name: "runs-empty")
        defer { try? FileManager.default.removeItem(at: empty) }
        let queueURL = try await send(empty, queue: "runs-\(ScratchDatabase.randomHex(4))")
        let interrupted = try await startIdleRun(queueURL: queueURL)
        interrupted.send(SIGTERM)
        let interruptedEnded = try await interrupted.waitForExit(timeout: 20)
        XCTAssertTrue(interruptedEnded)
        XCTAssertEqual(interrupted.status, 0, interrupted.stderr)

        // 3. Failed: the database ends every session, then a message arrives.
        let failing = try await startIdleRun(queueURL: queueURL)
        let admin = try await PostgresConnection.connect(database.adminURL)
        _ = try await admin.query("""
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = \(database.name) AND pid <> pg_backend_pid()
            """)
        await admin.close()
        let message = try writeRecords([#"{"user_id": "u2", "device_type": "ios", "ip": "192.0.2.2", "device_id": "d-2"}"#], name: "runs-one")
        defer { try? FileManager.default.removeItem(at: message) }
        _ = try await send(message, queue: URL(string: queueURL)!.lastPathComponent)
        let failedEnded = try await failing.waitForExit(timeout: 30)
        XCTAssertTrue(failedEnded)
        XCTAssertEqual(failing.status, 1, failing.stderr)

        // As the operator (an ETL login): all three, newest first, with their outcomes.
        let operatorURL = try await database.createLogin(memberOf: "piivault_etl")
        let shown = try runPiivault(["runs", "--database-url", operatorURL, "--format", "json"])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let runs = try XCTUnwrap(try JSONSerialization.jsonObject(with: shown.stdoutData) as? [[String: Any]])
        XCTAssertEqual(runs.map { $0["outcome"] as? String }, ["failed", "interrupted", "completed"])
        XCTAssertEqual(runs.map { $0["source"] as? String }.last, "file:\(file.path)")
        XCTAssertEqual(runs.last?["loaded"] as? Int, 1)
        XCTAssertNotNil(runs.first?["finished_at"] as? String, "the failure was recorded on a fresh connection")
        XCTAssertTrue((runs.first?["error"] as? String ?? "").contains("connection"), "\(runs.first ?? [:])")
        XCTAssertEqual(runs.last?["token_key_version"] as? Int, 1)

        // The table names the same outcomes; the auditor may read it too.
        let auditorURL = try await database.createLogin(memberOf: "piivault_auditor")
        let table = try runPiivault(["runs", "--database-url", auditorURL, "--last", "2"])
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertEqual(table.stdout.split(separator: "\n").count, 3, table.stdout)
        XCTAssertTrue(table.stdout.contains("failed") && table.stdout.contains("interrupted"), table.stdout)

        // An analyst may not.
        let analystURL = try await database.createLogin(memberOf: "piivault_analyst")
        let refused = try runPiivault(["runs", "--database-url", analystURL])
        XCTAssertEqual(refused.status, 77, refused.stderr)
        XCTAssertTrue(refused.stderr.hasPrefix("piivault: error: the database refused"), refused.stderr)
        XCTAssertEqual(refused.stdout, "")
    }

    func testARunningRowWithoutALiveProcessIsShownAbandoned() async throws {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        try await connection.execute("INSERT INTO public.etl_runs (source) VALUES ('sqs:dead')")
        let shown = try runPiivault(["runs", "--database-url", database.url, "--format", "csv"])
        XCTAssertEqual(shown.status, 0, shown.stderr)
        let lines = shown.stdout.split(separator: "\r\n")
        XCTAssertEqual(lines.count, 2, shown.stdout)
        XCTAssertTrue(lines[1].contains(",abandoned,no live process holds this run"), shown.stdout)
    }
}
