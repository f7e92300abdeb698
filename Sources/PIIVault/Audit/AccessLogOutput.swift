import Foundation

extension OutputFormat {
    /// The access log's column names, in the table's order.
    static let accessLogColumns = ["seq", "at", "db_user", "os_user", "client_host", "action", "reason", "subject",
                                   "row_count", "outcome", "prev_hash", "hash"]

    /// Access-log `entries` rendered in this format, ending with a newline.
    public func render(_ entries: [AccessLogEntry]) -> String {
        switch self {
        case .table:
            // The hashes make lines too long to read; `verify` checks them and json/csv carry them.
            return TextOutput.table(
                header: ["seq", "at", "db_user", "os_user", "client_host", "action", "rows", "outcome", "reason",
                         "subject"],
                rows: entries.map { entry in
                    [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action,
                     String(entry.rowCount), entry.outcome, entry.reason, entry.subject]
                })
        case .json:
            return TextOutput.json(entries.map { entry -> [String: Any] in
                var object: [String: Any] = [:]
                for (name, value) in zip(Self.accessLogColumns, Self.accessLogFields(entry)) {
                    object[name] = (name == "seq" || name == "row_count") ? (Int(value) as Any) : value
                }
                return object
            })
        case .csv:
            return TextOutput.csv(header: Self.accessLogColumns, rows: entries.map(Self.accessLogFields))
        }
    }

    static func accessLogFields(_ entry: AccessLogEntry) -> [String] {
        [String(entry.seq), entry.at, entry.dbUser, entry.osUser, entry.clientHost, entry.action, entry.reason,
         entry.subject, String(entry.rowCount), entry.outcome, hexString(entry.prevHash), hexString(entry.hash)]
    }
}

extension AccessLogEntry {
    /// The entry as one line of JSON (sorted keys, no newline inside), with its hash and the previous one: what a
    /// log shipper (Vector, Fluent Bit, Filebeat) forwards, and enough to recompute the chain.
    public var jsonLine: String {
        var object: [String: Any] = [:]
        for (name, value) in zip(OutputFormat.accessLogColumns, OutputFormat.accessLogFields(self)) {
            object[name] = (name == "seq" || name == "row_count") ? (Int(value) as Any) : value
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return TextOutput.escapingFormatCharactersInJSON(String(decoding: data, as: UTF8.self))
    }
}
