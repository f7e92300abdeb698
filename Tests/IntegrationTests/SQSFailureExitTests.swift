import Foundation
import TestSupport
import XCTest

/// SQS failures through the real binary map to the documented exit codes with one line that says what to do
/// (issue 10, acceptance 2), and a receive whose answer is lost fails the run (issue 14, item 1).
final class SQSFailureExitTests: AWSTestCase {
    private var emulatorKeys: [String: String?] {
        ["AWS_ACCESS_KEY_ID": "AKIAEXITTEST", "AWS_SECRET_ACCESS_KEY": "exit-test-secret-never-printed"]
    }

    /// The run's standard error is exactly one `piivault: error:` line containing every fragment.
    private func assertOneErrorLine(_ result: ProcessResult, _ fragments: [String], file: StaticString = #filePath,
                                    line: UInt = #line) {
        let lines = errorLines(result)
        XCTAssertEqual(lines.count, 1, "stderr: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(lines.first?.hasPrefix("piivault: error: ") ?? false, result.stderr, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(result.stderr.contains(fragment), "\(result.stderr) lacks \(fragment)", file: file, line: line)
        }
        XCTAssertFalse(result.stderr.contains("never-printed"), "a secret was printed", file: file, line: line)
    }

    func testUnreachableEndpointExits69() async throws {
        let port = try closedPort()
        let result = try etl(["--queue-url", "http://127.0.0.1:\(port)/000000000000/logins"],
                             environment: emulatorKeys.merging(["PIIVAULT_LOG_LEVEL": "error"]) { $1 })
        XCTAssertEqual(result.status, 69, result.stderr)
        assertOneErrorLine(result, ["cannot reach SQS at http://127.0.0.1:\(port)", "check the endpoint"])
        let runs = try await runOutcomes()
        XCTAssertEqual(runs, [], "no run starts when SQS cannot be reached")
    }

    func testRefusedCredentialsExit77() async throws {
        let front = try AWSFront(["deny": "InvalidClientTokenId"])
        defer { front.stop() }
        let result = try etl(["--queue-url", "\(front.url)/000000000000/logins"],
                             environment: emulatorKeys.merging(["PIIVAULT_LOG_LEVEL": "error"]) { $1 })
        XCTAssertEqual(result.status, 77, result.stderr)
        assertOneErrorLine(result, ["InvalidClientTokenId", "credentials from environment",
                                    "check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"])
        XCTAssertEqual(front.entries(kind: "sqs").first?["key"] as? String, "AKIAEXITTEST",
                       "the front saw the request signed with the given key")
    }

    func testMissingQueueExits1NamingTheQueue() async throws {
        let endpoint = try TestServices.sqsEndpoint()
        let name = "no-such-queue-\(ScratchDatabase.randomHex(4))"
        let byURL = try etl(["--queue-url", "\(endpoint)/000000000000/\(name)"],
                            environment: emulatorKeys.merging(["PIIVAULT_LOG_LEVEL": "error"]) { $1 })
        XCTAssertEqual(byURL.status, 1, byURL.stderr)
        assertOneErrorLine(byURL, ["no such queue", name, "check the queue URL or name"])
        let byName = try etl(["--queue-name", name],
                             environment: emulatorKeys.merging(["PIIVAULT_LOG_LEVEL": "error",
                                                                "AWS_ENDPOINT_URL_SQS": endpoint]) { $1 })
        XCTAssertEqual(byName.status, 1, byName.stderr)
        assertOneErrorLine(byName, ["no such queue", "\"\(name)\"", "check the queue URL or name"])
    }

    /// No credentials anywhere: 77, one line naming each provider tried.
    func testNoCredentialsExit77() async throws {
        let endpoint = try TestServices.sqsEndpoint()
        let result = try etl(["--queue-url", "\(endpoint)/000000000000/logins"],
                             environment: ["PIIVAULT_LOG_LEVEL": "error"])
        XCTAssertEqual(result.status, 77, result.stderr)
        assertOneErrorLine(result, ["no AWS credentials found", "environment: AWS_ACCESS_KEY_ID",
                                    "shared files: no profile \"default\"", "set AWS_ACCESS_KEY_ID"])
    }

    /// A run that fails hands back what it received and did not load (ChangeMessageVisibilityBatch to 0): with a
    /// visibility timeout of ten minutes, right after the run every message not loaded is visible again, none in
    /// flight, so a rerun need not wait.
    func testAFailedRunHandsBackTheMessagesItDidNotLoad() async throws {
        let queueURL = try await sendSample(queue: "handback-\(ScratchDatabase.randomHex(4))")
        // One user's login fails its batch with an error that is not the row's (so the batch is not split around it).
        let owner = try await database.connect()
        try await owner.executeScript("""
            CREATE FUNCTION public.fail_one_user() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.user_id = 'c1ae09c9-5721-46bc-8830-b99be558f3b0' THEN
                    RAISE EXCEPTION 'the test fails this batch' USING ERRCODE = 'XX000';
                END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER fail_one_user BEFORE INSERT ON public.user_logins
                FOR EACH ROW EXECUTE FUNCTION public.fail_one_user();
            """)
        await owner.close()
        let result = try etl(["--queue-url", queueURL, "--visibility-timeout", "600", "--batch-size", "10",
                              "--concurrency", "1"], environment: emulatorKeys)
        XCTAssertEqual(result.status, 1, "stdout: \(result.stdout) stderr: \(result.stderr)")
        let loaded = try await loadedRows()
        let quarantined = try await query("SELECT count(*) FROM vault.quarantine").first![0].requiredInt()
        XCTAssertLessThan(loaded + quarantined, 100)
        let counts = try await SQSEmulator.counts(queueURL: queueURL)
        XCTAssertEqual(counts.inFlight, 0, "messages the failed run received are still hidden")
        XCTAssertEqual(counts.visible, 100 - loaded - quarantined)
    }

    /// Issue 14, item 1: a ReceiveMessage answer that is larger than any SQS answer can be (after SQS has hidden
    /// the messages it holds) fails the run, exit 1 and `failed` in etl_runs, instead of a retry that receives
    /// nothing and a run that calls itself completed. Before the fix the run printed `completed` and exited 0.
    func testOversizedReceiveFailsTheRun() async throws {
        let queueURL = try await sendSample(queue: "oversized-\(ScratchDatabase.randomHex(4))")
        // 64 MiB of padding: more than the largest legal answer (about 60 MiB).
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(),
                                  "oversize_first_receive": 64 * 1024 * 1024])
        defer { front.stop() }
        let path = URL(string: queueURL)!.path
        let result = try etl(["--queue-url", front.url + path, "--visibility-timeout", "30", "--concurrency", "1"],
                             environment: emulatorKeys)
        XCTAssertEqual(result.status, 1, "stdout: \(result.stdout) stderr: \(result.stderr)")
        XCTAssertFalse(result.stdout.contains("completed"), result.stdout)
        XCTAssertTrue(result.stderr.contains("larger than any SQS answer can be"), result.stderr)
        XCTAssertTrue(result.stderr.contains("visibility timeout"), result.stderr)
        let outcomes = try await runOutcomes()
        XCTAssertEqual(outcomes, ["failed"])
        XCTAssertEqual(front.entries(kind: "oversized").count, 1)
        XCTAssertEqual(front.entries(kind: "sqs").filter { $0["action"] as? String == "ReceiveMessage" }.count, 1,
                       "the receive was not repeated")
    }

    /// The other side of the limit: an answer of 40 MiB (legal: ten 1 MiB messages escape to up to 60 MiB) is read,
    /// and the run loads everything. With the old 16 MiB limit this answer was lost and its messages hidden.
    func testLargeLegalReceiveIsRead() async throws {
        let queueURL = try await sendSample(queue: "large-\(ScratchDatabase.randomHex(4))")
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(),
                                  "oversize_first_receive": 40 * 1024 * 1024])
        defer { front.stop() }
        let result = try etl(["--queue-url", front.url + URL(string: queueURL)!.path, "--concurrency", "1"],
                             environment: emulatorKeys)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains(", loaded 99,"), result.stdout)
        XCTAssertEqual(front.entries(kind: "oversized").count, 1)
        let outcomes = try await runOutcomes()
        XCTAssertEqual(outcomes, ["completed"])
    }
}
