import Foundation

/// A self-contained HTML page for a periodic review of the access log: the chain's verification result and the
/// signed checkpoints it was checked against, accesses per officer and per day as inline SVG bar charts, refusals
/// and unusual outcomes, the largest requests, and the destructive actions (forget, retention, rewrap, retokenize).
/// No script and nothing loaded from elsewhere: it opens the same offline, in a mail attachment or an archive.
public struct AuditReport: Sendable {
    /// The entries in the period, oldest first.
    public var entries: [AccessLogEntry]
    /// What `verify` said of the whole chain.
    public var verdict: AccessLogVerdict
    /// Signed checkpoints the chain was checked against.
    public var checkpoints: [SignedCheckpoint]
    /// The period, as given (`--since`, `--until`), for the title.
    public var since: String?
    public var until: String?
    /// When the report was made (UTC).
    public var generatedAt: String
    /// The logins of the period that may act as compliance officers (members of `piivault_compliance`, or superusers,
    /// when the report was made), and those whose entries show they were one then (`actedAsOfficers`). Everyone
    /// else's entries are refused attempts, listed apart from the officers'.
    public var officerLogins: Set<String>
    /// Each action's approvals when the period began, from the last `policy` entry before it; an action without one
    /// there starts at its first change's "before" value in the period, or 0.
    public var policiesAtStart: [String: Int]

    public init(entries: [AccessLogEntry], verdict: AccessLogVerdict, checkpoints: [SignedCheckpoint],
                since: String?, until: String?, generatedAt: String, officerLogins: Set<String>,
                policiesAtStart: [String: Int] = [:]) {
        self.entries = entries
        self.verdict = verdict
        self.checkpoints = checkpoints
        self.since = since
        self.until = until
        self.generatedAt = generatedAt
        self.officerLogins = officerLogins
        self.policiesAtStart = policiesAtStart
    }

    /// Logins whose entries show them acting as compliance officers when they made them: any entry but a policy
    /// change, a refusal for not being permitted, or an access the database marked as made outside
    /// `piivault_compliance`. So an officer whose membership was revoked since (SECURITY.md asks for it when one
    /// leaves) stays an officer for the period under review, and their accesses are not taken for refused attempts.
    static func actedAsOfficers(_ entries: [AccessLogEntry]) -> Set<String> {
        Set(entries.filter { entry in
            entry.action != "policy" && !entry.outcome.hasPrefix("refused: not permitted")
                && !entry.outcome.contains(AccessLogEntry.outsideComplianceMarker)
        }.map(\.dbUser))
    }

    /// Each action's approvals after the last of `policyEntries` (the `policy` entries before a period, in order).
    static func policies(after policyEntries: [AccessLogEntry]) -> [String: Int] {
        var policy: [String: Int] = [:]
        for entry in policyEntries {
            if let action = policyAction(entry), let (_, new) = policyApprovals(entry) { policy[action] = new }
        }
        return policy
    }

    /// Actions that change or destroy data, listed on their own.
    static let destructiveActions: Set<String> = ["forget", "retention", "rewrap", "retokenize"]

    /// Entries of compliance officers: the accesses under review.
    public var officerEntries: [AccessLogEntry] { entries.filter { officerLogins.contains($0.dbUser) } }

    /// Accesses per officer (database login), most first; attempts by other logins are not accesses.
    public var perOfficer: [(String, Int)] { Self.counted(officerEntries.map(\.dbUser)) }

    /// Accesses per day (`YYYY-MM-DD` of the entry's time), in date order.
    public var perDay: [(String, Int)] {
        Self.counted(officerEntries.map { String($0.at.prefix(10)) }).sorted { $0.0 < $1.0 }
    }

    /// Officers' entries that were refused or failed (`ok: 6 rows deleted` is an ordinary success).
    public var unusual: [AccessLogEntry] { officerEntries.filter { $0.outcomeClass != .ok } }

    /// Attempts by logins outside compliance (an analyst, the ETL, the auditor): refused by the database, each logged.
    /// A policy change by `piivault_policy_admin` (not an officer) is not an attempt: it is listed under dual control.
    /// An access the database let through outside compliance (a superuser's, whose login was dropped since) is not an
    /// attempt either: it is listed among those accesses.
    public var refusedOthers: [AccessLogEntry] {
        entries.filter { !officerLogins.contains($0.dbUser) && $0.action != "policy" && !$0.isOutsideCompliance }
    }

    /// The ten entries with the most rows.
    public var largest: [AccessLogEntry] {
        Array(entries.filter { $0.rowCount > 0 }.sorted { ($0.rowCount, $1.seq) > ($1.rowCount, $0.seq) }.prefix(10))
    }

    /// Entries that changed or destroyed data.
    public var destructive: [AccessLogEntry] { entries.filter { Self.destructiveActions.contains($0.action) } }

    /// Dual control's own entries: policy changes, requests, approvals and denials, and the accesses that executed
    /// an approved request (their outcome ends with `[approved request N]`).
    public var dualControl: [AccessLogEntry] {
        entries.filter { Self.dualControlActions.contains($0.action) || $0.outcome.contains(Self.executedMarker) }
    }

    /// Policy changes (`policy` entries): flagged for review.
    public var policyChanges: [AccessLogEntry] { entries.filter { $0.action == "policy" } }

    /// Accesses that went through while the action's policy asked for approvals, without an approved request: the
    /// database should make this impossible, so each one is flagged. The policy of each action is followed from
    /// `policiesAtStart` through the `policy` entries of the period (`ok: approvals A -> B`; before the first, A).
    public var executedWithoutApproval: [AccessLogEntry] {
        var policy = policiesAtStart
        for entry in policyChanges {
            guard let action = Self.policyAction(entry), policy[action] == nil,
                  let (old, _) = Self.policyApprovals(entry) else { continue }
            policy[action] = old
        }
        var flagged: [AccessLogEntry] = []
        for entry in entries {
            if entry.action == "policy", let action = Self.policyAction(entry), let (_, new) = Self.policyApprovals(entry) {
                policy[action] = new
            } else if Self.approvalsNeeded(entry.action, under: policy) > 0, entry.outcomeClass == .ok,
                      !entry.outcome.contains(Self.executedMarker) {
                flagged.append(entry)
            }
        }
        return flagged
    }

    /// The approvals an access of `action` needs under `policy` (approvals by action): its own, and for rewrap and
    /// retokenize at least unmask's, as the database's `audit.effective_policy` holds them.
    static func approvalsNeeded(_ action: String, under policy: [String: Int]) -> Int {
        let own = policy[action] ?? 0
        return action == "rewrap" || action == "retokenize" ? max(own, policy["unmask"] ?? 0) : own
    }

    static let dualControlActions: Set<String> = ["policy", "request", "approve", "deny"]
    /// What `audit.append_entry` adds to the outcome of an access that executed an approved request.
    static let executedMarker = "[approved request "

    /// `unmask` of a `policy` entry's subject `action:unmask`.
    static func policyAction(_ entry: AccessLogEntry) -> String? {
        entry.subject.hasPrefix("action:") ? String(entry.subject.dropFirst("action:".count)) : nil
    }

    /// The approvals before and after a `policy` entry (`ok: approvals 0 -> 1, window ...`).
    static func policyApprovals(_ entry: AccessLogEntry) -> (Int, Int)? {
        guard entry.outcome.hasPrefix("ok: approvals ") else { return nil }
        let numbers = entry.outcome.dropFirst("ok: approvals ".count).prefix { $0 != "," }
            .components(separatedBy: " -> ").compactMap { Int($0) }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
    }

    /// Accesses the database could not refuse: by a superuser or a login outside piivault_compliance (the owner),
    /// which `audit.append_entry` marks in the outcome (migration 0017). Refusals are never marked.
    public var outsideCompliance: [AccessLogEntry] { entries.filter(\.isOutsideCompliance) }

    /// The page.
    public var html: String {
        var page = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
            <title>piivault access review</title>
            <style>
            body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
            h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}
            table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
            .ok{color:#1a7f37}.bad{color:#b42318;font-weight:bold}.num{text-align:right}
            td.subject,td.reason{overflow-wrap:anywhere;word-break:break-word;max-width:24em}
            svg text{font-size:12px;font-family:system-ui,sans-serif}
            </style></head><body>
            <h1>piivault access review</h1>

            """
        page += "<p>Period: \(Self.escape(since ?? "the beginning")) to \(Self.escape(until ?? "now")). "
            + "Generated \(Self.escape(generatedAt)). "
            + "<span id=\"entry-count\">\(entries.count)</span> entries.</p>\n"

        page += "<h2>Chain verification</h2>\n"
        switch verdict {
        case .intact(let count, let head):
            page += "<p class=\"ok\" id=\"verdict\">Intact: \(count) entries, head \(Self.escape(head.description)).</p>\n"
        case .broken(let damage):
            page += "<p class=\"bad\" id=\"verdict\">Broken: \(Self.escape(damage.message))</p>\n"
        }
        if checkpoints.isEmpty {
            page += "<p>No signed checkpoint was given; the chain was checked only against itself.</p>\n"
        } else {
            page += "<table><tr><th>signed checkpoint</th><th>taken</th><th>database</th></tr>\n"
            for checkpoint in checkpoints {
                page += "<tr><td>\(Self.escape(checkpoint.head.description))</td><td>\(Self.escape(checkpoint.takenAt))</td>"
                    + "<td>\(Self.escape(checkpoint.database))</td></tr>\n"
            }
            page += "</table>\n<p>Each signature verified with the auditor's key, and the log extends each head.</p>\n"
        }

        page += "<h2>Accesses the database could not refuse</h2>\n"
        if outsideCompliance.isEmpty {
            page += "<p id=\"outside-compliance\">None: every access in the period was by a member of piivault_compliance.</p>\n"
        } else {
            page += "<p class=\"bad\">\(outsideCompliance.count) access(es) by a superuser or a login outside "
                + "piivault_compliance (such as the database owner): the database could not refuse them. "
                + "Check each one.</p>\n" + table(outsideCompliance, id: "outside-compliance", empty: "")
        }
        page += "<h2>Dual control: policy changes, requests and approvals</h2>\n"
        let unapproved = executedWithoutApproval
        if !unapproved.isEmpty {
            page += "<p class=\"bad\">\(unapproved.count) access(es) went through without an approved request while "
                + "the action's policy asked for approvals: the database should have refused them. Check each one.</p>\n"
                + table(unapproved, id: "executed-without-approval", empty: "")
        }
        if !policyChanges.isEmpty {
            page += "<p class=\"bad\" id=\"policy-changes\">\(policyChanges.count) policy change(s) in the period: "
                + "check that each was agreed.</p>\n"
        }
        page += table(dualControl, id: "dual-control",
                      empty: "None: no policy change, request or approval in the period.")
        page += "<h2>Accesses per officer</h2>\n" + Self.barChart(perOfficer, id: "per-officer")
        page += "<h2>Accesses per day</h2>\n" + Self.barChart(perDay, id: "per-day")
        page += "<h2>Officers' refusals and failures</h2>\n"
            + table(unusual, id: "unusual", empty: "None: every officer's access in the period succeeded.")
        page += "<h2>Attempts by logins outside compliance</h2>\n"
            + table(refusedOthers, id: "refused-others",
                    empty: "None: no analyst, ETL or auditor login tried a compliance action.")
        page += "<h2>Largest requests</h2>\n" + table(largest, id: "largest", empty: "No access returned rows.")
        page += "<h2>Erasures, retention and key rotation</h2>\n"
            + table(destructive, id: "destructive", empty: "None in the period.")
        page += "</body></html>\n"
        return page
    }

    private func table(_ rows: [AccessLogEntry], id: String, empty: String) -> String {
        guard !rows.isEmpty else { return "<p id=\"\(id)\">\(Self.escape(empty))</p>\n" }
        var out = "<table id=\"\(id)\"><tr><th>seq</th><th>at</th><th>login</th><th>os user</th><th>action</th>"
            + "<th>rows</th><th>outcome</th><th>reason</th><th>subject</th></tr>\n"
        for entry in rows {
            let outcomeClass = entry.outcomeClass == .ok ? "ok" : "bad"
            out += "<tr><td class=\"num\">\(entry.seq)</td><td>\(Self.escape(entry.at))</td><td>\(Self.escape(entry.dbUser))</td>"
                + "<td>\(Self.escape(entry.osUser))</td><td>\(Self.escape(entry.action))</td>"
                + "<td class=\"num\">\(entry.rowCount)</td><td class=\"\(outcomeClass)\">\(Self.escape(entry.outcome))</td>"
                + "<td class=\"reason\">\(Self.escape(entry.reason))</td>"
                + "<td class=\"subject\">\(Self.escape(Self.shortened(entry.subject)))</td></tr>\n"
        }
        return out + "</table>\n"
    }

    /// A horizontal bar chart in inline SVG; each bar carries its count as text and in `data-count`.
    static func barChart(_ data: [(String, Int)], id: String) -> String {
        guard !data.isEmpty else { return "<p id=\"\(id)\">No accesses in the period.</p>\n" }
        let rowHeight = 22, labelWidth = 200, barWidth = 400
        let maximum = max(1, data.map(\.1).max() ?? 1)
        var svg = "<svg id=\"\(id)\" role=\"img\" width=\"\(labelWidth + barWidth + 60)\" height=\"\(data.count * rowHeight + 4)\" xmlns=\"http://www.w3.org/2000/svg\">\n"
        for (index, (label, count)) in data.enumerated() {
            let y = index * rowHeight + 2
            let width = max(2, barWidth * count / maximum)
            svg += "<g class=\"bar\" data-label=\"\(escape(label))\" data-count=\"\(count)\">"
                + "<text x=\"0\" y=\"\(y + 15)\">\(escape(shortened(label, limit: 28)))</text>"
                + "<rect x=\"\(labelWidth)\" y=\"\(y)\" width=\"\(width)\" height=\"\(rowHeight - 6)\" fill=\"#3b6fb6\"/>"
                + "<text x=\"\(labelWidth + width + 6)\" y=\"\(y + 15)\">\(count)</text></g>\n"
        }
        return svg + "</svg>\n"
    }

    static func counted(_ keys: [String]) -> [(String, Int)] {
        var counts: [String: Int] = [:]
        for key in keys { counts[key, default: 0] += 1 }
        return counts.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { ($0.key, $0.value) }
    }

    static func shortened(_ text: String, limit: Int = 120) -> String {
        text.count > limit ? String(text.prefix(limit)) + "…" : text
    }

    /// HTML text and attribute escaping; control and format characters shown as code points.
    static func escape(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                let category = scalar.properties.generalCategory
                if category == .control || category == .format {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}
