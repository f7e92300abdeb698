import Foundation
import Postgres
import TestSupport
import XCTest

/// The role table (README, "Database"), checked by logging in as a member of each role. Every "cannot" asserts Postgres's own
/// permission error (SQLSTATE 42501).
final class PrivilegeTests: XCTestCase {
    var database: ScratchDatabase!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "priv")
        let owner = try await database.connect()
        // One row in each table, written by the owner, so reads have something to return.
        try await owner.executeScript("""
            INSERT INTO user_logins (user_id, device_type, masked_ip, masked_device_id, message_id)
                VALUES ('u1', 'ios', 'ip.v1.00', 'dev.v1.00', 'm-owner');
            INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('0011223344556677', '\\x00');
            INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.00', 'ip', 1, '\\x01');
            INSERT INTO audit.access_log VALUES (1, now(), 'someone', 'os', 'host', 'unmask', 'case 1', 'u1', 1,
                'ok', '\\x\(String(repeating: "00", count: 32))', '\\x\(String(repeating: "11", count: 32))');
            """)
        await owner.close()
    }

    override func tearDown() async throws {
        await database?.drop()
    }

    private func connect(as role: String) async throws -> PostgresConnection {
        try await PostgresConnection.connect(try await database.createLogin(memberOf: role))
    }

    private func assertAllowed(
        _ connection: PostgresConnection, _ query: PostgresQuery, file: StaticString = #filePath, line: UInt = #line
    ) async {
        do {
            try await connection.query(query)
        } catch {
            XCTFail("expected \(query.sql) to be allowed: \(error)", file: file, line: line)
        }
    }

    private func assertRefused(
        _ connection: PostgresConnection, _ query: PostgresQuery, file: StaticString = #filePath, line: UInt = #line
    ) async {
        do {
            try await connection.query(query)
            XCTFail("expected \(query.sql) to be refused", file: file, line: line)
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "42501", "\(query.sql): \(error)", file: file, line: line)
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
    }

    func testAnalystReadsLoginsOnly() async throws {
        let analyst = try await connect(as: "piivault_analyst")
        defer { Task { await analyst.close() } }
        await assertAllowed(analyst, "SELECT * FROM user_logins")
        await assertRefused(analyst, "SELECT token FROM vault.secrets")
        await assertRefused(analyst, "SELECT sealed FROM vault.secrets")
        await assertRefused(analyst, "SELECT * FROM audit.access_log")
        // SECURITY.md's role table: the run history is the operator's and the auditor's, not the analyst's.
        await assertRefused(analyst, "SELECT * FROM etl_runs")
        await assertRefused(analyst, "INSERT INTO user_logins (user_id) VALUES ('x')")
    }

    func testETLWritesButCannotReadSealedValuesOrLogins() async throws {
        let etl = try await connect(as: "piivault_etl")
        defer { Task { await etl.close() } }
        await assertAllowed(etl, "INSERT INTO user_logins (user_id, message_id) VALUES ('u2', 'm-etl')")
        await assertAllowed(etl, "INSERT INTO user_logins (user_id, message_id) VALUES ('u2', 'm-etl') ON CONFLICT DO NOTHING")
        let dataKey = try await etl.query("INSERT INTO vault.data_keys (key_id, sealed_key) VALUES ('8899aabbccddeeff', '\\x02') RETURNING id")
        let dataKeyID = try XCTUnwrap(try dataKey.first?["id"].int())
        await assertAllowed(etl, "INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('dev.v1.01', 'device_id', \(dataKeyID), '\\x03')")
        await assertAllowed(etl, "INSERT INTO vault.secrets (token, field, data_key_id, sealed) VALUES ('ip.v1.00', 'ip', \(dataKeyID), '\\x03') ON CONFLICT DO NOTHING")
        await assertAllowed(etl, "INSERT INTO vault.quarantine (message_id, reason, data_key_id, sealed_body) VALUES ('m-bad', 'not JSON', \(dataKeyID), '\\x04')")
        await assertAllowed(etl, "SELECT token FROM vault.secrets WHERE token = 'ip.v1.00'")
        await assertAllowed(etl, "SELECT id, outcome FROM etl_runs")
        await assertRefused(etl, "INSERT INTO etl_runs (source) VALUES ('test')")  // only begin_etl_run (0030)
        // Only vault.claim_token_key (0031), which records a version's accepted key and nothing beside it.
        await assertRefused(etl, "INSERT INTO vault.token_keys (version, key_id, accepted) VALUES (7, 'aaaaaaaaaaaaaaaa', true)")
        await assertAllowed(etl, "SELECT vault.claim_token_key(7, 'aaaaaaaaaaaaaaaa')")
        await assertRefused(etl, "SELECT sealed FROM vault.secrets")
        await assertRefused(etl, "SELECT * FROM vault.secrets")
        await assertRefused(etl, "SELECT sealed_body FROM vault.quarantine")
        await assertRefused(etl, "SELECT sealed_key FROM vault.data_keys")
        await assertRefused(etl, "SELECT * FROM user_logins")
        await assertRefused(etl, "SELECT masked_ip FROM user_logins")
        await assertRefused(etl, "UPDATE vault.secrets SET sealed = '\\x00'")
        await assertRefused(etl, "DELETE FROM user_logins")
        await assertRefused(etl, "SELECT * FROM audit.access_log")
    }

    func testComplianceCannotSelectSealedValuesDirectly() async throws {
        let compliance = try await connect(as: "piivault_compliance")
        defer { Task { await compliance.close() } }
        await assertAllowed(compliance, "SELECT * FROM user_logins")
        await assertRefused(compliance, "SELECT sealed FROM vault.secrets")
        await assertRefused(compliance, "SELECT * FROM audit.access_log")
        await assertRefused(compliance, "INSERT INTO audit.access_log (seq) VALUES (99)")
        await assertRefused(compliance, "INSERT INTO audit.actions VALUES ('export', '{tokens}', true)")
        await assertRefused(compliance, "INSERT INTO vault.token_keys (version, key_id, accepted) VALUES (8, 'bbbbbbbbbbbbbbbb', false)")
    }

    func testAuditorReadsOnlyTheAccessLog() async throws {
        let auditor = try await connect(as: "piivault_auditor")
        defer { Task { await auditor.close() } }
        await assertAllowed(auditor, "SELECT * FROM audit.access_log")
        await assertRefused(auditor, "SELECT * FROM user_logins")
        await assertRefused(auditor, "SELECT token FROM vault.secrets")
        await assertRefused(auditor, "INSERT INTO audit.access_log (seq) VALUES (99)")
        await assertRefused(auditor, "UPDATE audit.access_log SET reason = 'x'")
        // The actions the log may name, beside it; read only.
        await assertAllowed(auditor, "SELECT * FROM audit.actions")
        await assertRefused(auditor, "UPDATE audit.actions SET denied_tokens = true")
    }

    func testALoginWithoutARoleReadsNothing() async throws {
        let nobody = try await PostgresConnection.connect(try await database.createLogin(memberOf: nil))
        defer { Task { await nobody.close() } }
        await assertRefused(nobody, "SELECT * FROM user_logins")
        await assertRefused(nobody, "SELECT * FROM vault.secrets")
        await assertRefused(nobody, "SELECT * FROM audit.access_log")
        await assertRefused(nobody, "SELECT * FROM audit.actions")
    }

    func testNobodyCanChangeTheAccessLogNotEvenTheOwner() async throws {
        let owner = try await database.connect()
        defer { Task { await owner.close() } }
        for statement: PostgresQuery in [
            "UPDATE audit.access_log SET reason = 'tampered'", "DELETE FROM audit.access_log",
            "TRUNCATE audit.access_log",
        ] {
            do {
                try await owner.execute(statement)
                XCTFail("\(statement.sql) must be refused")
            } catch let error as PostgresError {
                XCTAssertEqual(error.sqlState, "42501", "\(statement.sql): \(error)")
                XCTAssertTrue(error.message.contains("append-only"), error.message)
            }
        }
        let count = try await owner.query("SELECT count(*) AS n, min(reason) AS r FROM audit.access_log")
        XCTAssertEqual(try count.first?["n"].int(), 1)
        XCTAssertEqual(try count.first?["r"].string(), "case 1")
        for role in ["piivault_compliance", "piivault_auditor", "piivault_etl", "piivault_analyst"] {
            let member = try await connect(as: role)
            await assertRefused(member, "DELETE FROM audit.access_log")
            await assertRefused(member, "TRUNCATE audit.access_log")
            await member.close()
        }
    }
}
