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
        /// The connection string itself is malformed (libpq cannot parse it): nothing was tried.
        case malformedConnectionString
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

    /// A SQLSTATE code, named as in PostgreSQL's errcodes table (as postgres-nio's `PostgresError.Code`). The only
    /// place SQLSTATE values are spelled out: code elsewhere compares against these names.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The five characters.
        public let raw: String

        public init(raw: String) { self.raw = raw }

        /// The two-character class (`22` for every data exception).
        public var errorClass: String { String(raw.prefix(2)) }

        public var description: String { raw }

        // Classes.
        public static let connectionExceptionClass = "08"
        public static let dataExceptionClass = "22"
        public static let integrityConstraintViolationClass = "23"

        // Codes.
        public static let uniqueViolation = Code(raw: "23505")
        public static let checkViolation = Code(raw: "23514")
        public static let invalidParameterValue = Code(raw: "22023")
        public static let objectNotInPrerequisiteState = Code(raw: "55000")
        public static let invalidTransactionTermination = Code(raw: "2D000")
        public static let invalidSchemaName = Code(raw: "3F000")
        public static let undefinedObject = Code(raw: "42704")
        public static let serializationFailure = Code(raw: "40001")
        public static let deadlockDetected = Code(raw: "40P01")
        public static let insufficientPrivilege = Code(raw: "42501")
        public static let undefinedColumn = Code(raw: "42703")
        public static let undefinedFunction = Code(raw: "42883")
        public static let undefinedTable = Code(raw: "42P01")
        public static let duplicateTable = Code(raw: "42P07")
        public static let lockNotAvailable = Code(raw: "55P03")
        public static let adminShutdown = Code(raw: "57P01")
        public static let crashShutdown = Code(raw: "57P02")
        public static let cannotConnectNow = Code(raw: "57P03")
    }

    /// `sqlState` as a `Code`, for server errors.
    public var code: Code? { sqlState.map(Code.init(raw:)) }

    /// `insufficient_privilege`: the role may not do this.
    public var isPermissionDenied: Bool { code == .insufficientPrivilege }

    /// `lock_not_available`: `lock_timeout` (or `NOWAIT`) gave up waiting for a lock another session holds.
    public var isLockTimeout: Bool { code == .lockNotAvailable }

    /// The server ended the transaction to break a deadlock or a serialization conflict: nothing of it was kept, and
    /// running it again may succeed.
    public var isTransientConflict: Bool { code == .deadlockDetected || code == .serializationFailure }

    /// True for errors caused by the data of one row (data exceptions, integrity constraint violations), which a
    /// loader can isolate by splitting its batch; false for errors that would fail any batch.
    public var isRowSpecific: Bool {
        guard let code else { return false }
        return code.errorClass == Code.dataExceptionClass || code.errorClass == Code.integrityConstraintViolationClass
    }

    /// True when the connection is gone, so retrying needs a new connection.
    public var isConnectionError: Bool {
        kind == .connectionFailed || kind == .connectionLost || kind == .closed
            || code?.errorClass == Code.connectionExceptionClass
            || code == .adminShutdown || code == .crashShutdown || code == .cannotConnectNow
    }

    public var description: String {
        if let sqlState { return "\(text) (SQLSTATE \(sqlState))" }
        return text
    }
}
