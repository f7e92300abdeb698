@testable import PIIVault
import Foundation
import XCTest

/// What `retention` prints, and how `forget` and `retention` name the holder of a lock they gave up on.
final class RetentionOutputTests: XCTestCase {
    func testTheReportInEachFormat() throws {
        let done = RetentionReport(cutoff: "2026-10-26", loginsDeleted: 4, valuesDeleted: 7, dataKeysDeleted: 1, logSeq: 12)
        XCTAssertEqual(done.rendered(.table), """
            cutoff 2026-10-26 (logins dated before it)
            deleted 4 login rows
            deleted 7 sealed values
            deleted 1 data keys

            """)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(done.rendered(.json).utf8)) as? [String: Any])
        XCTAssertEqual(json["logins_deleted"] as? Int, 4)
        XCTAssertEqual(json["values_deleted"] as? Int, 7)
        XCTAssertEqual(json["data_keys_deleted"] as? Int, 1)
        XCTAssertEqual(json["log_seq"] as? Int, 12)
        XCTAssertEqual(json["dry_run"] as? Bool, false)
        let dry = RetentionReport(cutoff: "2026-10-26", loginsDeleted: 4, valuesDeleted: 7, dataKeysDeleted: 1, logSeq: nil)
        XCTAssertTrue(dry.rendered(.table).contains("would delete 4 login rows"))
        XCTAssertEqual(dry.rendered(.csv),
                       "cutoff,logins_deleted,values_deleted,data_keys_deleted,dry_run,log_seq\r\n2026-10-26,4,7,1,true,\r\n")
        let dryJSON = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(dry.rendered(.json).utf8)) as? [String: Any])
        XCTAssertTrue(dryJSON["log_seq"] is NSNull)
    }

    func testALockTimeoutNamesAnETLRunAnotherCommandOrASession() {
        let etl = VaultLockTimeout(action: "forget", holders: [.init(pid: 42, applicationName: "piivault etl", login: "etl")])
        XCTAssertEqual(etl.message, "forget timed out waiting for a lock: an ETL run (pid 42) is loading this user's messages (or values they share); nothing was deleted by this step; retry after it ends")
        XCTAssertEqual(etl.exitCode, .unavailable)
        let retention = VaultLockTimeout(action: "retention", holders: [.init(pid: 7, applicationName: "piivault forget", login: "officer")])
        XCTAssertTrue(retention.message.contains("a `forget` run (pid 7) holds it"), retention.message)
        XCTAssertTrue(retention.message.contains("a rerun resumes"), retention.message)
        let psql = VaultLockTimeout(action: "forget", holders: [.init(pid: 9, applicationName: "psql", login: "owner")])
        XCTAssertTrue(psql.message.contains("another session (pid 9, login owner, application psql) holds it"), psql.message)
        let nobody = VaultLockTimeout(action: "forget", holders: [])
        XCTAssertTrue(nobody.message.hasPrefix("forget timed out waiting for a lock an ETL batch or another erasure held"))
    }
}
