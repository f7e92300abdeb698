import Foundation
@testable import PIIVault
import XCTest

/// Accesses the database could not refuse (migration 0017 marks their outcome): which entries count as such, and
/// the report's section that lists them.
final class OutsideComplianceTests: XCTestCase {
    private func entry(_ seq: Int, outcome: String) -> AccessLogEntry {
        AccessLogEntry(seq: seq, at: "2026-12-01T10:00:0\(seq).000000Z", dbUser: "login\(seq)", osUser: "os", clientHost: "h",
                       action: "unmask", reason: "case \(seq)", subject: "user_id:u", rowCount: 1, outcome: outcome,
                       prevHash: AccessLogEntry.genesisHash, hash: AccessLogEntry.genesisHash)
    }

    func testOnlyMarkedAccessesCountRefusalsNever() {
        XCTAssertFalse(entry(1, outcome: "ok").isOutsideCompliance)
        XCTAssertTrue(entry(2, outcome: "ok [outside piivault_compliance: superuser]").isOutsideCompliance)
        XCTAssertTrue(entry(3, outcome: "not found: no logins for this user id [outside piivault_compliance: not a member]")
            .isOutsideCompliance)
        XCTAssertFalse(entry(4, outcome: "refused: x [outside piivault_compliance: superuser]").isOutsideCompliance,
                       "a refusal's outcome text is the client's (record_refusal); it gave nothing")
    }

    func testTheReportListsThemOrSaysThereAreNone() {
        func report(_ entries: [AccessLogEntry]) -> String {
            AuditReport(entries: entries, verdict: .intact(entryCount: entries.count, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)),
                        checkpoints: [], since: nil, until: nil, generatedAt: "now",
                        officerLogins: Set(entries.map(\.dbUser))).html
        }
        let none = report([entry(1, outcome: "ok")])
        XCTAssertTrue(none.contains("<p id=\"outside-compliance\">None: every access in the period was by a member of piivault_compliance.</p>"), none)
        let some = report([entry(1, outcome: "ok"), entry(2, outcome: "ok [outside piivault_compliance: superuser]")])
        let table = String(some[some.range(of: "<table id=\"outside-compliance\">")!.lowerBound...])
        let section = String(table[..<table.range(of: "</table>")!.upperBound])
        XCTAssertTrue(section.contains("<td>login2</td>"), section)
        XCTAssertFalse(section.contains("<td>login1</td>"), section)
        XCTAssertTrue(some.contains("1 access(es) by a superuser or a login outside piivault_compliance"), some)
    }
}
