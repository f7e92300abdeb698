import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// What an operator sees of a run besides its rows: the run history, the summary file, one error line.
extension ETLTests {
    private func sampleFile(lines: Int) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("history-\(ScratchDatabase.randomHex(4)).ndjson")
        let records = (0..<lines).map { index in
            #"{"user_id": "u\#(index)", "device_type": "ios", "ip": "192.0.2.\#(index % 250 + 1)", "device_id": "d-\#(index)", "locale": null, "app_version": "1.0"}"#
        }
        try (records.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testARunLeftRunningByADeadProcessIsMarkedAbandonedByTheNextRun() async throws {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        // A dead run: its row says running, and the transaction it names has ended.
        let deadRun = try await LiveETLRun.start(database.url, source: "sqs:dead")
        await deadRun.end()
        let dead = deadRun.id
        // A live run elsewhere: the transaction its row names is in progress, so it must stay running.
        let liveRun = try await LiveETLRun.start(database.url, source: "sqs:live")
        defer { Task { await liveRun.end() } }
        let live = liveRun.id

        let input = try sampleFile(lines: 3)
        defer { try? FileManager.default.removeItem(at: input) }
        let result = try etl(["--from-file", input.path])
        XCTAssertEqual(result.status, 0, result.stderr)

        let rows = try await connection.query("SELECT id, outcome, CASE WHEN finished_at IS NULL THEN 0 ELSE 1 END AS finished, error FROM public.etl_runs ORDER BY id")
        let outcomes = Dictionary(uniqueKeysWithValues: try rows.map { (try $0["id"].requiredInt(), try $0["outcome"].requiredString()) })
        XCTAssertEqual(outcomes[dead], "abandoned")
        XCTAssertEqual(outcomes[live], "running")
        XCTAssertEqual(outcomes.values.filter { $0 == "completed" }.count, 1)
        let deadRow = try rows.first { try $0["id"].requiredInt() == dead }!
        XCTAssertEqual(try deadRow["finished"].requiredInt(), 1)
        XCTAssertTrue(try deadRow["error"].requiredString().contains("ended without recording its end"))
    }

    /// A database (or login) whose transactions default to REPEATABLE READ: the run's end is still recorded in its
    /// lock session, which must see the row the write session inserted after the lock session's snapshot began.
    func testARunsEndIsRecordedWhenTheDatabaseDefaultsToRepeatableRead() async throws {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        try await connection.execute(PostgresQuery(
            unsafeSQL: "ALTER DATABASE \(database.name) SET default_transaction_isolation = 'repeatable read'"))
        let input = try sampleFile(lines: 3)
        defer { try? FileManager.default.removeItem(at: input) }
        let result = try etl(["--from-file", input.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try await connection.query("SELECT outcome, loaded FROM public.etl_runs")
        XCTAssertEqual(try rows.map { "\(try $0["outcome"].requiredString()) \(try $0["loaded"].requiredInt())" },
                       ["completed 3"])
    }

    /// A run's end is stamped when it ends: the lock session's transaction began with the run, so its now() was the
    /// run's start, and `piivault runs` showed every run finishing as it started (a little before, in fact).
    func testARunsEndIsStampedWhenItEndsNotWhenItBegan() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("slow-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let fifo = folder.appendingPathComponent("input.fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        let line = #"{"user_id": "slow", "device_type": "ios", "ip": "192.0.2.9", "device_id": "d-slow"}"#
        // One line, two seconds, another line: the run lasts at least two seconds.
        let writer = try BackgroundProcess("/bin/sh", ["-c", "{ echo '\(line)'; sleep 2; echo '\(line)'; } > '\(fifo.path)'"])
        let result = try etl(["--from-file", fifo.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        _ = try await writer.waitForExit(timeout: 10)
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        let milliseconds = try await connection.query(
            "SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint AS ms FROM public.etl_runs")
            .requiredFirst("etl_runs")["ms"].requiredInt()
        XCTAssertGreaterThanOrEqual(milliseconds, 1_500, "the run's recorded duration")
    }

    /// `--max-duration`: a queue that keeps receiving never stays empty for `--idle-exit`, so a nightly run would not
    /// end; past the limit it stops as on SIGTERM, the batches in hand loaded, as an interrupted run.
    func testMaxDurationEndsARunWhoseQueueNeverStaysEmpty() async throws {
        let queue = "endless-\(ScratchDatabase.randomHex(4))"
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: queue)
        let summaryFile = FileManager.default.temporaryDirectory.appendingPathComponent("summary-\(queue).json")
        defer { try? FileManager.default.removeItem(at: summaryFile) }
        let started = Date()
        // An idle exit of 10 minutes stands for a queue that is never empty for long.
        let result = try etl(["--queue-url", queueURL, "--idle-exit", "600", "--max-duration", "3",
                              "--summary-json", summaryFile.path])
        let seconds = Date().timeIntervalSince(started)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertLessThan(seconds, 60, "ended by --max-duration, not by the idle exit")
        XCTAssertTrue(result.stderr.contains("--max-duration reached"), result.stderr)
        let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: summaryFile)) as! [String: Any]
        XCTAssertEqual(summary["outcome"] as? String, "interrupted")
        XCTAssertEqual(summary["loaded"] as? Int, 99)
        let runs = try await query("SELECT outcome FROM public.etl_runs").map { try $0["outcome"].requiredString() }
        XCTAssertEqual(runs, ["interrupted"])
    }

    /// A line longer than 2 MiB (twice SQS's largest message) is no login event: the run stops at it with its line number
    /// instead of reading it whole (a 600 MB line took 3 GB and ended in an out-of-memory error from the database),
    /// and says a later run of the file loads what was not committed (not "the queue").
    func testALineLongerThanTwoMebibytesStopsTheRunNamingIt() async throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("long-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        let good = #"{"user_id": "u1", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d-1"}"#
        let long = "{\"user_id\": \"" + String(repeating: "x", count: 3_000_000) + "\"}"
        try (good + "\n" + long + "\n" + good + "\n").write(to: input, atomically: true, encoding: .utf8)
        let result = try etl(["--from-file", input.path], environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("line 2 of \(input.path) is longer than 2097152 bytes"), result.stderr)
        XCTAssertTrue(result.stderr.contains("a later run of the file loads the lines not committed"), result.stderr)
        XCTAssertFalse(result.stderr.contains("queue"), result.stderr)
    }

    /// No source at all, or a file and a queue both on the command line: usage errors (64), before anything runs.
    /// (No queue was a 65, and a queue beside --from-file was ignored without a word.)
    func testNoSourceOrTwoSourcesAreUsageErrors() throws {
        let none = try runPiivault(["etl", "--database-url", database.url,
                                    "--token-key", keys.appendingPathComponent("token.key").path,
                                    "--vault-public-key", keys.appendingPathComponent("vault.pub").path],
                                   environment: ["PIIVAULT_QUEUE_URL": nil, "PIIVAULT_QUEUE_NAME": nil])
        XCTAssertEqual(none.status, 64, none.stderr)
        XCTAssertTrue(none.stderr.contains("no queue given"), none.stderr)
        let input = try sampleFile(lines: 1)
        defer { try? FileManager.default.removeItem(at: input) }
        let both = try etl(["--from-file", input.path, "--queue-name", "login-queue"])
        XCTAssertEqual(both.status, 64, both.stderr)
        XCTAssertTrue(both.stderr.contains("give either --from-file or a queue"), both.stderr)
        let runs = try runPiivault(["runs", "--database-url", database.url])
        XCTAssertFalse(runs.stdout.contains("file:"), "nothing ran: \(runs.stdout)")
    }

    /// `--max-duration` stops the run on a stop of its own: a SIGTERM after it (a node drain, the Job's deadline) is
    /// still a first signal, which lets the batch in hand commit, not a second one that exits at once (130) and
    /// leaves the run to be marked abandoned.
    func testASIGTERMAfterMaxDurationStillFinishesTheBatchInHand() async throws {
        let input = try sampleFile(lines: 3)
        defer { try? FileManager.default.removeItem(at: input) }
        // The batch waits on the vault-wide lock, held here as a forget would hold it.
        let holder = try await database.connect()
        try await holder.execute("BEGIN")
        try await holder.execute("LOCK TABLE vault.vault_values_lock IN EXCLUSIVE MODE")
        let invocation = try etlInvocation(["--from-file", input.path, "--max-duration", "1"])
        let run = try BackgroundProcess(try piivaultBinary(), invocation.arguments, environment: invocation.environment)
        try await waitUntil("the limit is reached while the batch waits", timeout: 30) {
            run.stderr.contains("--max-duration reached") || !run.isRunning
        }
        XCTAssertTrue(run.isRunning, run.stderr)
        run.send(SIGTERM)
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertTrue(run.isRunning, "one SIGTERM after the limit exited at once: \(run.stderr)")
        try await holder.execute("COMMIT")
        await holder.close()
        let exited = try await run.waitForExit(timeout: 60)
        XCTAssertTrue(exited)
        XCTAssertEqual(run.status, 0, run.stderr)
        let runs = try await query("SELECT outcome, loaded FROM public.etl_runs")
            .map { "\(try $0["outcome"].requiredString()) \(try $0["loaded"].requiredInt())" }
        XCTAssertEqual(runs, ["interrupted 3"])
    }

    /// The staging tables a batch falls back to (when some of its rows are already loaded) are the session's own
    /// temporary tables whatever the login's search path: with `public, pg_temp` (ALTER ROLE, PGOPTIONS), tables of
    /// the same names that someone created in `public` received every such batch's user ids and tokens.
    func testTheStagingTablesAreTheSessionsOwnWhateverTheSearchPath() async throws {
        let admin = try await database.connect()
        try await admin.executeScript("""
            CREATE TABLE public.piivault_stage_logins (
                message_id text, user_id text, device_type text, masked_ip text, masked_device_id text,
                locale text, app_version integer, app_version_text text, create_date date, subject_hash text);
            CREATE TABLE public.piivault_stage_secrets (token text, field text, data_key_id bigint, sealed bytea)
            """)
        await admin.close()
        let input = try sampleFile(lines: 3)
        defer { try? FileManager.default.removeItem(at: input) }
        XCTAssertEqual(try etl(["--from-file", input.path]).status, 0)
        // Loaded again: every row is there already, so the batch goes through the staging tables.
        let again = try etl(["--from-file", input.path], environment: ["PGOPTIONS": "-c search_path=public,pg_temp"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("duplicates 3"), again.stdout)
        let planted = try await count("public.piivault_stage_logins")
        XCTAssertEqual(planted, 0, "the batch went into a table in public")
    }

    func testADirectoryGivenAsTheInputFileIsBadInputBeforeTheRunBegins() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dir-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(at: directory) }
        let result = try etl(["--from-file", directory.path])
        XCTAssertEqual(result.status, 65, result.stderr)
        XCTAssertEqual(result.stderr, "piivault: error: \(directory.path) is a directory; pass a file of newline-delimited JSON\n")
        let runs = try await count("public.etl_runs")
        XCTAssertEqual(runs, 0)
    }

    func testAnUnmigratedDatabaseSaysToRunMigrateInOneLine() async throws {
        let empty = try await ScratchDatabase.create(prefix: "unmigrated")
        defer { Task { await empty.drop() } }
        let input = try sampleFile(lines: 1)
        defer { try? FileManager.default.removeItem(at: input) }
        let result = try runPiivault([
            "etl", "--from-file", input.path, "--database-url", empty.url,
            "--token-key", keys.appendingPathComponent("token.key").path,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(result.status, 65, result.stderr)
        XCTAssertEqual(result.stderr, "piivault: error: the database has no piivault tables (public.etl_runs is missing); run `piivault migrate` first\n")
    }

    func testAFailedRunPrintsOneErrorLineAndRecordsTheFailure() async throws {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        // The vault's table gone: the run starts, then cannot look values up.
        try await connection.execute("ALTER TABLE vault.secrets RENAME TO secrets_elsewhere")
        let input = try sampleFile(lines: 3)
        defer { try? FileManager.default.removeItem(at: input) }
        let result = try etl(["--from-file", input.path], environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        XCTAssertEqual(result.status, 1, result.stderr)
        let errorLines = result.stderr.split(separator: "\n").filter { $0.contains("error") }
        XCTAssertEqual(errorLines.count, 1, result.stderr)
        XCTAssertTrue(errorLines.first?.hasPrefix("piivault: error: the run stopped before loading everything") ?? false)
        XCTAssertTrue(result.stdout.hasPrefix("failed: received 3, loaded 0"), result.stdout)
        let outcome = try await connection.query("SELECT outcome FROM public.etl_runs").first!["outcome"].requiredString()
        XCTAssertEqual(outcome, "failed")
    }

    func testTheSummaryGoesToStandardOutputSymlinksAndFIFOsInPlace() async throws {
        let input = try sampleFile(lines: 2)
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("summary-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: folder)
        }

        // `-`: standard output, after the summary line.
        var result = try etl(["--from-file", input.path, "--summary-json", "-"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, result.stdout)
        XCTAssertTrue(lines[0].hasPrefix("completed: received 2, loaded 2"), result.stdout)
        let json = try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: Any]
        XCTAssertEqual(json?["loaded"] as? Int, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "-"))

        // A symlink: the link stays, its target gets the summary.
        let target = folder.appendingPathComponent("target.json")
        try Data("old".utf8).write(to: target)
        let link = folder.appendingPathComponent("link.json")
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: target)
        result = try etl(["--from-file", input.path, "--summary-json", link.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link.path), target.path)
        let linked = try JSONSerialization.jsonObject(with: Data(contentsOf: target)) as? [String: Any]
        XCTAssertEqual(linked?["duplicates"] as? Int, 2)

        // A FIFO: stays a FIFO; its reader gets the summary.
        let fifo = folder.appendingPathComponent("summary.fifo")
        XCTAssertEqual(mkfifo(fifo.path, 0o600), 0)
        let reader = try BackgroundProcess("/bin/cat", [fifo.path])
        result = try etl(["--from-file", input.path, "--summary-json", fifo.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let readerEnded = try await reader.waitForExit(timeout: 10)
        XCTAssertTrue(readerEnded)
        let fromFIFO = try JSONSerialization.jsonObject(with: Data(reader.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(fromFIFO?["received"] as? Int, 2)
        var status = stat()
        XCTAssertEqual(lstat(fifo.path, &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFIFO)

        // A regular file: replaced whole.
        let plain = folder.appendingPathComponent("plain.json")
        try Data(String(repeating: "x", count: 4096).utf8).write(to: plain)
        result = try etl(["--from-file", input.path, "--summary-json", plain.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        let replaced = try JSONSerialization.jsonObject(with: Data(contentsOf: plain)) as? [String: Any]
        XCTAssertEqual(replaced?["outcome"] as? String, "completed")
    }
}

extension ETLTests {
    func testTheRunHistoryRecordsTheKeysAndAChangedVaultKeyIsReportedOrRefused() async throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("keys-\(ScratchDatabase.randomHex(4)).ndjson")
        try (#"{"user_id": "u1", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d-1"}"# + "\n")
            .write(to: input, atomically: true, encoding: .utf8)
        let otherKeys = FileManager.default.temporaryDirectory.appendingPathComponent("etl-keys-\(ScratchDatabase.randomHex(4))")
        defer {
            try? FileManager.default.removeItem(at: input)
            try? FileManager.default.removeItem(at: otherKeys)
        }
        XCTAssertEqual(try runPiivault(["keygen", "--dir", otherKeys.path]).status, 0)
        let vaultKeyID = try KeyLoading.loadVaultPublicKey(path: keys.appendingPathComponent("vault.pub").path).keyID.description
        let otherKeyID = try KeyLoading.loadVaultPublicKey(path: otherKeys.appendingPathComponent("vault.pub").path).keyID.description
        let tokenKeyID = try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path).keyID.description

        var result = try etl(["--from-file", input.path, "--vault-key-id", vaultKeyID],
                             environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stderr, "")
        let row = try await query("SELECT vault_key_id, token_key_id, token_key_version FROM public.etl_runs").first!
        XCTAssertEqual(try row["vault_key_id"].requiredString(), vaultKeyID)
        XCTAssertEqual(try row["token_key_id"].requiredString(), tokenKeyID)
        XCTAssertEqual(try row["token_key_version"].requiredInt(), 1)

        // Another vault.pub, pinned to the first key: refused before anything is loaded or recorded.
        let otherPub = otherKeys.appendingPathComponent("vault.pub").path
        result = try etl(["--from-file", input.path, "--vault-public-key", otherPub, "--vault-key-id", vaultKeyID],
                         environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        XCTAssertEqual(result.status, 77, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: the vault public key has key id \(otherKeyID), not \(vaultKeyID)"), result.stderr)
        let runs = try await count("public.etl_runs")
        XCTAssertEqual(runs, 1)

        // Not pinned: the change is reported, and the run goes ahead.
        result = try etl(["--from-file", input.path, "--vault-public-key", otherPub],
                         environment: ["PIIVAULT_LOG_LEVEL": "warning"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("piivault: warning: vault.pub has key id \(otherKeyID), but the last run sealed to \(vaultKeyID)"), result.stderr)
    }
}

extension ETLTests {
    func testFileMessageIdsComeFromContentAndOccurrenceNotPosition() async throws {
        let lines = (1...4).map { #"{"user_id": "u\#($0)", "device_type": "ios", "ip": "192.0.2.\#($0)", "device_id": "d-\#($0)"}"# }
        let first = FileManager.default.temporaryDirectory.appendingPathComponent("ids-\(ScratchDatabase.randomHex(4)).ndjson")
        let second = FileManager.default.temporaryDirectory.appendingPathComponent("ids-\(ScratchDatabase.randomHex(4)).ndjson")
        defer {
            try? FileManager.default.removeItem(at: first)
            try? FileManager.default.removeItem(at: second)
        }
        // Lines 1-3, then the same lines with a blank line before them, in another order, line 1 twice and line 4.
        try (lines[0..<3].joined(separator: "\n") + "\n").write(to: first, atomically: true, encoding: .utf8)
        try ("\n" + [lines[2], lines[0], lines[1], lines[0], lines[3]].joined(separator: "\n") + "\n")
            .write(to: second, atomically: true, encoding: .utf8)
        var result = try etl(["--from-file", first.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 3, loaded 3, duplicates 0"), result.stdout)
        result = try etl(["--from-file", second.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        // Only the second copy of line 1 and line 4 are new.
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 5, loaded 2, duplicates 3"), result.stdout)
        let ids = try await query("SELECT message_id FROM public.user_logins ORDER BY message_id").map { try $0["message_id"].requiredString() }
        let line1 = Array(lines[0].utf8)
        XCTAssertEqual(Set(ids), Set([
            FileMessageSource.messageID(body: line1, occurrence: 1), FileMessageSource.messageID(body: line1, occurrence: 2),
            FileMessageSource.messageID(body: Array(lines[1].utf8)), FileMessageSource.messageID(body: Array(lines[2].utf8)),
            FileMessageSource.messageID(body: Array(lines[3].utf8)),
        ]))
    }
}

extension ETLTests {
    /// Two different lines whose SHA-256 digests begin with the same 32 bits (found by trying user ids c0, c1, ...;
    /// a 1,000,000-line file has about a hundred such pairs) are each the first of their kind, in either order: a
    /// reordered file loads nothing twice.
    func testFileLinesSharingTheFirst32BitsOfTheirDigestCountAsDifferentLines() async throws {
        let lines = [54_139, 71_201].map { #"{"user_id": "c\#($0)", "device_type": "ios", "ip": "192.0.2.7", "device_id": "d-7"}"# }
        let ids = lines.map { FileMessageSource.messageID(body: Array($0.utf8)) }
        XCTAssertEqual(ids.map { $0.prefix(13) }, ["file-ca86ed34", "file-ca86ed34"], "the lines no longer share 32 bits")
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("fp-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        for order in [lines, lines.reversed()] {
            try (order.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
            let result = try etl(["--from-file", input.path])
            XCTAssertEqual(result.status, 0, result.stderr)
        }
        let loaded = try await query("SELECT message_id FROM public.user_logins").map { try $0["message_id"].requiredString() }
        XCTAssertEqual(Set(loaded), Set(ids), "the second order loaded a line again under another id")
    }
}

extension ETLTests {
    /// A row the database refuses is quarantined and the rest of its batch loads, also when that message was the first
    /// of the batch to carry a value a later message shares (the value is sealed once a batch, with its first carrier).
    func testARefusedRowWhoseValueALaterMessageSharesLeavesThatValueSealed() async throws {
        let owner = try await database.connect()
        defer { Task { await owner.close() } }
        try await owner.execute("ALTER TABLE public.user_logins ADD CONSTRAINT refuse_one CHECK (user_id <> 'refused')")
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("shared-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        try ([
            #"{"user_id": "refused", "device_type": "ios", "ip": "192.0.2.81", "device_id": "shared-device"}"#,
            #"{"user_id": "u-2", "device_type": "ios", "ip": "192.0.2.82", "device_id": "shared-device"}"#,
        ].joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let result = try etl(["--from-file", input.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 2, loaded 1, duplicates 0, quarantined 1"), result.stdout)
        let unsealed = try await query("""
            SELECT count(*) AS n FROM public.user_logins AS l
             WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip)
                OR NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id)
            """).first?["n"].requiredInt()
        XCTAssertEqual(unsealed, 0, "a loaded login references a value the vault does not hold")
    }
}

extension ETLTests {
    func testControlCharactersInClearFieldsSendTheMessageToQuarantineNamingTheCharacter() async throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("ctl-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        try ([
            #"{"user_id": "ok", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d-1"}"#,
            #"{"user_id": "evil\u001b]0;pwned\u0007", "device_type": "ios", "ip": "192.0.2.2", "device_id": "d-2"}"#,
            #"{"user_id": "u3", "device_type": "ios", "ip": "192.0.2.3", "device_id": "d-3", "locale": "en\u202e"}"#,
            // Issue 24, defect 7: an invisible format character makes a look-alike of another user id.
            #"{"user_id": "ok\u200b", "device_type": "ios", "ip": "192.0.2.4", "device_id": "d-4"}"#,
        ].joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let result = try etl(["--from-file", input.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 4, loaded 1, duplicates 0, quarantined 3"), result.stdout)
        let reasons = try await query("SELECT reason FROM vault.quarantine ORDER BY reason").map { try $0["reason"].requiredString() }
        XCTAssertEqual(reasons, [
            "field locale: contains bidirectional formatting character U+202E, not allowed in a field stored in clear",
            "field user_id: contains control character U+001B, not allowed in a field stored in clear",
            "field user_id: contains invisible format character U+200B, not allowed in a field stored in clear",
        ])
        let users = try await query("SELECT user_id FROM public.user_logins").map { try $0["user_id"].requiredString() }
        XCTAssertEqual(users, ["ok"])
    }
}

extension ETLTests {
    /// Batches of 512 messages and more are prepared in parts, one per core: the rows, the sealed values and the
    /// quarantine must be exactly what the rules say, in message order.
    func testALargeBatchPreparedInPartsLoadsExactlyWhatTheRulesSay() async throws {
        var lines: [String] = []
        var ips = Set<String>(), devices = Set<String>()
        for index in 0..<3000 {
            if index % 97 == 0 {
                lines.append(#"{"user_id": "u\#(index)", "device_type": "ios", "ip": "not-an-ip", "device_id": "d"}"#)
                continue
            }
            let ip = "198.51.100.\(index % 200)", device = "dev-\(index % 700)"
            ips.insert(ip)
            devices.insert(device)
            lines.append(#"{"user_id": "u\#(index)", "device_type": "ios", "ip": "\#(ip)", "device_id": "\#(device)"}"#)
        }
        let quarantined = (0..<3000).filter { $0 % 97 == 0 }.count
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("parts-\(ScratchDatabase.randomHex(4)).ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }

        let result = try etl(["--from-file", file.path, "--batch-size", "1500"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 3000, loaded \(3000 - quarantined), duplicates 0, quarantined \(quarantined), values sealed \(ips.count + devices.count)"), result.stdout)
        let orphans = try await query("""
            SELECT count(*) FROM public.user_logins l
             WHERE NOT EXISTS (SELECT 1 FROM vault.secrets s WHERE s.token = l.masked_ip)
                OR NOT EXISTS (SELECT 1 FROM vault.secrets s WHERE s.token = l.masked_device_id)
            """).first![0].requiredInt()
        XCTAssertEqual(orphans, 0)
        let tokenizer = Tokenizer(key: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path))
        let row = try await query("SELECT masked_ip, masked_device_id FROM public.user_logins WHERE user_id = 'u2999'").first!
        XCTAssertEqual(try row["masked_ip"].requiredString(), try tokenizer.tokenize("198.51.100.199", as: .ip).token)
        XCTAssertEqual(try row["masked_device_id"].requiredString(), try tokenizer.tokenize("dev-199", as: .deviceID).token)
    }
}

extension ETLTests {
    /// Issue 24, defect 6: a fresh token key of a version the vault already holds (here a second version-1 key) is
    /// refused before anything is written (77, one line naming both key ids); the right key still loads.
    func testAnotherTokenKeyOfAKnownVersionIsRefused() async throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("tk-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        func write(_ user: String) throws {
            try (#"{"user_id": "\#(user)", "device_type": "ios", "ip": "192.0.2.7", "device_id": "d-7"}"# + "\n")
                .write(to: input, atomically: true, encoding: .utf8)
        }
        try write("first")
        let first = try etl(["--from-file", input.path])
        XCTAssertEqual(first.status, 0, first.stderr)
        let known = try await query("SELECT version, key_id FROM vault.token_keys").map {
            "\(try $0["version"].requiredInt()):\(try $0["key_id"].requiredString())"
        }
        XCTAssertEqual(known.count, 1, "the first run records its key")

        let other = FileManager.default.temporaryDirectory.appendingPathComponent("wrong-keys-\(ScratchDatabase.randomHex(4))")
        defer { try? FileManager.default.removeItem(at: other) }
        XCTAssertEqual(try runPiivault(["keygen", "--dir", other.path]).status, 0)
        try write("second")
        let refused = try etl(["--from-file", input.path,
                               "--token-key", other.appendingPathComponent("token.key").path])
        XCTAssertEqual(refused.status, 77, refused.stderr)
        let lines = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("piivault: error:") }
        XCTAssertEqual(lines.count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("this vault's version 1 tokens were made with key id \(known[0].dropFirst(2))"),
                      refused.stderr)
        let afterRefusal = try await count("public.user_logins")
        XCTAssertEqual(afterRefusal, 1, "nothing loaded under the wrong key")

        let right = try etl(["--from-file", input.path])
        XCTAssertEqual(right.status, 0, right.stderr)
        let afterRight = try await count("public.user_logins")
        XCTAssertEqual(afterRight, 2)
    }
}
