import Foundation

/// Access-log entries as `audit log` prints them.
public struct AccessLogRows: Renderable, Sendable {
    public let entries: [AccessLogEntry]

    public init(_ entries: [AccessLogEntry]) { self.entries = entries }

    /// The access log's column names, in the CSV's and JSON's order.
    static let columns = ["seq", "at", "db_user", "os_user", "client_host", "action", "reason", "subject",
                          "row_count", "outcome", "prev_hash", "hash"]

    static func fields(_ entry: AccessLogEntry) -> [String] {
        [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action, entry.reason,
         entry.subject, String(entry.rowCount), entry.outcome, hexString(entry.prevHash), hexString(entry.hash)]
    }

    /// The entry as a JSON object, `seq` and `row_count` as numbers.
    static func object(_ entry: AccessLogEntry) -> [String: Any] {
        var object: [String: Any] = [:]
        for (name, value) in zip(columns, fields(entry)) {
            object[name] = (name == "seq" || name == "row_count") ? (Int(value) as Any) : value
        }
        return object
    }

    /// The hashes make lines too long to read; `verify` checks them and json/csv carry them.
    public var tableRows: TextRows {
        TextRows(header: ["seq", "at", "db_user", "os_user", "client_host", "action", "rows", "outcome", "reason",
                          "subject"],
                 rows: entries.map { entry in
                     [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action,
                      String(entry.rowCount), entry.outcome, entry.reason, entry.subject]
                 })
    }

    public var csvRows: TextRows { TextRows(header: Self.columns, rows: entries.map(Self.fields)) }

    public var jsonValue: Any { entries.map(Self.object) }
}

extension OutputFormat {
    /// Access-log `entries` rendered in this format, ending with a newline.
    public func render(_ entries: [AccessLogEntry]) -> String { render(AccessLogRows(entries)) }
}

extension AccessLogEntry {
    /// The entry as one line of JSON (sorted keys, no newline inside), with its hash and the previous one: what a
    /// log shipper (Vector, Fluent Bit, Filebeat) forwards, and enough to recompute the chain.
    public var jsonLine: String {
        let data = (try? JSONSerialization.data(withJSONObject: AccessLogRows.object(self), options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return TextOutput.escapingFormatCharactersInJSON(String(decoding: data, as: UTF8.self))
    }
}
