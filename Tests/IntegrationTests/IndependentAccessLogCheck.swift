import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// The independent verifier (`Tests/crosscheck/verify_access_log.py`) run over a database's access log, fed the rows
/// as JSON with `at` as Postgres prints a timestamptz (in UTC), so it re-derives the canonical time format itself.
/// Its output is `intact N SEQ:HASH` (status 0) or `broken N KIND` (status 1).
func independentAccessLogCheck(_ database: ScratchDatabase, anchor: String? = nil) async throws -> ProcessResult {
    let owner = try await database.connect()
    try await owner.execute("SET TimeZone = 'UTC'")
    let rows = try await owner.query("""
        SELECT coalesce(json_agg(json_build_object(
                   'seq', seq, 'at', at::text, 'db_user', db_user, 'os_user', os_user,
                   'client_host', client_host, 'action', action, 'reason', reason, 'subject', subject,
                   'row_count', row_count, 'outcome', outcome, 'prev_hash', encode(prev_hash, 'hex'),
                   'hash', encode(hash, 'hex')) ORDER BY seq), '[]')::text AS rows
          FROM audit.access_log
        """)
    await owner.close()
    let json = try XCTUnwrap(try rows.first?["rows"].string())
    let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/verify_access_log.py").path
    return try runProcess("python3", [script] + (anchor.map { ["--anchor", $0] } ?? []), input: Data(json.utf8))
}
