/// The auditor's reads of the access log (`audit log`, `verify`, `checkpoint`), each on a connection of its own that
/// it opens and closes.
public struct AccessLogService: Sendable {
    /// A libpq connection string or URI ("" for libpq's defaults).
    public let databaseURL: String

    public init(databaseURL: String) {
        self.databaseURL = databaseURL
    }

    /// The entries matching `filter`, in sequence order.
    public func entries(matching filter: AccessLogFilter = AccessLogFilter()) async throws -> [AccessLogEntry] {
        try await Database.withConnection(databaseURL) { try await AccessLogReader(connection: $0).entries(matching: filter) }
    }

    /// The whole chain recomputed, checked against `anchor` when given.
    public func verify(anchor: AccessLogAnchor? = nil) async throws -> AccessLogVerdict {
        try await Database.withConnection(databaseURL) { try await AccessLogReader(connection: $0).verify(anchor: anchor) }
    }

    /// The head of a verified chain, to keep elsewhere.
    public func checkpoint() async throws -> AccessLogAnchor {
        try await Database.withConnection(databaseURL) { try await AccessLogReader(connection: $0).checkpoint() }
    }
}
