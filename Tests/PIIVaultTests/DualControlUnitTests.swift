import Foundation
@testable import PIIVault
import XCTest

/// Dual control's pieces that need no database: the window's notation, the request line, the target a request's
/// logged subject names, and the report's flags.
final class DualControlUnitTests: XCTestCase {
    func testTheWindowIsANumberAndAUnit() {
        XCTAssertEqual(ApprovalWindow(parsing: "90s")?.seconds, 90)
        XCTAssertEqual(ApprovalWindow(parsing: "15m")?.seconds, 900)
        XCTAssertEqual(ApprovalWindow(parsing: "24h")?.seconds, 86400)
        XCTAssertEqual(ApprovalWindow(parsing: "2d")?.seconds, 172_800)
        for bad in ["", "24", "h", "0h", "-1h", "+1h", "1.5h", "3w", "367d", "1 h"] {
            XCTAssertNil(ApprovalWindow(parsing: bad), bad)
        }
        XCTAssertEqual(ApprovalWindow(seconds: 86400).description, "1d")
        XCTAssertEqual(ApprovalWindow(seconds: 7200).description, "2h")
        XCTAssertEqual(ApprovalWindow(seconds: 900).description, "15m")
        XCTAssertEqual(ApprovalWindow(seconds: 90).description, "90s")
    }

    func testAPendingRequestIsOneLineAndExits75() {
        let pending = ApprovalPending(requestID: 12, action: "unmask", approvals: 2)
        XCTAssertEqual(pending.message,
                       "request 12 waits for 2 approval(s) by other compliance officers: piivault approve 12")
        XCTAssertEqual(pending.exitCode.rawValue, 75)
        let refused = ComplianceError.dualControlRefused(outcome: "refused: dual control: request 12 has 1 of 2 approval(s)", logSeq: 14)
        XCTAssertEqual(refused.message, "dual control: request 12 has 1 of 2 approval(s); nothing was released or changed (refusal logged as access-log entry 14); see piivault requests")
        XCTAssertEqual(refused.exitCode.rawValue, 77)
    }

    func testARequestsLoggedSubjectNamesItsUnmaskTarget() throws {
        let token = "ip.v1." + String(repeating: "ab", count: 32)
        XCTAssertEqual(try UnmaskRequest.Target(loggedSubject: "user_id:u-1", request: 1), .userID("u-1"))
        XCTAssertEqual(try UnmaskRequest.Target(loggedSubject: "message_id:m:2", request: 1), .quarantined(messageID: "m:2"))
        XCTAssertEqual(try UnmaskRequest.Target(loggedSubject: "tokens:\(token)", request: 1),
                       .tokens([try XCTUnwrap(Token(parsing: token))]))
        XCTAssertThrowsError(try UnmaskRequest.Target(loggedSubject: "user_hash:" + String(repeating: "0", count: 64), request: 3)) {
            XCTAssertEqual($0 as? DualControlError, .otherTarget(3))
        }
    }

    private func entry(_ seq: Int, _ action: String, subject: String = "user_id:u", outcome: String) -> AccessLogEntry {
        AccessLogEntry(seq: seq, at: "2026-12-01T10:00:0\(seq).000000Z", dbUser: "officer", osUser: "os", clientHost: "h",
                       action: action, reason: "case \(seq)", subject: subject, rowCount: 1, outcome: outcome,
                       prevHash: AccessLogEntry.genesisHash, hash: AccessLogEntry.genesisHash)
    }

    private func report(_ entries: [AccessLogEntry]) -> AuditReport {
        AuditReport(entries: entries, verdict: .intact(entryCount: entries.count, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)),
                    checkpoints: [], since: nil, until: nil, generatedAt: "now", officerLogins: ["officer"])
    }

    func testTheReportFlagsAnAccessWithoutApprovalWhileThePolicyAskedForOne() {
        let entries = [
            entry(1, "unmask", outcome: "ok"),  // policy 0: fine
            entry(2, "policy", subject: "action:unmask", outcome: "ok: approvals 0 -> 1, window 86400s -> 86400s"),
            entry(3, "request", outcome: "pending: unmask needs 1 approval(s) by other compliance officers within 86400s"),
            entry(4, "approve", subject: "request:3", outcome: "ok: approval 1 of 1 for unmask"),
            entry(5, "unmask", outcome: "ok [approved request 3]"),
            entry(6, "unmask", outcome: "ok"),  // flagged
            entry(7, "unmask", outcome: "refused: dual control: request 3 was already executed (entry 5)"),
            entry(8, "forget", subject: "user_hash:00", outcome: "ok: 1 rows deleted"),  // forget's policy is 0
            entry(9, "policy", subject: "action:unmask", outcome: "ok: approvals 1 -> 0, window 86400s -> 86400s"),
            entry(10, "unmask", outcome: "ok"),
        ]
        let report = report(entries)
        XCTAssertEqual(report.executedWithoutApproval.map(\.seq), [6])
        XCTAssertEqual(report.policyChanges.map(\.seq), [2, 9])
        XCTAssertEqual(report.dualControl.map(\.seq), [2, 3, 4, 5, 9])
        let html = report.html
        XCTAssertTrue(html.contains("1 access(es) went through without an approved request"), html)
        XCTAssertTrue(html.contains("<p class=\"bad\" id=\"policy-changes\">2 policy change(s)"), html)

        let byAdmin = AuditReport(
            entries: [AccessLogEntry(seq: 1, at: "2026-12-01T10:00:01.000000Z", dbUser: "policy-admin", osUser: "os",
                                     clientHost: "h", action: "policy", reason: "CAB-1", subject: "action:forget",
                                     rowCount: 0, outcome: "ok: approvals 0 -> 1, window 86400s -> 86400s",
                                     prevHash: AccessLogEntry.genesisHash, hash: AccessLogEntry.genesisHash)],
            verdict: .intact(entryCount: 1, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)),
            checkpoints: [], since: nil, until: nil, generatedAt: "now", officerLogins: ["officer"])
        XCTAssertEqual(byAdmin.refusedOthers.map(\.seq), [], "a policy change is not an attempt at an action")
        XCTAssertEqual(byAdmin.policyChanges.map(\.seq), [1])

        // A period that starts under a policy: the first change's "before" value counts from the start.
        let later = self.report([entry(1, "unmask", outcome: "ok"),
                                 entry(2, "policy", subject: "action:unmask", outcome: "ok: approvals 2 -> 0, window 60s -> 60s")])
        XCTAssertEqual(later.executedWithoutApproval.map(\.seq), [1])
        XCTAssertTrue(self.report([entry(1, "unmask", outcome: "ok")]).html
            .contains("None: no policy change, request or approval in the period."))

        // A period that starts under a policy set before it, with no change inside it: the policy entries before the
        // period count (AuditorService passes them as policiesAtStart).
        let before = [entry(1, "policy", subject: "action:unmask", outcome: "ok: approvals 0 -> 2, window 60s -> 60s"),
                      entry(2, "policy", subject: "action:forget", outcome: "ok: approvals 0 -> 1, window 60s -> 60s"),
                      entry(3, "policy", subject: "action:forget", outcome: "ok: approvals 1 -> 0, window 60s -> 60s")]
        XCTAssertEqual(AuditReport.policies(after: before), ["unmask": 2, "forget": 0])
        let underPolicy = AuditReport(
            entries: [entry(4, "unmask", outcome: "ok"), entry(5, "forget", subject: "user_hash:00", outcome: "ok: 1 rows deleted")],
            verdict: .intact(entryCount: 2, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)),
            checkpoints: [], since: "2026-12-01T10:00:04Z", until: nil, generatedAt: "now", officerLogins: ["officer"],
            policiesAtStart: AuditReport.policies(after: before))
        XCTAssertEqual(underPolicy.executedWithoutApproval.map(\.seq), [4])
        // rewrap and retokenize are held to at least unmask's policy.
        let held = self.report([entry(1, "policy", subject: "action:unmask", outcome: "ok: approvals 0 -> 1, window 60s -> 60s"),
                                entry(2, "rewrap", subject: "vault_key:a->b", outcome: "ok: 1 data keys"),
                                entry(3, "retokenize", subject: "token_versions:v1->v2", outcome: "ok"),
                                entry(4, "lookup", subject: "tokens", outcome: "ok")])
        XCTAssertEqual(held.executedWithoutApproval.map(\.seq), [2, 3])
    }

    /// Who counts as an officer for the review: whoever's entries show they acted as one then, even if their
    /// membership was revoked since; not a login refused as not permitted, nor an access the database marked as made
    /// outside compliance, nor a policy change.
    func testTheReportCountsAsOfficersTheLoginsThatActedAsOfficers() {
        func made(_ seq: Int, by login: String, _ action: String, outcome: String) -> AccessLogEntry {
            AccessLogEntry(seq: seq, at: "2026-12-01T10:00:0\(seq).000000Z", dbUser: login, osUser: "os", clientHost: "h",
                           action: action, reason: "case", subject: "user_id:u", rowCount: 1, outcome: outcome,
                           prevHash: AccessLogEntry.genesisHash, hash: AccessLogEntry.genesisHash)
        }
        let entries = [
            made(1, by: "alice", "unmask", outcome: "ok"),
            made(2, by: "analyst", "unmask", outcome: "refused: not permitted (login is not a member of piivault_compliance)"),
            made(3, by: "root", "unmask", outcome: "ok [outside piivault_compliance: superuser]"),
            made(4, by: "admin", "policy", outcome: "ok: approvals 0 -> 1, window 60s -> 60s"),
            made(5, by: "bob", "approve", outcome: "ok: approval 1 of 1 for unmask"),
            made(6, by: "carol", "unmask", outcome: "refused: dual control: request 9 has 0 of 1 approval(s)"),
        ]
        XCTAssertEqual(AuditReport.actedAsOfficers(entries), ["alice", "bob", "carol"])
        // root's login dropped since: its access is one made outside compliance, not an attempt another login made.
        let report = AuditReport(
            entries: entries, verdict: .intact(entryCount: entries.count, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)),
            checkpoints: [], since: nil, until: nil, generatedAt: "2026-12-02T00:00:00Z",
            officerLogins: AuditReport.actedAsOfficers(entries))
        XCTAssertEqual(report.refusedOthers.map(\.seq), [2])
        XCTAssertEqual(report.outsideCompliance.map(\.seq), [3])
    }
}
