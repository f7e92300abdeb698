import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Token key rotation (issue 13): `keygen --token-key-version 2 --previous-token-key`, `etl` with each key, and
/// `piivault retokenize`, all with the real binary against a real Postgres. The data is synthetic: 200 logins of 10
/// users over pools of ip addresses and device ids; the first half is loaded with token key v1, the second half (which
/// repeats some of the first half's values and adds new ones) with v2.
///
/// Tokens and sealed values are checked independently of the Swift code by `Tests/crosscheck/crosscheck.py`
/// (HMAC-SHA-256 over Python's BLAKE2b `crypto_kdf`; PyNaCl for opening sealed values).
final class RetokenizeTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var compliance: String!
    /// The synthetic logins: user, ip, device id (all canonical), and the half they were loaded in.
    var logins: [(user: String, ip: String, device: String, appVersion: String)] = []
    var users: [String] { Array(Set(logins.map(\.user))).sorted() }

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "retok")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("retok-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let rotate = try runPiivault(["keygen", "--dir", keys.appendingPathComponent("v2").path, "--token-key-version", "2",
                                      "--previous-token-key", v1Path])
        XCTAssertEqual(rotate.status, 0, rotate.stderr)
        XCTAssertTrue(rotate.stdout.contains("version 2"), rotate.stdout)

        let template = try Self.templateRecord()
        logins = (0..<200).map { i in
            let pool = i < 100 ? i % 30 : 15 + i % 30  // the second half repeats pool values 15...29 and adds 30...44
            return (user: "rt-user-\(i % 10)", ip: "198.51.100.\(pool)", device: "rt-device-\((pool * 7) % 45)",
                    appVersion: "2.\(i % 50).\(i)")
        }
        func file(_ range: Range<Int>, _ name: String) throws -> URL {
            let lines = try logins[range].map { login -> String in
                var record = template
                record["user_id"] = login.user
                record["ip"] = login.ip
                record["device_id"] = login.device
                record["app_version"] = login.appVersion
                record.removeValue(forKey: "message_id")
                return String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self)
            }
            let url = keys.appendingPathComponent(name)
            try (lines.joined(separator: "\n") + "\n").write(to: url, atomically: true, encoding: .utf8)
            return url
        }
        try load(try file(0..<100, "first.ndjson"), tokenKey: v1Path)
        // The second half as an ETL login: its inserts evaluate migration 0016's index on the token version.
        let etl = try await database.createLogin(memberOf: "piivault_etl")
        try load(try file(100..<200, "second.ndjson"), tokenKey: v2Path, databaseURL: etl)
        compliance = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    private var v1Path: String { keys.appendingPathComponent("token.key").path }
    private var v2Path: String { keys.appendingPathComponent("v2/token.key").path }
    private var secretKeyPath: String { keys.appendingPathComponent("vault.key").path }

    private static func templateRecord() throws -> [String: Any] {
        let sample = try TestServices.fixture("fetch-sample-messages.json")
        let records = try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as! [[String: Any]]
        return try XCTUnwrap(records.first { ($0["ip"] as? String) != nil && ($0["device_id"] as? String) != nil
                                             && ($0["user_id"] as? String) != nil && $0["app_version"] != nil })
    }

    private func load(_ file: URL, tokenKey: String, databaseURL: String? = nil) throws {
        let etl = try runPiivault([
            "etl", "--from-file", file.path, "--database-url", databaseURL ?? database.url, "--token-key", tokenKey,
            "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
        ])
        XCTAssertEqual(etl.status, 0, etl.stderr)
    }

    private func retokenize(_ extra: [String] = [], login: String? = nil, databaseURL: String? = nil,
                            environment: [String: String?] = [:]) throws -> ProcessResult {
        var env: [String: String?] = ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil]
        for (key, value) in environment { env[key] = value }
        var url = login ?? compliance!
        if let databaseURL, login == nil {
            // The compliance login on another database of the same server.
            var components = URLComponents(string: compliance)!
            components.path = URLComponents(string: databaseURL)!.path
            url = components.string!
        }
        return try runPiivault(["retokenize", "--database-url", url, "--key-file", secretKeyPath, "--token-key", v2Path,
                                "--reason", "CHG-42 token key rotation"] + extra, environment: env)
    }

    private func query(_ sql: String, databaseURL: String? = nil) async throws -> [[String?]] {
        let connection = try await PostgresConnection.connect(databaseURL ?? database.url)
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: sql))
            let result = try rows.map { row in try (0..<row.columns.count).map { try row[$0].string() } }
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    private func count(_ sql: String, databaseURL: String? = nil) async throws -> Int {
        Int(try await query(sql, databaseURL: databaseURL).first?.first??.description ?? "") ?? -1
    }

    /// Tokens and rows, in a stable order: what two runs must agree on (sealed bytes and data keys differ by design).
    private func dump(databaseURL: String? = nil) async throws -> [[String?]] {
        try await query("""
            SELECT 'login', user_id, masked_ip, masked_device_id, app_version_text FROM user_logins
            UNION ALL SELECT 'secret', token, field, NULL, NULL FROM vault.secrets
            UNION ALL SELECT 'quarantine', message_id, reason, NULL, NULL FROM vault.quarantine
            UNION ALL SELECT 'tombstone', subject_hash, NULL, NULL, NULL FROM vault.tombstones
            ORDER BY 1, 2, 3, 4, 5
            """, databaseURL: databaseURL)
    }

    /// Each user's logins as unmask prints them (ip, device id, app version), sorted.
    private func unmaskAll(tokenKeys: [String]) throws -> [String: [String]] {
        var result: [String: [String]] = [:]
        for user in users {
            let out = try runPiivault(["unmask", "--database-url", compliance, "--key-file", secretKeyPath, "--reason",
                                       "CHG-42 check", "--user-id", user, "--format", "json", "--max-rows", "1000"]
                                      + tokenKeys.flatMap { ["--token-key", $0] },
                                      environment: ["PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil])
            XCTAssertEqual(out.status, 0, out.stderr)
            XCTAssertFalse(out.stderr.contains("warning"), out.stderr)
            let rows = try JSONSerialization.jsonObject(with: out.stdoutData) as! [[String: Any]]
            result[user] = rows.map { "\($0["ip"] ?? "-")|\($0["device_id"] ?? "-")|\($0["app_version_text"] ?? "-")" }.sorted()
        }
        return result
    }

    private func crosscheck(_ command: String, _ request: [String: Any]) throws -> [String: Any] {
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
        let result = try runProcess("python3", [script, command], input: try JSONSerialization.data(withJSONObject: request))
        guard result.status == 0 else {
            throw TestSetupError("crosscheck.py \(command) failed with status \(result.status): \(result.stderr)")
        }
        return try JSONSerialization.jsonObject(with: result.stdoutData) as! [String: Any]
    }

    private func hex(_ bytes: SecretBytes) -> String { bytes.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() } }

    /// Python's token of every distinct value under `keyPath`: value -> token, per field.
    private func pythonTokens(keyPath: String) throws -> (ip: [String: String], device: [String: String]) {
        let key = try KeyLoading.loadTokenKey(path: keyPath)
        func tokens(_ field: String, _ values: [String]) throws -> [String: String] {
            let answer = try crosscheck("tokens", [
                "master": hex(key.bytes), "version": key.version,
                "values": values.map { ["field": field, "canonical": $0] },
            ])
            return Dictionary(uniqueKeysWithValues: zip(values, answer["tokens"] as! [String]))
        }
        return (try tokens("ip", Array(Set(logins.map(\.ip)))), try tokens("device_id", Array(Set(logins.map(\.device)))))
    }

    // MARK: Acceptance 2: one token per value, every value opens under its new token, unmask unchanged

    func testRetokenizeMovesEveryValueToTheNewVersionOneTokenPerValue() async throws {
        // Before: both versions present, and a value of both halves has two tokens.
        let versions = try await query("SELECT v FROM vault.token_versions() AS v").map { $0[0] ?? "" }
        XCTAssertEqual(versions, ["1", "2"])
        let actual1 = try await query("SELECT token_key_version FROM etl_runs ORDER BY id").map { $0[0] ?? "" }
        XCTAssertEqual(actual1, ["1", "2"])
        let v1Before = try await count("SELECT count(*) FROM vault.secrets WHERE token LIKE '%.v1.%'")
        XCTAssertGreaterThan(v1Before, 0)
        let before = try unmaskAll(tokenKeys: [v1Path, v2Path])
        XCTAssertEqual(before.values.map(\.count).reduce(0, +), 200)
        let logBefore = try await count("SELECT count(*) FROM audit.access_log")

        let run = try retokenize(["--batch-size", "25"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("to v2"), run.stdout)
        // One entry for the whole run, naming versions and counts (and no value).
        let entries = try await query("SELECT action, subject, row_count, outcome FROM audit.access_log WHERE seq > \(logBefore) AND action = 'retokenize'")
        XCTAssertEqual(entries.count, 1)
        XCTAssertEqual(entries.first?[1], "token_versions:v1->v2")
        XCTAssertEqual(entries.first?[2], String(v1Before))
        XCTAssertTrue(entries.first?[3]?.hasPrefix("ok: \(v1Before) values and 100 logins to move to v2") ?? false, "\(entries)")
        for value in logins.map(\.ip) + logins.map(\.device) {
            XCTAssertFalse(run.stdout.contains(value) || run.stderr.contains(value), "a value in the output")
        }

        // The run's grant was bound to its session: another session of the same login cannot use it.
        let seqRows = try await query("SELECT max(seq) FROM audit.access_log WHERE action = 'retokenize'")
        let seq = try XCTUnwrap(seqRows.first?[0] ?? nil)
        let officer = try await PostgresConnection.connect(compliance)
        do {
            _ = try await officer.query(PostgresQuery(unsafeSQL: "SELECT * FROM vault.release_retokenize_values(\(seq), 10)"))
            XCTFail("another session released values under the run's grant")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501")
        }
        await officer.close()

        // No v1 token anywhere.
        let actual2 = try await count("SELECT count(*) FROM user_logins WHERE masked_ip LIKE '%.v1.%' OR masked_device_id LIKE '%.v1.%'")
        XCTAssertEqual(actual2, 0)
        let actual3 = try await count("SELECT count(*) FROM vault.secrets WHERE token NOT LIKE '%.v2.%'")
        XCTAssertEqual(actual3, 0)
        let actual4 = try await query("SELECT v FROM vault.token_versions() AS v").map { $0[0] ?? "" }
        XCTAssertEqual(actual4, ["2"])

        // Each value exactly one token, the one Python computes under the v2 key; every login carries its values' tokens.
        let expected = try pythonTokens(keyPath: v2Path)
        let secrets = try await query("SELECT token, field FROM vault.secrets ORDER BY token")
        XCTAssertEqual(Set(secrets.map { $0[0] ?? "" }), Set(expected.ip.values).union(expected.device.values))
        XCTAssertEqual(secrets.count, expected.ip.count + expected.device.count)
        var expectedRows: [String: [String]] = [:]
        for login in logins { expectedRows[login.user, default: []].append("\(expected.ip[login.ip]!)|\(expected.device[login.device]!)") }
        var actualRows: [String: [String]] = [:]
        for row in try await query("SELECT user_id, masked_ip, masked_device_id FROM user_logins") {
            actualRows[row[0] ?? "", default: []].append("\(row[1] ?? "")|\(row[2] ?? "")")
        }
        XCTAssertEqual(actualRows.mapValues { $0.sorted() }, expectedRows.mapValues { $0.sorted() })

        // Every sealed value opens (PyNaCl) with its new token as additional data, and is the value of that token.
        let secretKey = try KeyLoading.loadVaultSecretKey(path: secretKeyPath) { throw TestSetupError("no passphrase") }
        let valueOf = Dictionary(uniqueKeysWithValues: (expected.ip.map { ($1, $0) } + expected.device.map { ($1, $0) }))
        let sealed = try await query("""
            SELECT s.token, encode(s.sealed, 'hex'), encode(k.sealed_key, 'hex'), k.id::text
              FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id ORDER BY k.id, s.token
            """)
        for (_, group) in Dictionary(grouping: sealed, by: { $0[3] ?? "" }) {
            let answer = try crosscheck("open", [
                "vault_sk": hex(secretKey.bytes), "sealed_key": group[0][2] ?? "",
                "values": group.map { ["ad": $0[0] ?? "", "sealed": $0[1] ?? ""] },
            ])
            let plain = (answer["plain"] as! [String]).map { String(decoding: Data(hexString: $0), as: UTF8.self) }
            XCTAssertEqual(plain, group.map { valueOf[$0[0] ?? ""] ?? "?" })
        }

        // unmask with the v2 key alone returns what unmask returned before, with both keys.
        XCTAssertEqual(try unmaskAll(tokenKeys: [v2Path]), before)

        // Idempotent: a second run moves nothing (and is one more entry).
        let dumped = try await dump()
        let again = try retokenize()
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("moved 0 sealed values"), again.stdout)
        let actual5 = try await dump()
        XCTAssertEqual(actual5, dumped)
    }

    // MARK: Acceptance 3: killed midway, then rerun: the same state as one uninterrupted run

    func testARunKilledMidwayAndRerunEndsLikeAnUninterruptedOne() async throws {
        let copy = try await ScratchDatabase.create(prefix: "retokcopy", template: database.name)
        do {
            let uninterrupted = try retokenize(["--batch-size", "10"])
            XCTAssertEqual(uninterrupted.status, 0, uninterrupted.stderr)

            let killed = try retokenize(["--batch-size", "10"], databaseURL: copy.url,
                                        environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "3"])
            XCTAssertEqual(killed.status, 75, killed.stderr)
            // Midway: three batches moved, older tokens remain, and every login's token still has its sealed value.
            let remaining = try await count("SELECT count(*) FROM vault.secrets WHERE token LIKE '%.v1.%'", databaseURL: copy.url)
            XCTAssertGreaterThan(remaining, 0)
            let dangling = try await count("""
                SELECT count(*) FROM user_logins AS l
                 WHERE NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_ip)
                    OR NOT EXISTS (SELECT 1 FROM vault.secrets AS s WHERE s.token = l.masked_device_id)
                """, databaseURL: copy.url)
            XCTAssertEqual(dangling, 0)

            let rerun = try retokenize(["--batch-size", "10"], databaseURL: copy.url)
            XCTAssertEqual(rerun.status, 0, rerun.stderr)
            XCTAssertFalse(rerun.stdout.contains("in 0 batches"), rerun.stdout)
            let copyDump = try await dump(databaseURL: copy.url)
            let originalDump = try await dump()
            XCTAssertEqual(copyDump, originalDump)
            let runs = try await count("SELECT count(*) FROM audit.access_log WHERE action = 'retokenize'",
                                       databaseURL: copy.url)
            XCTAssertEqual(runs, 2)

            let auditor = try await copy.createLogin(memberOf: "piivault_auditor")
            let verify = try runPiivault(["audit", "verify", "--database-url", auditor])
            XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
            XCTAssertTrue(verify.stdout.contains("access log intact"), verify.stdout)
        } catch {
            await copy.drop()
            throw error
        }
        await copy.drop()
    }

    // MARK: Acceptance 4: other roles refused and logged; a failing append changes nothing

    func testOtherRolesAreRefusedAndLoggedAndAFailingAppendChangesNothing() async throws {
        let before = try await dump()
        for role in ["piivault_etl", "piivault_analyst", "piivault_auditor"] {
            let login = try await database.createLogin(memberOf: role)
            let logLength = try await count("SELECT count(*) FROM audit.access_log")
            let refused = try retokenize(login: login)
            XCTAssertEqual(refused.status, PIIVaultExitCode.noPermission.rawValue, "\(role): \(refused.stderr)")
            XCTAssertTrue(refused.stderr.contains("piivault_compliance"), refused.stderr)
            let entry = try await query("SELECT action, outcome FROM audit.access_log WHERE seq > \(logLength)")
            XCTAssertEqual(entry.count, 1, role)
            XCTAssertEqual(entry.first?[0], "retokenize")
            XCTAssertTrue(entry.first?[1]?.hasPrefix("refused: not permitted") ?? false, "\(entry)")
            // Nor can the role call the batch function directly.
            let connection = try await PostgresConnection.connect(login)
            do {
                _ = try await connection.query("SELECT * FROM vault.apply_retokenize_batch(1, '{}', '{}', '{}', 1)")
                XCTFail("\(role) ran apply_retokenize_batch")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42501", role)
            }
            await connection.close()
        }
        let actual6 = try await dump()
        XCTAssertEqual(actual6, before)

        let dataKeysBefore = try await count("SELECT count(*) FROM vault.data_keys")
        let connection = try await database.connect()
        try await connection.executeScript(ScratchDatabase.refuseAccessLogAppends)
        await connection.close()
        let failing = try retokenize()
        XCTAssertEqual(failing.status, PIIVaultExitCode.failure.rawValue, failing.stderr)
        XCTAssertTrue(failing.stderr.contains("read-only for this test"), failing.stderr)
        let actual7 = try await dump()
        XCTAssertEqual(actual7, before, "nothing moved without its entry")
        let actual8 = try await count("SELECT count(*) FROM vault.data_keys")
        XCTAssertEqual(actual8, dataKeysBefore, "no data key added")
    }

    // MARK: Tombstones and lookup across the rotation

    /// A user forgotten under token key v1 is still suppressed by an ETL run with v2 (the tombstone key is carried
    /// forward), and one forgotten with the v2 key is suppressed by a run with v1 too. Lookup searches both versions
    /// when given both keys, and names a version it has no key for.
    func testTombstonesSurviveTheRotationAndLookupSearchesEveryVersion() async throws {
        let forgetV1 = try runPiivault(["forget", "--database-url", compliance, "--token-key", v1Path, "--user-id",
                                        "rt-user-1", "--reason", "ERASE-1"], environment: ["PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(forgetV1.status, 0, forgetV1.stderr)
        let forgetV2 = try runPiivault(["forget", "--database-url", compliance, "--token-key", v2Path, "--user-id",
                                        "rt-user-2", "--reason", "ERASE-2"], environment: ["PIIVAULT_TOKEN_KEY": nil])
        XCTAssertEqual(forgetV2.status, 0, forgetV2.stderr)
        let template = try Self.templateRecord()
        func replay(_ user: String, _ tokenKey: String, _ name: String) throws -> ProcessResult {
            var record = template
            record["user_id"] = user
            record["ip"] = "203.0.113.9"
            record["device_id"] = "rt-replayed-device"
            record.removeValue(forKey: "message_id")
            let url = keys.appendingPathComponent(name)
            try (String(decoding: try JSONSerialization.data(withJSONObject: record), as: UTF8.self) + "\n")
                .write(to: url, atomically: true, encoding: .utf8)
            return try runPiivault(["etl", "--from-file", url.path, "--database-url", database.url, "--token-key", tokenKey,
                                    "--vault-public-key", keys.appendingPathComponent("vault.pub").path])
        }
        let v2Run = try replay("rt-user-1", v2Path, "replay1.ndjson")
        XCTAssertEqual(v2Run.status, 0, v2Run.stderr)
        XCTAssertTrue((v2Run.stdout + v2Run.stderr).contains("suppressed 1"), v2Run.stdout + v2Run.stderr)
        let v1Run = try replay("rt-user-2", v1Path, "replay2.ndjson")
        XCTAssertEqual(v1Run.status, 0, v1Run.stderr)
        XCTAssertTrue((v1Run.stdout + v1Run.stderr).contains("suppressed 1"), v1Run.stdout + v1Run.stderr)
        let actual9 = try await count("SELECT count(*) FROM user_logins WHERE user_id IN ('rt-user-1', 'rt-user-2')")
        XCTAssertEqual(actual9, 0)
        let actual10 = try await count("SELECT count(*) FROM vault.tombstones")
        XCTAssertEqual(actual10, 2)

        // A value only in the first half (v1) and one only in the second (v2).
        let onlyV1 = "198.51.100.3", onlyV2 = "198.51.100.40"
        func lookup(_ keys: [String]) throws -> ProcessResult {
            try runPiivault(["lookup", "--database-url", compliance, "--reason", "DSAR-7", "--ip", onlyV1, onlyV2,
                             "--format", "json", "--max-rows", "1000"] + keys.flatMap { ["--token-key", $0] },
                            environment: ["PIIVAULT_TOKEN_KEY": nil])
        }
        let both = try lookup([v1Path, v2Path])
        XCTAssertEqual(both.status, 0, both.stderr)
        XCTAssertFalse(both.stderr.contains("warning"), both.stderr)
        let found = try JSONSerialization.jsonObject(with: both.stdoutData) as! [[String: Any]]
        XCTAssertEqual(Set(found.compactMap { $0["value"] as? Int }), [1, 2])
        let onlyNew = try lookup([v2Path])
        XCTAssertTrue(onlyNew.stderr.contains("warning: the vault holds tokens of token key version 1"), onlyNew.stderr)
        XCTAssertFalse(onlyNew.stderr.contains(onlyV1), "no value in the warning")
        let foundNew = try JSONSerialization.jsonObject(with: onlyNew.stdoutData) as! [[String: Any]]
        XCTAssertEqual(Set(foundNew.compactMap { $0["value"] as? Int }), [2])
    }

    /// A value of an older version whose data key is missing (the owner switched the check off to write it) is never
    /// handed out: the run moves everything else, then says that values are left and exits 65, instead of reporting
    /// a finished rotation.
    func testARunThatWasNotHandedEveryOlderValueSaysSo() async throws {
        let owner = try await PostgresConnection.connect(database.url)
        for sql in ["ALTER TABLE vault.secrets DISABLE TRIGGER secrets_data_keys_exist_on_insert",
                    "INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.orphan', 'ip', 999999, '\\x00')",
                    "ALTER TABLE vault.secrets ENABLE TRIGGER secrets_data_keys_exist_on_insert"] {
            _ = try await owner.execute(PostgresQuery(unsafeSQL: sql))
        }
        await owner.close()
        let run = try retokenize(["--batch-size", "25"])
        XCTAssertEqual(run.status, 65, run.stderr)
        XCTAssertTrue(run.stderr.contains("1 sealed values of older token versions are left that this run did not move"), run.stderr)
        let left = try await count("SELECT count(*) FROM vault.secrets WHERE token LIKE '%.v1.%'")
        XCTAssertEqual(left, 1, "everything else moved")
    }

    // MARK: The versions from the primary key (migration 0025)

    /// `vault.token_version_ranges` reads the fields and versions off the primary key: the same groups a full scan
    /// with `vault.token_version` finds, multi-digit versions and tokens of other forms included, without a
    /// sequential scan of the vault.
    func testTheVersionRangesOfThePrimaryKeyHoldWhatAFullScanFinds() async throws {
        let owner = try await PostgresConnection.connect(database.url)
        func rows(_ sql: String) async throws -> [String] {
            try await owner.query(PostgresQuery(unsafeSQL: sql)).map { row in
                try (0..<row.columns.count).map { try row[$0].string() ?? "-" }.joined(separator: "|")
            }
        }
        // Tokens of versions 10 and 7 beside the fixture's 1 and 2, and forms no version range may hold.
        _ = try await owner.execute(PostgresQuery(unsafeSQL: """
            INSERT INTO vault.secrets (token, field, data_key_id, sealed)
            SELECT t, 'ip', (SELECT min(id) FROM vault.data_keys), '\\x00'
              FROM unnest(ARRAY['ip.v10.a', 'ip.v10.b', 'dev.v7.c', 'ip.v1', 'ip.v01.d', 'ip.vx.e', 'ip.v1/f',
                                'legacy-token', 'zz.v1.g', 'dev.v1234567890.h']
                          || ARRAY(SELECT 'ip.v7.' || g FROM generate_series(1, 5000) AS g)) AS t
            """))
        _ = try await owner.execute("ANALYZE vault.secrets")
        let fullScan = try await rows("""
            SELECT split_part(token, '.', 1) || '.v' || vault.token_version(token), vault.token_version(token), count(*)
              FROM vault.secrets WHERE vault.token_version(token) IS NOT NULL GROUP BY 1, 2 ORDER BY 1
            """)
        XCTAssertEqual(fullScan.count, 7, "\(fullScan)")  // ip.v1, v2, v7, v10 and dev.v1, v2, v7
        let found = try await owner.transaction { connection in
            // Counts of this backend not yet reported to the statistics (the scans above included): a difference.
            func sequentialScans() async throws -> Int {
                try await connection.query(PostgresQuery(unsafeSQL:
                    "SELECT coalesce(seq_scan, 0) FROM pg_stat_xact_user_tables WHERE relid = 'vault.secrets'::regclass"))
                    .first?[0].requiredInt() ?? 0
            }
            let scansBefore = try await sequentialScans()
            let found = try await connection.query(PostgresQuery(unsafeSQL:
                "SELECT r.low, r.high, r.version FROM vault.token_version_ranges() AS r")).map { row in
                (low: try row[0].requiredString(), high: try row[1].requiredString(), version: try row[2].requiredInt())
            }
            let scansAfter = try await sequentialScans()
            XCTAssertEqual(scansAfter, scansBefore, "a sequential scan of the vault")
            return found
        }
        var ranges: [String] = []
        for range in found {
            let held = try await rows("SELECT count(*) FROM vault.secrets WHERE token >= '\(range.low)' AND token < '\(range.high)'")
            ranges.append("\(range.low.dropLast())|\(range.version)|\(held[0])")
        }
        XCTAssertEqual(ranges.sorted(), fullScan.sorted())
        let versions = try await rows("SELECT v FROM vault.token_versions() AS v")
        XCTAssertEqual(versions, ["1", "2", "7", "10"])
        await owner.close()
    }
}

private extension Data {
    init(hexString: String) {
        var bytes: [UInt8] = []
        var index = hexString.startIndex
        while index < hexString.endIndex {
            let next = hexString.index(index, offsetBy: 2)
            bytes.append(UInt8(hexString[index..<next], radix: 16)!)
            index = next
        }
        self.init(bytes)
    }
}
