/// An error from the database or from libpq.
///
/// Its text never contains the values of query parameters: for data exceptions (SQLSTATE class 22), whose server
/// messages quote the offending value, only the condition and the column are kept, and connection errors have any
/// password removed.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Kind: Sendable, Equatable {
        /// The connection could not be made.
        case connectionFailed
        /// The connection broke while in use.
        case connectionLost
        /// The server rejected a statement; see `sqlState`.
        case server
        /// A parameter could not be sent (for example a string holding a NUL byte).
        case invalidParameter
        /// A result did not have the expected shape or type.
        case decoding
        /// The connection was already closed.
        case closed
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// The five-character SQLSTATE code, for server errors.
    public let sqlState: String?
    /// The error's text, safe to print: it holds no parameter values and no password. (Named `text`, not
    /// `message`, so that modules adding their own `message` to this type stay unambiguous.)
    public let text: String
    /// Schema, table, column and constraint names the server reported, if any.
    public let schema: String?
    public let table: String?
    public let column: String?
    public let constraint: String?

    init(
        kind: Kind, sqlState: String? = nil, message: String, schema: String? = nil, table: String? = nil,
        column: String? = nil, constraint: String? = nil
    ) {
        self.kind = kind
        self.sqlState = sqlState
        self.text = message
        self.schema = schema
        self.table = table
        self.column = column
        self.constraint = constraint
    }

    static let closed = PostgresError(kind: .closed, message: "the database connection is closed")

    /// `insufficient_privilege` (42501): the role may not do this.
    public var isPermissionDenied: Bool { sqlState == "42501" }

    /// The server ended the transaction to break a deadlock (40P01) or a serialization conflict (40001): nothing of
    /// it was kept, and running it again may succeed.
    public var isTransientConflict: Bool { sqlState == "40P01" || sqlState == "40001" }

    /// True for errors caused by the data of one row (data exceptions, integrity constraint violations), which a
    /// loader can isolate by splitting its batch; false for errors that would fail any batch.
    public var isRowSpecific: Bool {
        guard let sqlState else { return false }
        return sqlState.hasPrefix("22") || sqlState.hasPrefix("23")
    }

    /// True when the connection is gone, so retrying needs a new connection.
    public var isConnectionError: Bool {
        kind == .connectionFailed || kind == .connectionLost || kind == .closed
            || (sqlState?.hasPrefix("08") ?? false) || sqlState == "57P01" || sqlState == "57P02"
            || sqlState == "57P03"
    }

    public var description: String {
        if let sqlState { return "\(text) (SQLSTATE \(sqlState))" }
        return text
    }
}
