import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `piivault rewrap` (issue 13), the real binary against real Postgres, after the real 100-message sample was loaded
/// with key pair A by `piivault etl --from-file` in five runs (so five data keys, and quarantined bodies): rewrapping
/// to key pair B, killed midway and finished by a rerun; `--full`; other roles; a failing append.
final class RewrapTests: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    var compliance: String!
    var records: [[String: Any]] = []
    /// ETL runs of the sample (one data key each).
    let chunks = 5

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "rewrap")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("rewrap-keys-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: keys, withIntermediateDirectories: true)
        for pair in ["a", "b"] {
            let keygen = try runPiivault(["keygen", "--dir", keys.appendingPathComponent(pair).path])
            XCTAssertEqual(keygen.status, 0, keygen.stderr)
        }
        let sample = try TestServices.fixture("fetch-sample-messages.json")
        records = try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as! [[String: Any]]
        let lines = try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let size = (lines.count + chunks - 1) / chunks
        for (index, start) in stride(from: 0, to: lines.count, by: size).enumerated() {
            let file = keys.appendingPathComponent("sample-\(index).ndjson")
            try (lines[start..<min(start + size, lines.count)].joined(separator: "\n") + "\n")
                .write(to: file, atomically: true, encoding: .utf8)
            let etl = try runPiivault([
                "etl", "--from-file", file.path, "--database-url", database.url, "--token-key", tokenKeyPath,
                "--vault-public-key", path("a", "vault.pub"),
            ])
            XCTAssertEqual(etl.status, 0, etl.stderr)
        }
        compliance = try await database.createLogin(memberOf: "piivault_compliance")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
    }

    // MARK: Helpers

    private func path(_ pair: String, _ file: String) -> String {
        keys.appendingPathComponent(pair).appendingPathComponent(file).path
    }

    /// token.key of pair A (both pairs' token keys are unused otherwise: tokens do not change in a rewrap).
    private var tokenKeyPath: String { path("a", "token.key") }

    private func keyID(_ pair: String) throws -> String {
        try KeyLoading.loadVaultPublicKey(path: path(pair, "vault.pub")).keyID.hex
    }

    private func rewrap(_ arguments: [String], login: String? = nil, from pair: String = "a", to target: String = "b",
                        environment: [String: String?] = [:]) throws -> ProcessResult {
        var env: [String: String?] = ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil,
                                      "PIIVAULT_FAULT_EXIT_AFTER_COMMITS": nil]
        for (key, value) in environment { env[key] = value }
        return try runPiivault(["rewrap", "--database-url", login ?? compliance!, "--key-file", path(pair, "vault.key"),
                                "--to", path(target, "vault.pub")] + arguments, environment: env)
    }

    private func unmask(_ arguments: [String], with pair: String) throws -> ProcessResult {
        try runPiivault(["unmask", "--database-url", compliance!, "--key-file", path(pair, "vault.key"),
                         "--token-key", tokenKeyPath] + arguments,
                        environment: ["USER": "officer-on-duty", "PIIVAULT_VAULT_KEY": nil, "PIIVAULT_TOKEN_KEY": nil])
    }

    private func query(_ sql: String) async throws -> PostgresRows {
        let owner = try await database.connect()
        do {
            let rows = try await owner.query(PostgresQuery(unsafeSQL: sql))
            await owner.close()
            return rows
        } catch {
            await owner.close()
            throw error
        }
    }

    private func count(_ sql: String) async throws -> Int {
        try await query(sql).first![0].requiredInt()
    }

    private func execute(_ sql: String) async throws {
        let owner = try await database.connect()
        do {
            try await owner.executeScript(sql)
            await owner.close()
        } catch {
            await owner.close()
            throw error
        }
    }

    /// Access-log entries after `seq`, as `db_user|os_user|action|reason|subject|row_count|outcome`.
    private func entries(after seq: Int) async throws -> [String] {
        try await query("""
            SELECT concat_ws('|', db_user, os_user, action, reason, subject, row_count, outcome) AS e
              FROM audit.access_log WHERE seq > \(seq) ORDER BY seq
            """).map { try $0["e"].requiredString() }
    }

    private func logLength() async throws -> Int {
        try await count("SELECT count(*) FROM audit.access_log")
    }

    private func user(of url: String) -> String { URLComponents(string: url)!.user! }

    /// Everything rewrap may change, as text: data keys, sealed values and quarantined bodies.
    private func vaultState() async throws -> String {
        try await query("""
            SELECT concat_ws(';',
                (SELECT string_agg(id || ':' || key_id || ':' || encode(sealed_key, 'hex'), ',' ORDER BY id) FROM vault.data_keys),
                (SELECT string_agg(token || ':' || data_key_id || ':' || encode(sealed, 'hex'), ',' ORDER BY token) FROM vault.secrets),
                (SELECT string_agg(message_id || ':' || data_key_id || ':' || encode(sealed_body, 'hex'), ',' ORDER BY message_id)
                   FROM vault.quarantine)) AS s
            """).first!["s"].requiredString()
    }

    private func auditVerify() async throws {
        let verify = try runPiivault(["audit", "verify", "--database-url",
                                      try await database.createLogin(memberOf: "piivault_auditor")])
        XCTAssertEqual(verify.status, 0, verify.stdout + verify.stderr)
    }

    /// A user of the sample with an ip and a device id, and the canonical values of all their logins.
    private func sampleUser() throws -> (id: String, values: Set<[String]>) {
        let record = try XCTUnwrap(records.first { ($0["ip"] as? String) != nil && ($0["device_id"] as? String) != nil
                                                   && ($0["user_id"] as? String) != nil })
        let id = record["user_id"] as! String
        let tokenizer = Tokenizer(key: try KeyLoading.loadTokenKey(path: tokenKeyPath))
        let values = try Set(records.filter { ($0["user_id"] as? String) == id }.map { record in
            [try tokenizer.tokenize(record["ip"] as! String, as: .ip).canonical,
             try tokenizer.tokenize(record["device_id"] as! String, as: .deviceID).canonical]
        })
        return (id, values)
    }

    /// `unmask --user-id` with key pair B prints the user's originals; with A it is refused as a key mismatch, logged.
    private func assertUnmasksWithBOnly(line: UInt = #line) async throws {
        let (userID, expected) = try sampleUser()
        let withB = try unmask(["--reason", "after rewrap", "--user-id", userID, "--format", "json"], with: "b")
        XCTAssertEqual(withB.status, 0, withB.stderr, line: line)
        let logins = try XCTUnwrap(try JSONSerialization.jsonObject(with: withB.stdoutData) as? [[String: Any]], line: line)
        XCTAssertEqual(Set(logins.map { [$0["ip"] as? String ?? "", $0["device_id"] as? String ?? ""] }), expected,
                       line: line)
        let before = try await logLength()
        let withA = try unmask(["--reason", "old key", "--user-id", userID], with: "a")
        XCTAssertEqual(withA.status, 77, withA.stderr, line: line)
        XCTAssertEqual(withA.stdout, "", line: line)
        let refusal = try await entries(after: before)
        XCTAssertEqual(refusal.count, 1, line: line)
        XCTAssertTrue(refusal.first?.hasSuffix("refused: vault key mismatch (sealed to \(try keyID("b")), key file is \(try keyID("a")))") ?? false,
                      "\(refusal)", line: line)
    }

    // MARK: Acceptance 1: rewrap, killed and rerun, then nothing left

    func testRewrapKilledMidwayAndRerunLeavesEveryDataKeySealedToTheNewKeyAndUnmaskNeedsIt() async throws {
        let a = try keyID("a"), b = try keyID("b")
        let loaded = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        XCTAssertEqual(loaded, chunks, "one data key per ETL run")
        // A data key sealed to a third key: reported, left alone.
        let third = String(repeating: "c", count: 16)
        try await execute("INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('\(third)', decode(repeat('00', 80), 'hex'))")
        let valuesBefore = try await query("SELECT string_agg(token || encode(sealed, 'hex'), ',' ORDER BY token) AS v FROM vault.secrets")
            .first!["v"].requiredString()
        let before = try await logLength()

        let dry = try rewrap(["--reason", "ROT-1", "--dry-run"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertTrue(dry.stdout.contains("would rewrap \(chunks) data keys from vault key \(a) to \(b)"), dry.stdout)
        let afterDry = try await logLength()
        XCTAssertEqual(afterDry, before, "a dry run logs nothing")

        // Killed after two batches of two data keys: four rewrapped, one left.
        let killed = try rewrap(["--reason", "ROT-1", "--batch-size", "2"],
                                environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "2"])
        XCTAssertEqual(killed.status, 75, killed.stderr)
        let leftAfterKill = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        XCTAssertEqual(leftAfterKill, chunks - 4)

        let rerun = try rewrap(["--reason", "ROT-1", "--batch-size", "2"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertTrue(rerun.stdout.contains("rewrapped \(chunks - 4) data keys from vault key \(a) to \(b)"), rerun.stdout)
        XCTAssertTrue(rerun.stdout.contains("1 data keys sealed to other vault keys left alone: \(third)"), rerun.stdout)

        let again = try rewrap(["--reason", "ROT-1"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("nothing to rewrap: no data key is sealed to vault key \(a)"), again.stdout)

        let sealedToA = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        let sealedToB = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(b)'")
        let sealedToThird = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(third)'")
        XCTAssertEqual([sealedToA, sealedToB, sealedToThird], [0, chunks, 1])
        let valuesAfter = try await query("SELECT string_agg(token || encode(sealed, 'hex'), ',' ORDER BY token) AS v FROM vault.secrets")
            .first!["v"].requiredString()
        XCTAssertEqual(valuesAfter, valuesBefore, "a rewrap does not touch the values")

        let officer = user(of: compliance)
        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(officer)|officer-on-duty|rewrap|ROT-1|vault_key:\(a)->\(b) data_keys:\(chunks)|\(chunks)|ok (1 data keys sealed to other keys left alone: \(third))",
            "\(officer)|officer-on-duty|rewrap|ROT-1|vault_key:\(a)->\(b) data_keys:\(chunks - 4)|\(chunks - 4)|ok (1 data keys sealed to other keys left alone: \(third))",
            "\(officer)|officer-on-duty|rewrap|ROT-1|vault_key:\(a)->\(b) data_keys:0|0|not found: no data keys sealed to \(a) (1 data keys sealed to other keys left alone: \(third))",
        ])
        try await assertUnmasksWithBOnly()
        try await assertPyNaClOpensEveryValueWithB()
        try await auditVerify()
    }

    /// Cross-check with another implementation: PyNaCl (`Tests/crosscheck/crosscheck.py open`) opens each rewrapped
    /// data key with B's secret key (`SealedBox`) and every value under it; each is the value of its token.
    private func assertPyNaClOpensEveryValueWithB(line: UInt = #line) async throws {
        let secretB = try KeyLoading.loadVaultSecretKey(path: path("b", "vault.key")) { throw CancellationError() }
        let skHex = secretB.bytes.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() }
        let tokenizer = Tokenizer(key: try KeyLoading.loadTokenKey(path: tokenKeyPath))
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
        let keys = try await query("SELECT id, encode(sealed_key, 'hex') AS k FROM vault.data_keys WHERE key_id = '\(try keyID("b"))'")
        var opened = 0
        for key in keys {
            let rows = try await query("""
                SELECT token, field, encode(sealed, 'hex') AS s FROM vault.secrets WHERE data_key_id = \(try key["id"].requiredInt())
                """)
            let request: [String: Any] = [
                "vault_sk": skHex, "sealed_key": try key["k"].requiredString(),
                "values": try rows.map { ["sealed": try $0["s"].requiredString(), "ad": try $0["token"].requiredString()] },
            ]
            let result = try runProcess("python3", [script, "open"], input: try JSONSerialization.data(withJSONObject: request))
            XCTAssertEqual(result.status, 0, "PyNaCl (pip install pynacl): \(result.stderr)", line: line)
            let plain = try XCTUnwrap((try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])?["plain"] as? [String],
                                      line: line)
            XCTAssertEqual(plain.count, rows.count, line: line)
            for (row, hexValue) in zip(rows, plain) {
                var bytes: [UInt8] = []
                var index = hexValue.startIndex
                while index < hexValue.endIndex {
                    let next = hexValue.index(index, offsetBy: 2)
                    bytes.append(UInt8(hexValue[index..<next], radix: 16)!)
                    index = next
                }
                let field: PIIField = try row["field"].requiredString() == "ip" ? .ip : .deviceID
                XCTAssertEqual(try tokenizer.tokenize(String(decoding: bytes, as: UTF8.self), as: field).token,
                               try row["token"].requiredString(), line: line)
                opened += 1
            }
        }
        let values = try await count("SELECT count(*) FROM vault.secrets")
        XCTAssertEqual(opened, values, "PyNaCl opened every value", line: line)
    }

    // MARK: Acceptance 1 with --full: new data keys, old ones deleted

    func testFullRewrapKilledMidwayAndRerunReencryptsEveryValueAndLeavesNoDataKeySealedToTheOldKey() async throws {
        let a = try keyID("a"), b = try keyID("b")
        let values = try await count("SELECT count(*) FROM vault.secrets")
        let bodies = try await count("SELECT count(*) FROM vault.quarantine")
        XCTAssertGreaterThan(bodies, 0, "the sample quarantines some messages")
        let oldSealed = Set(try await query("SELECT encode(sealed, 'hex') AS s FROM vault.secrets").map { try $0["s"].requiredString() })
        let before = try await logLength()

        let killed = try rewrap(["--reason", "EXPOSED-1", "--full", "--batch-size", "10"],
                                environment: ["PIIVAULT_FAULT_EXIT_AFTER_COMMITS": "3"])
        XCTAssertEqual(killed.status, 75, killed.stderr)
        let moved = try await count("""
            SELECT count(*) FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
             WHERE k.key_id = '\(b)'
            """)
        XCTAssertEqual(moved, 30, "three batches of ten values committed before the kill")

        let rerun = try rewrap(["--reason", "EXPOSED-1", "--full", "--batch-size", "10"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertTrue(rerun.stdout.contains("re-encrypted \(values + bodies - 30) values"), rerun.stdout)
        XCTAssertTrue(rerun.stdout.contains("; 0 left"), rerun.stdout)

        let again = try rewrap(["--reason", "EXPOSED-1", "--full"])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stdout.contains("nothing to rewrap"), again.stdout)

        let sealedToA = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        XCTAssertEqual(sealedToA, 0, "no data key sealed to the old key remains")
        let valuesAfter = try await count("SELECT count(*) FROM vault.secrets")
        let bodiesAfter = try await count("SELECT count(*) FROM vault.quarantine")
        XCTAssertEqual([valuesAfter, bodiesAfter], [values, bodies])

        // Every value and body opens with B under its own token (message id), and is the value of its token.
        let secretB = try KeyLoading.loadVaultSecretKey(path: path("b", "vault.key")) { throw CancellationError() }
        let tokenizer = Tokenizer(key: try KeyLoading.loadTokenKey(path: tokenKeyPath))
        var openers: [Int: DataKeyOpener] = [:]
        func opener(_ row: PostgresRow) throws -> DataKeyOpener {
            let id = try row["data_key_id"].requiredInt()
            if let opener = openers[id] { return opener }
            let keyID = try XCTUnwrap(KeyID(hex: try row["key_id"].requiredString()))
            let opener = try DataKeyOpener(sealedDataKey: SealedDataKey(keyID: keyID, sealed: try row["sealed_key"].requiredBytes()),
                                           secretKey: secretB)
            openers[id] = opener
            return opener
        }
        let secrets = try await query("""
            SELECT s.token, s.field, s.data_key_id, k.key_id, k.sealed_key, s.sealed
              FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id
            """)
        var newSealed: Set<String> = []
        for row in secrets {
            let token = try row["token"].requiredString(), sealed = try row["sealed"].requiredBytes()
            let value = try opener(row).openString(sealed, token: token)
            let field: PIIField = try row["field"].requiredString() == "ip" ? .ip : .deviceID
            XCTAssertEqual(try tokenizer.tokenize(value, as: field).token, token, "a value re-sealed to another token")
            newSealed.insert(sealed.map { String(format: "%02x", $0) }.joined())
        }
        XCTAssertTrue(newSealed.isDisjoint(with: oldSealed), "every value was re-encrypted")
        let quarantined = try await query("""
            SELECT q.message_id, q.data_key_id, k.key_id, k.sealed_key, q.sealed_body
              FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id
            """)
        for row in quarantined {
            let body = try opener(row).openQuarantined(try row["sealed_body"].requiredBytes(),
                                                       messageID: try row["message_id"].requiredString())
            XCTAssertFalse(body.isEmpty)
        }
        XCTAssertEqual(openers.count, 2, "one new data key per run (the killed run's and the rerun's)")

        // The rerun's entry counts the old data keys the kill left (those the first three batches did not empty).
        let officer = user(of: compliance)
        let leftByKill = try await query("""
            SELECT row_count FROM audit.access_log WHERE action = 'rewrap' ORDER BY seq OFFSET 1 LIMIT 1
            """).first!["row_count"].requiredInt()
        XCTAssertTrue((1...chunks).contains(leftByKill), "\(leftByKill)")
        let logged = try await entries(after: before)
        XCTAssertEqual(logged, [
            "\(officer)|officer-on-duty|rewrap|EXPOSED-1|vault_key:\(a)->\(b) data_keys:\(chunks) values:\(values + bodies) full|\(chunks)|ok",
            "\(officer)|officer-on-duty|rewrap|EXPOSED-1|vault_key:\(a)->\(b) data_keys:\(leftByKill) values:\(values + bodies - 30) full|\(leftByKill)|ok",
            "\(officer)|officer-on-duty|rewrap|EXPOSED-1|vault_key:\(a)->\(b) data_keys:0 values:0 full|0|not found: no data keys sealed to \(a)",
        ])
        try await assertUnmasksWithBOnly()
        try await auditVerify()
    }

    // MARK: What rewrap leaves alone

    func testADamagedDataKeyIsLeftSealedToTheOldKeyReportedAndLogged() async throws {
        let a = try keyID("a"), b = try keyID("b")
        let damaged = try await count("SELECT min(id) FROM vault.data_keys WHERE key_id = '\(a)'")
        // Flip every bit of one byte (a fixed value could equal the byte it replaces).
        try await execute("UPDATE vault.data_keys SET sealed_key = set_byte(sealed_key, 40, get_byte(sealed_key, 40) # 255) WHERE id = \(damaged)")
        let before = try await logLength()
        let result = try rewrap(["--reason", "ROT-7"])
        XCTAssertEqual(result.status, 65, result.stderr)
        XCTAssertTrue(result.stdout.contains("rewrapped \(chunks - 1) data keys"), result.stdout)
        XCTAssertTrue(result.stdout.contains("1 data keys did not open with the old key; left sealed to it"), result.stdout)
        XCTAssertTrue(result.stderr.contains("1 data keys and 0 values did not open with the old vault key"), result.stderr)
        let left = try await query("SELECT id FROM vault.data_keys WHERE key_id = '\(a)'").map { try $0["id"].requiredInt() }
        XCTAssertEqual(left, [damaged])
        let outcomes = try await entries(after: before).map { $0.split(separator: "|").suffix(3).joined(separator: "|") }
        XCTAssertEqual(outcomes, [
            "vault_key:\(a)->\(b) data_keys:\(chunks)|\(chunks)|ok",
            "vault_key:\(a)->\(b)|0|refused: data key damaged (1 data keys and 0 values did not open with vault key \(a))",
        ])
        try await auditVerify()
    }

    func testFullKeepsTheOldDataKeysWhileAnETLRunSealsToTheOldKeyAndARerunDeletesThem() async throws {
        let a = try keyID("a"), b = try keyID("b")
        // An ETL run that is running with the old vault.pub keeps its lock session's transaction open for as long as
        // it lives.
        let etl = try await LiveETLRun.start(database.url, vaultKeyID: a)
        let kept = try rewrap(["--reason", "EXPOSED-2", "--full"])
        XCTAssertEqual(kept.status, 1, kept.stderr)
        XCTAssertTrue(kept.stderr.contains("an ETL run sealing to it is running"), kept.stderr)
        let stillA = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        XCTAssertEqual(stillA, chunks, "no old data key deleted while the ETL may still seal under one")
        let underA = try await count("""
            SELECT (SELECT count(*) FROM vault.secrets AS s JOIN vault.data_keys AS k ON k.id = s.data_key_id WHERE k.key_id = '\(a)')
                 + (SELECT count(*) FROM vault.quarantine AS q JOIN vault.data_keys AS k ON k.id = q.data_key_id WHERE k.key_id = '\(a)')
            """)
        XCTAssertEqual(underA, 0, "the values moved all the same")

        await etl.end()  // the ETL run ended
        let rerun = try rewrap(["--reason", "EXPOSED-2", "--full"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertTrue(rerun.stdout.contains("re-encrypted 0 values under 0 new data keys sealed to \(b)"), rerun.stdout)
        XCTAssertTrue(rerun.stdout.contains("deleted \(chunks) data keys sealed to \(a); 0 left"), rerun.stdout)
        let gone = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(a)'")
        let newKeys = try await count("SELECT count(*) FROM vault.data_keys WHERE key_id = '\(b)'")
        XCTAssertEqual([gone, newKeys], [0, 1], "one new data key for the run that moved values, none for the rerun")
        try await assertUnmasksWithBOnly()
        try await auditVerify()
    }

    // MARK: Acceptance 4: other roles, and a failing append

    func testOtherRolesAreRefusedAndLoggedAndNothingChangesWhenTheAppendFails() async throws {
        let a = try keyID("a")
        let state = try await vaultState()
        let before = try await logLength()
        var expected: [String] = []
        for role in ["piivault_etl", "piivault_analyst", "piivault_auditor"] {
            let login = try await database.createLogin(memberOf: role)
            for full in [false, true] {
                let result = try rewrap(["--reason", "curious"] + (full ? ["--full"] : []), login: login)
                XCTAssertEqual(result.status, 77, "\(role): \(result.stderr)")
                XCTAssertTrue(result.stderr.contains("not a member of piivault_compliance"), "\(role): \(result.stderr)")
                expected.append("\(user(of: login))|officer-on-duty|rewrap|curious|vault_key|0|"
                                + "refused: not permitted (login is not a member of piivault_compliance)")
            }
        }
        let refusals = try await entries(after: before)
        XCTAssertEqual(refusals, expected)
        let afterRefusals = try await vaultState()
        XCTAssertEqual(afterRefusals, state, "refused logins changed the vault")

        // The ETL login cannot reach the batch functions either.
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        for call in ["SELECT vault.start_rewrap(1)", "SELECT * FROM vault.release_rewrap_keys(1, 0, 10)",
                     "SELECT vault.replace_rewrap_keys(1, '{}', '{}', '{}')"] {
            do {
                _ = try await etl.query(PostgresQuery(unsafeSQL: call))
                XCTFail("the ETL login may run \(call)")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42501", "\(call): \(error)")
            }
        }
        await etl.close()

        // The append fails: nothing changes, plain or full.
        try await execute(ScratchDatabase.refuseAccessLogAppends)
        let logBefore = try await logLength()
        for full in [false, true] {
            let result = try rewrap(["--reason", "ROT-2"] + (full ? ["--full"] : []))
            XCTAssertEqual(result.status, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("read-only for this test"), result.stderr)
        }
        // The append succeeds but its COMMIT fails: still nothing.
        try await execute("""
            DROP TRIGGER refuse_append ON audit.access_log;
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON audit.access_log
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.refuse_append();
            """)
        for full in [false, true] {
            let result = try rewrap(["--reason", "ROT-2"] + (full ? ["--full"] : []))
            XCTAssertEqual(result.status, 1, result.stderr)
            XCTAssertTrue(result.stderr.contains("read-only for this test"), result.stderr)
        }
        let afterFailure = try await vaultState()
        XCTAssertEqual(afterFailure, state, "a rewrap without its entry changed the vault")
        let logAfter = try await logLength()
        XCTAssertEqual(logAfter, logBefore)
        try await execute("DROP TRIGGER refuse_commit ON audit.access_log")

        // A grant is used only by the session that started it: another session of the same officer gets nothing.
        let officer = try await PostgresConnection.connect(compliance)
        let asked = try await officer.query(PostgresQuery(unsafeSQL: """
            SELECT log_seq FROM vault.request_rewrap('\(a)', '\(try keyID("b"))', false, 'ROT-3', 'o', 'h', false)
            """))
        let seq = try XCTUnwrap(try asked.first?["log_seq"].int())
        do {
            _ = try await officer.query(PostgresQuery(unsafeSQL: "SELECT * FROM vault.release_rewrap_keys(\(seq), 0, 10)"))
            XCTFail("released before the run was started")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", error.description)
        }
        _ = try await officer.query(PostgresQuery(unsafeSQL: "SELECT vault.start_rewrap(\(seq))"))
        let other = try await PostgresConnection.connect(compliance)
        do {
            _ = try await other.query(PostgresQuery(unsafeSQL: "SELECT * FROM vault.release_rewrap_keys(\(seq), 0, 10)"))
            XCTFail("another session used the grant")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", error.description)
        }
        await other.close()
        let released = try await officer.query(PostgresQuery(unsafeSQL: "SELECT * FROM vault.release_rewrap_keys(\(seq), 0, 10)"))
        XCTAssertEqual(released.count, chunks, "the session that started the run gets the data keys")
        // A write in between (another run replaced one data key): the stale replacement leaves that one alone.
        let ids = try released.map { try $0["id"].requiredInt() }
        let handedOut = try released.map { "\"\\\\x" + (try $0["sealed_key"].requiredBytes()).map { String(format: "%02x", $0) }.joined() + "\"" }
        let replacement = "\"\\\\x" + String(repeating: "ee", count: 80) + "\""
        try await execute("UPDATE vault.data_keys SET sealed_key = decode(repeat('dd', 80), 'hex') WHERE id = \(ids[0])")
        let replaced = try await officer.query(PostgresQuery(unsafeSQL: """
            SELECT vault.replace_rewrap_keys(\(seq), '{\(ids.map(String.init).joined(separator: ","))}',
                                             '{\(handedOut.joined(separator: ","))}',
                                             '{\(Array(repeating: replacement, count: ids.count).joined(separator: ","))}') AS n
            """)).first!["n"].requiredInt()
        XCTAssertEqual(replaced, chunks - 1, "only the data keys still as they were handed out are replaced")
        let kept = try await query("SELECT key_id, encode(sealed_key, 'hex') AS k FROM vault.data_keys WHERE id = \(ids[0])").first!
        XCTAssertEqual(try kept["key_id"].requiredString(), a)
        XCTAssertEqual(try kept["k"].requiredString(), String(repeating: "dd", count: 80), "the other writer's bytes stay")
        await officer.close()

        // --to the old key's own public key: usage, before the database.
        let logBeforeSame = try await logLength()
        let same = try rewrap(["--reason", "ROT-4"], to: "a")
        XCTAssertEqual(same.status, 64, same.stderr)
        XCTAssertTrue(same.stderr.contains("--to holds the public key of the old vault key"), same.stderr)
        let logAfterSame = try await logLength()
        XCTAssertEqual(logAfterSame, logBeforeSame)

        // --to is checked like vault.pub: writable by others is refused (77) before the database.
        let writable = keys.appendingPathComponent("writable.pub")
        try FileManager.default.copyItem(atPath: path("b", "vault.pub"), toPath: writable.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o666], ofItemAtPath: writable.path)
        let exposedTo = try runPiivault(["rewrap", "--database-url", compliance!, "--key-file", path("a", "vault.key"),
                                         "--to", writable.path, "--reason", "ROT-5"])
        XCTAssertEqual(exposedTo.status, 77, exposedTo.stderr)
        XCTAssertTrue(exposedTo.stderr.contains("chmod go-w"), exposedTo.stderr)

        // A passphrase-protected old key: a wrong passphrase stops before the database (77); the right one loads it
        // (it is another vault's key, so there is nothing to rewrap, and that is logged).
        let passphrase = keys.appendingPathComponent("passphrase"), wrong = keys.appendingPathComponent("wrong")
        try "correct horse battery staple\n".write(to: passphrase, atomically: true, encoding: .utf8)
        try "incorrect horse\n".write(to: wrong, atomically: true, encoding: .utf8)
        for file in [passphrase, wrong] { try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: file.path) }
        let keygen = try runPiivault(["keygen", "--dir", keys.appendingPathComponent("p").path, "--passphrase"],
                                     environment: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let wrongPassphrase = try rewrap(["--reason", "ROT-6"], from: "p", environment: ["PIIVAULT_PASSPHRASE_FILE": wrong.path])
        XCTAssertEqual(wrongPassphrase.status, 77, wrongPassphrase.stderr)
        let logAfterOffline = try await logLength()
        XCTAssertEqual(logAfterOffline, logBeforeSame, "refused key files reach no database")
        let locked = try rewrap(["--reason", "ROT-6"], from: "p", environment: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(locked.status, 0, locked.stderr)
        XCTAssertTrue(locked.stdout.contains("nothing to rewrap: no data key is sealed to vault key \(try keyID("p"))"), locked.stdout)
        let lockedEntry = try await entries(after: logAfterOffline)
        XCTAssertEqual(lockedEntry.count, 1)
        XCTAssertTrue(lockedEntry.first?.contains("|rewrap|ROT-6|vault_key:\(try keyID("p"))->") ?? false, "\(lockedEntry)")
        let unchanged = try await vaultState()
        XCTAssertEqual(unchanged.split(separator: ";").dropFirst().joined(), state.split(separator: ";").dropFirst().joined(),
                       "values untouched")
        try await auditVerify()
    }
}

extension RewrapTests {
    /// A data key sealed to the old vault key after the rewrap was asked for (an ETL run still given the old vault.pub
    /// stores one): the run cannot have re-sealed it, and its final count says so, so that `rewrap --full` does not
    /// report 0 left while values stay under the old key.
    func testTheFinalCountIncludesOldDataKeysStoredAfterTheRequest() async throws {
        let old = try keyID("a"), new = try keyID("b")
        let officer = try await PostgresConnection.connect(compliance)
        defer { Task { await officer.close() } }
        let seq = try await officer.query("""
            SELECT log_seq FROM vault.request_rewrap(\(old), \(new), true, 'r', 'o', 'h', false)
            """).requiredFirst("request_rewrap")["log_seq"].requiredInt()
        _ = try await officer.query("SELECT vault.start_rewrap(\(seq))")
        let etl = try await PostgresConnection.connect(try await database.createLogin(memberOf: "piivault_etl"))
        _ = try await etl.query("INSERT INTO vault.data_keys (key_id, sealed_key) VALUES (\(old), '\\x00')")
        await etl.close()
        let left = try await officer.query("SELECT in_use FROM vault.drop_rewrapped_data_keys(\(seq))")
            .requiredFirst("drop_rewrapped_data_keys")["in_use"].requiredInt()
        let sealedToOld = try await query("SELECT count(*) AS n FROM vault.data_keys WHERE key_id = '\(old)'")
            .requiredFirst("count")["n"].requiredInt()
        XCTAssertEqual(left, sealedToOld)
    }
}
