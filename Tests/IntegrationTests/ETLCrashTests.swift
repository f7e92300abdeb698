import Foundation
import Postgres
import TestSupport
import XCTest

/// Crash safety (issue #5, item 4): a run killed mid-way, or whose database goes away mid-way, loses nothing and
/// loads nothing twice once a later run has completed. The real binary, moto and Postgres, as in the rest of
/// `ETLTests` (whose setUp, tearDown and helpers these tests share).
extension ETLTests {
    func testSIGKILLMidRunThenRerunLoadsEveryMessageOnce() async throws {
        let records = crashRecords(valid: 200)
        let queueURL = try await sendRecords(records, queue: "sigkill-\(ScratchDatabase.randomHex(4))")
        let run = try startETL(queueURL: queueURL)

        // Kill as soon as the first batches have committed, while the rest is still queued or in hand.
        try await waitForFirstCommit(of: run)
        let wasRunning = run.isRunning
        run.send(SIGKILL)
        let killed = try await run.waitForExit(timeout: 10)
        XCTAssertTrue(killed, "the run exits on SIGKILL")
        XCTAssertTrue(wasRunning, "the run was still going when it was killed")
        XCTAssertTrue(run.killedBySignal && run.status == SIGKILL, "SIGKILL ended the run, not the run itself")
        let loadedAtKill = try await count("user_logins")
        XCTAssertGreaterThan(loadedAtKill, 0, "the kill came after a commit")
        XCTAssertLessThan(loadedAtKill, records.count - 2, "the kill came before the end")
        let committed = try await loadedAtKill + count("vault.quarantine")
        let queuedAtKill = try await queueDepth(queueURL)
        XCTAssertGreaterThanOrEqual(committed + queuedAtKill, records.count,
                                    "no message was deleted before its commit")
        let unfinished = try await query("SELECT count(*) FROM public.etl_runs WHERE finished_at IS NULL")
        XCTAssertEqual(try unfinished.first![0].requiredInt(), 1, "the killed run never got to record its end")

        let logs = try await drain(queueURL, records: records)
        try await assertEachMessageLoadedOnce(records, queueURL: queueURL, logs: run.stdout + run.stderr + logs)
    }

    func testDatabaseGoingAwayMidRunFailsWithoutLosingMessages() async throws {
        let records = crashRecords(valid: 150)
        let queueURL = try await sendRecords(records, queue: "dbgone-\(ScratchDatabase.randomHex(4))")
        let run = try startETL(queueURL: queueURL)

        try await waitForFirstCommit(of: run)
        XCTAssertTrue(run.isRunning, "the run was still going when its database went away")
        // Every session of the scratch database ends, the run's among them, as when the server restarts.
        let admin = try await PostgresConnection.connect(database.adminURL)
        let terminated = try await admin.query("""
            SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = \(database.name) AND pid <> pg_backend_pid()
            """).first![0].requiredInt()
        await admin.close()
        XCTAssertGreaterThan(terminated, 0)

        let exited = try await run.waitForExit(timeout: 20)
        if !exited { run.send(SIGKILL) }
        XCTAssertTrue(exited, "the run gives up when its database goes away instead of hanging")
        XCTAssertFalse(run.killedBySignal, "the run exits by itself")
        XCTAssertEqual(run.status, 1, "exit 1: the run did not load everything (README, Exit status)")
        let lastLine = run.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(lastLine.hasPrefix("piivault: error:"), scrub(lastLine, records))
        XCTAssertTrue(lastLine.contains("database connection was lost"), scrub(lastLine, records))
        XCTAssertTrue(lastLine.contains("a later run will load them"), scrub(lastLine, records))

        // Nothing left the queue without being committed: what is loaded and what is still queued cover it all. The
        // emulator's counts are approximate for a moment after a delete (as SQS's are), so this waits for them to
        // agree; the drain below is the exact check (every message loaded once, none lost).
        let committed = try await count("user_logins") + count("vault.quarantine")
        XCTAssertLessThan(committed, records.count, "the database went away before the end")
        try await waitUntil("what is loaded and what is queued cover every message", timeout: 10) {
            try await committed + self.queueDepth(queueURL) >= records.count
        }

        let logs = try await drain(queueURL, records: records)
        try await assertEachMessageLoadedOnce(records, queueURL: queueURL, logs: run.stdout + run.stderr + logs)
    }

    // MARK: Helpers

    /// The visibility timeout of the interrupted runs, in seconds: what they held comes back this soon.
    private var shortVisibility: Int { 2 }
    /// The visibility timeout of the reruns that drain the queue after an interrupted run.
    private var rerunVisibility: Int { 5 }

    /// `valid` records, each with its own user_id, ip and device_id, then two that break the rules.
    private func crashRecords(valid: Int) -> [[String: Any]] {
        var records: [[String: Any]] = (0..<valid).map { i in
            ["user_id": "crash-user-\(i)", "app_version": "2.3.0", "device_type": "android", "locale": "RU",
             "ip": "10.77.\(i / 256).\(i % 256)", "device_id": String(format: "%03d-77-%04d", i % 1000, i)]
        }
        records.append(["foo": "oops_wrong_msg_type", "bar": "123"])
        records.append(["user_id": "crash-bad-ip", "device_type": "ios", "ip": "999.1.1.1", "device_id": "bad-ip-dev"])
        return records
    }

    private func sendRecords(_ records: [[String: Any]], queue: String) async throws -> String {
        try await SQSEmulator.send(records.map(SQSEmulator.pythonJSON), toQueueNamed: queue)
    }

    /// Starts a run in small batches (many commits, so there is a middle to interrupt) in the background.
    private func startETL(queueURL: String) throws -> BackgroundProcess {
        let invocation = try etlInvocation([
            "--queue-url", queueURL, "--batch-size", "20", "--visibility-timeout", String(shortVisibility),
        ])
        return try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
    }

    /// Polls (on one connection) until the run has committed rows; fails if it exits or takes too long first.
    private func waitForFirstCommit(of run: BackgroundProcess) async throws {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        let deadline = Date().addingTimeInterval(30)
        while try await connection.query("SELECT count(*) FROM user_logins").first![0].requiredInt() == 0 {
            guard run.isRunning else { throw TestSetupError("the run exited before its first commit") }
            guard Date() < deadline else { throw TestSetupError("no commit within 30 s") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until what the interrupted run held is visible again, then runs until the queue is empty (at most three
    /// runs, each after nothing is in flight any more). Returns the runs' output.
    ///
    /// The reruns use a short visibility timeout too: a message a rerun received but could not delete (a long poll
    /// still open as it ended, or moto losing one of two DeleteMessageBatch calls that overlap) is back soon.
    private func drain(_ queueURL: String, records: [[String: Any]]) async throws -> String {
        var logs = ""
        for _ in 0..<3 {
            try await waitUntilNothingInFlight(queueURL, timeout: Double(rerunVisibility) + 20)
            let rerun = try etl(["--queue-url", queueURL, "--visibility-timeout", String(rerunVisibility)])
            logs += rerun.stdout + rerun.stderr
            XCTAssertEqual(rerun.status, 0, scrub(rerun.stderr, records))
            if try await queueDepth(queueURL) == 0 { break }
        }
        return logs
    }

    private func assertEachMessageLoadedOnce(_ records: [[String: Any]], queueURL: String, logs: String) async throws {
        let valid = records.filter { ($0["user_id"] as? String)?.hasPrefix("crash-user-") ?? false }.count
        let rows = try await query("SELECT count(*), count(DISTINCT message_id), count(DISTINCT user_id) FROM user_logins")
        XCTAssertEqual(try rows.first![0].requiredInt(), valid, "every valid message loaded exactly once")
        XCTAssertEqual(try rows.first![1].requiredInt(), valid)
        XCTAssertEqual(try rows.first![2].requiredInt(), valid, "one row per sent record")
        let quarantined = try await count("vault.quarantine")
        XCTAssertEqual(quarantined, records.count - valid, "each invalid message quarantined once")
        let depth = try await queueDepth(queueURL)
        XCTAssertEqual(depth, 0, "nothing left in the queue, in flight or visible")
        try await assertNoPlaintext(in: records, logs: logs)
    }

    /// `text` with every ip and device_id of `records` replaced, so a failure message cannot print PII.
    private func scrub(_ text: String, _ records: [[String: Any]]) -> String {
        var text = text
        for record in records {
            for field in ["ip", "device_id"] {
                if let value = record[field] as? String { text = text.replacingOccurrences(of: value, with: "***") }
            }
        }
        return text
    }
}
