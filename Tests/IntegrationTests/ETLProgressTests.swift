import Foundation
import PIIVault
import TestSupport
import XCTest

/// Issue 26: the ETL talks while it works and when it is told to stop, and its rate counts the time spent working.
extension ETLTests {
    /// In a log (standard error not a terminal): an info line every --progress-interval seconds with the counts;
    /// the summary gives the whole time and the working time, and the rate is over the working time.
    func testTheRunLogsItsProgressAndItsRateCountsTheWorkingTime() async throws {
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: "progress-\(ScratchDatabase.randomHex(4))")
        let result = try etl(["--queue-url", queueURL, "--idle-exit", "6", "--progress-interval", "1"],
                             environment: ["PIIVAULT_LOG_LEVEL": nil])  // the default level, info
        XCTAssertEqual(result.status, 0, result.stderr)
        let progress = result.stderr.split(separator: "\n").filter { $0.hasPrefix("piivault: info: progress: received ") }
        XCTAssertGreaterThanOrEqual(progress.count, 4, "a line a second during a run of more than 6 s: \(result.stderr)")
        XCTAssertTrue(progress.last?.contains("received 100, loaded 99, quarantined 1, ") ?? false, result.stderr)
        XCTAssertNotNil(progress.last?.range(of: #"\d+ messages/s(, ~\d+ queued)?, \d+ s$"#, options: .regularExpression),
                        result.stderr)

        // `completed: received 100, ..., 4.31 s (1.12 s working), 89 messages/s`
        let line = try XCTUnwrap(result.stdout.split(separator: "\n").first { $0.hasPrefix("completed: ") }.map(String.init))
        let match = try XCTUnwrap(line.firstMatch(of: #/, ([0-9.]+) s \(([0-9.]+) s working\), ([0-9]+) messages/s/#), line)
        let total = try XCTUnwrap(Double(match.1)), working = try XCTUnwrap(Double(match.2)), rate = try XCTUnwrap(Double(match.3))
        // The run ends 6 s after the last message arrived; the batch commits during that wait, well before its end.
        XCTAssertLessThanOrEqual(working, total - 2, "the final wait for an empty queue is not working time: \(line)")
        XCTAssertEqual(rate, (100 / working).rounded(), accuracy: 1, "the rate is over the working time: \(line)")
    }

    /// SIGTERM: one line at once saying the run stops after the batch in hand; the run then ends as interrupted.
    func testASignalIsAnsweredAtOnceWithOneLine() async throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("stop-\(ScratchDatabase.randomHex(4)).json")
        try Data("[]".utf8).write(to: empty)
        defer { try? FileManager.default.removeItem(at: empty) }
        let queueURL = try await send(empty, queue: "stop-\(ScratchDatabase.randomHex(4))")
        let before = try await count("public.etl_runs")
        let invocation = try etlInvocation(["--queue-url", queueURL, "--idle-exit", "60", "--progress-interval", "0"],
                                           environment: ["PIIVAULT_LOG_LEVEL": nil])
        let process = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        try await waitUntil("the run started", timeout: 20) { try await self.count("public.etl_runs") > before }
        process.send(SIGTERM)
        let notice = "piivault: notice: stopping after the batch in hand"
        try await waitUntil("the stop is announced", timeout: 5) { process.stderr.contains(notice) }
        let ended = try await process.waitForExit(timeout: 20)
        XCTAssertTrue(ended, process.stderr)
        XCTAssertEqual(process.status, 0, process.stderr)
        XCTAssertEqual(process.stderr.components(separatedBy: notice).count - 1, 1, "one line: \(process.stderr)")
        XCTAssertTrue(process.stdout.hasPrefix("interrupted: "), process.stdout)
        // Nothing arrived: the whole run was waiting for messages, none of it working time.
        XCTAssertTrue(process.stdout.contains("(0.00 s working), 0 messages/s"), process.stdout)
    }

    /// On a terminal: a progress line rewritten in place (carriage return, clear to end of line) every second.
    func testOnATerminalTheProgressLineIsRefreshedInPlace() async throws {
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: "tty-\(ScratchDatabase.randomHex(4))")
        let invocation = try etlInvocation(["--queue-url", queueURL, "--idle-exit", "3"],
                                           environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        let quoted = ([try piivaultBinary()] + invocation.arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        // util-linux `script` runs the command on a pseudo-terminal: standard error is a terminal there.
        let result = try runProcess("script", ["-qec", quoted.joined(separator: " "), "/dev/null"],
                                    environment: invocation.environment)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let refreshes = result.stdout.components(separatedBy: "\r\u{1B}[Kreceived ").count - 1
        XCTAssertGreaterThanOrEqual(refreshes, 2, "refreshed every second during a run of more than 3 s: \(result.stdout.debugDescription)")
        XCTAssertTrue(result.stdout.contains("received 100, loaded 99, quarantined 1, "), result.stdout.debugDescription)
        XCTAssertTrue(result.stdout.contains("completed: received 100"), result.stdout.debugDescription)
    }
}
