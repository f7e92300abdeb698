import Foundation

/// How `audit log` prints entries.
public enum AccessLogFormat: String, Sendable, CaseIterable {
    /// Aligned columns for a terminal; control characters shown escaped so that a logged reason cannot drive the
    /// terminal.
    case table
    /// A JSON array of objects, keys as the database's column names, hashes in hex.
    case json
    /// RFC 4180 CSV with a header row, columns as the database's.
    case csv

    /// The column names, in the table's order.
    static let columns = ["seq", "at", "db_user", "os_user", "client_host", "action", "reason", "subject", "row_count",
                          "outcome", "prev_hash", "hash"]

    /// `entries` rendered in this format, ending with a newline (nothing at all for an empty table).
    public func render(_ entries: [AccessLogEntry]) -> String {
        switch self {
        case .table: return Self.table(entries)
        case .json: return Self.json(entries)
        case .csv: return Self.csv(entries)
        }
    }

    private static func fields(_ entry: AccessLogEntry) -> [String] {
        [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action, entry.reason,
         entry.subject, String(entry.rowCount), entry.outcome, hexString(entry.prevHash), hexString(entry.hash)]
    }

    private static func table(_ entries: [AccessLogEntry]) -> String {
        // The hashes make lines too long to read; `verify` checks them and json/csv carry them.
        let shown = ["seq", "at", "db_user", "os_user", "client_host", "action", "rows", "outcome", "reason", "subject"]
        let rows = entries.map { entry in
            [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action,
             String(entry.rowCount), entry.outcome, entry.reason, entry.subject].map(escapingControlCharacters)
        }
        var widths = shown.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                index == cells.count - 1 ? cell : cell + String(repeating: " ", count: max(0, widths[index] - cell.count))
            }.joined(separator: "  ")
        }
        var out = line(shown) + "\n"
        for row in rows { out += line(row) + "\n" }
        return out
    }

    private static func json(_ entries: [AccessLogEntry]) -> String {
        let objects: [[String: Any]] = entries.map { entry in
            var object: [String: Any] = [:]
            for (name, value) in zip(columns, fields(entry)) {
                object[name] = (name == "seq" || name == "row_count") ? (Int(value) as Any) : value
            }
            return object
        }
        let data = (try? JSONSerialization.data(
            withJSONObject: objects, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data("[]".utf8)
        return String(decoding: data, as: UTF8.self) + "\n"
    }

    private static func csv(_ entries: [AccessLogEntry]) -> String {
        func quoted(_ field: String) -> String {
            guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
            return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        }
        var out = columns.joined(separator: ",") + "\r\n"
        for entry in entries { out += fields(entry).map(quoted).joined(separator: ",") + "\r\n" }
        return out
    }

    private static func escapingControlCharacters(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                out += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
