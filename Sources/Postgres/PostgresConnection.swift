import CLibPQ
import Foundation

/// One libpq connection. Every libpq call runs on the connection's own thread, never on Swift's cooperative pool.
///
/// A connection runs one statement at a time; use it from one task at a time (a transaction in progress belongs to
/// the task that opened it). Close it with `close()`; it is also closed when released.
public final class PostgresConnection: @unchecked Sendable {
    // Touched only on `executor`'s thread.
    private var handle: OpaquePointer?
    private let executor: BlockingExecutor

    private init(handle: OpaquePointer, executor: BlockingExecutor) {
        self.handle = handle
        self.executor = executor
    }

    deinit {
        if let handle { PQfinish(handle) }
        executor.shutdown()
    }

    /// Connects with a libpq connection string (`host=... dbname=...`) or URI (`postgresql://...`).
    /// An empty string uses libpq's defaults: the `PG*` environment variables, `~/.pgpass`, service files.
    /// The session is then set to the formats results are decoded in (`sessionSettings`), overriding any role
    /// default or `PGOPTIONS`.
    public static func connect(_ connectionString: String = "", applicationName: String = "piivault")
        async throws -> PostgresConnection
    {
        PostgresConnection.keepOpenSSLAtExit()
        let executor = try BlockingExecutor()
        do {
            let handle = try await executor.run { () throws -> SendablePointer in
                SendablePointer(try openConnection(connectionString, applicationName: applicationName))
            }
            return PostgresConnection(handle: handle.pointer, executor: executor)
        } catch {
            executor.shutdown()
            throw error
        }
    }

    /// Closes the connection. Later calls fail with `PostgresError.Kind.closed`.
    public func close() async {
        _ = try? await executor.run { [self] in
            if let handle { PQfinish(handle) }
            handle = nil
        }
        executor.shutdown()
    }

    /// Tells OpenSSL (libpq's TLS and SCRAM) not to tear itself down at `exit`. Its exit-time clean-up frees the
    /// list of threads that used it while such a thread may still be ending and running OpenSSL's thread-exit
    /// handler on that list: a process crashed now and then after its work was done (SIGSEGV in libcrypto's
    /// thread-exit code, or "double free or corruption"). The memory goes with the process anyway.
    ///
    /// It only works before anything else in the process starts OpenSSL (any EVP call does), so the executable
    /// calls it first thing; `connect` calls it too. Idempotent.
    public static func keepOpenSSLAtExit() { _ = openSSLWithoutExitCleanup }

    private static let openSSLWithoutExitCleanup: Void = {
        _ = OPENSSL_init_crypto(UInt64(OPENSSL_INIT_NO_ATEXIT), nil)
    }()

    /// Runs one statement and returns its rows.
    @discardableResult
    public func query(_ query: PostgresQuery) async throws -> PostgresRows {
        try await executor.run { [self] in try runQuery(query) }
    }

    /// Runs one statement and returns the number of rows it affected.
    @discardableResult
    public func execute(_ query: PostgresQuery) async throws -> Int {
        try await self.query(query).affectedRows
    }

    /// Runs SQL text that may hold several statements and no parameters (migration files). Never pass it input.
    public func executeScript(_ sql: String) async throws {
        _ = try await queryScript(sql)
    }

    /// Runs SQL text that may hold several statements and no parameters, in one round trip, and returns the last
    /// statement's rows (`BEGIN; SELECT ...`: one round trip where two calls would take two). Never pass it input.
    public func queryScript(_ sql: String) async throws -> PostgresRows {
        try await executor.run { [self] in
            let handle = try liveHandle()
            guard !sql.utf8.contains(0) else {
                throw PostgresError(kind: .invalidParameter, message: "SQL text contains a NUL byte")
            }
            let result = PQexec(handle, sql)
            defer { PQclear(result) }
            try check(result, handle: handle)
            return readRows(result!)
        }
    }

    /// Runs `body` in a transaction: committed when it returns, rolled back when it throws.
    public func transaction<T: Sendable>(_ body: (PostgresConnection) async throws -> T) async throws -> T {
        try await transactionBegunWith(nil) { connection, _ in try await body(connection) }
    }

    /// Runs `body` in a transaction begun in the same round trip as `firstStatement` (SQL text, no parameters, never
    /// input; nil for none), whose rows `body` gets: committed when it returns, rolled back when it throws.
    /// `isolation` is the transaction's isolation level (`READ COMMITTED`, ...), or nil for the session's default.
    public func transactionBegunWith<T: Sendable>(
        _ firstStatement: String?, isolation: String? = nil, _ body: (PostgresConnection, PostgresRows) async throws -> T
    ) async throws -> T {
        let value: T
        do {
            let begin = isolation.map { "BEGIN ISOLATION LEVEL \($0)" } ?? "BEGIN"
            let rows = try await queryScript(firstStatement.map { begin + "; " + $0 } ?? begin)
            value = try await body(self, rows)
        } catch {
            _ = try? await execute("ROLLBACK")
            throw error
        }
        try await commit()
        return value
    }

    /// COMMIT, checked: a transaction in which a statement failed (and the body went on) answers COMMIT with the tag
    /// ROLLBACK and no error, which would otherwise pass for a commit.
    private func commit() async throws {
        try await executor.run { [self] in
            let handle = try liveHandle()
            let result = PQexec(handle, "COMMIT")
            defer { PQclear(result) }
            try check(result, handle: handle)
            let tag = String(cString: PQcmdStatus(result))
            guard tag == "COMMIT" else {
                throw PostgresError(kind: .server, sqlState: "25P02",
                                    message: "the transaction was rolled back, not committed: a statement in it had failed")
            }
        }
    }

    /// Sends `data` to a `COPY ... FROM STDIN` statement and returns the number of rows copied.
    /// `data` is in the statement's format; `CopyTextWriter` produces the default text format.
    @discardableResult
    public func copyFromStdin(_ statement: PostgresQuery, data: [UInt8]) async throws -> Int {
        // Sent as SQL text (libpq's COPY runs through PQexec): a bound value would never reach the server.
        guard statement.binds.isEmpty, !statement.sql.utf8.contains(0) else {
            throw PostgresError(kind: .invalidParameter, message: "a COPY statement takes no parameters")
        }
        return try await executor.run { [self] in
            let handle = try liveHandle()
            let start = PQexec(handle, statement.sql)
            let startStatus = PQresultStatus(start)
            if startStatus != PGRES_COPY_IN {
                defer { PQclear(start) }
                try check(start, handle: handle)
                throw PostgresError(kind: .decoding, message: "the statement is not a COPY ... FROM STDIN")
            }
            PQclear(start)
            let chunkSize = 1 << 20
            var offset = 0
            var sendFailed = false
            try data.withUnsafeBufferPointer { buffer in
                while offset < buffer.count {
                    let length = min(chunkSize, buffer.count - offset)
                    let sent = buffer.baseAddress!.advanced(by: offset).withMemoryRebound(to: CChar.self, capacity: length) {
                        PQputCopyData(handle, $0, Int32(length))
                    }
                    if sent != 1 { sendFailed = true; break }
                    offset += length
                }
                if sendFailed { _ = PQputCopyEnd(handle, "piivault: sending COPY data failed") }
                else if PQputCopyEnd(handle, nil) != 1 { throw connectionError(handle) }
            }
            var copied = 0
            var firstError: (any Error)?
            while let result = PQgetResult(handle) {
                do {
                    try check(result, handle: handle)
                    copied = Int(String(cString: PQcmdTuples(result))) ?? copied
                } catch {
                    if firstError == nil { firstError = error }
                }
                PQclear(result)
            }
            if let firstError { throw firstError }
            if sendFailed { throw connectionError(handle) }
            return copied
        }
    }

    /// The server's version number (for example 150018).
    public func serverVersion() async throws -> Int {
        try await executor.run { [self] in Int(PQserverVersion(try liveHandle())) }
    }

    // MARK: - On the executor's thread

    private func liveHandle() throws -> OpaquePointer {
        guard let handle else { throw PostgresError.closed }
        return handle
    }

    private func runQuery(_ query: PostgresQuery) throws -> PostgresRows {
        let handle = try liveHandle()
        let count = query.binds.count
        var types = [Oid](repeating: 0, count: count)
        var lengths = [Int32](repeating: 0, count: count)
        var formats = [Int32](repeating: 0, count: count)
        // Keep every parameter's bytes alive until PQexecParams returns.
        var storage = [ContiguousArray<CChar>?](repeating: nil, count: count)
        for (index, bind) in query.binds.enumerated() {
            switch bind {
            case .null:
                storage[index] = nil
            case .text(let text):
                // One copy, and a NUL looked for with strlen: the ETL binds array literals of a few hundred KB.
                let cString = text.utf8CString
                guard cString.withUnsafeBufferPointer({ strlen($0.baseAddress!) == $0.count - 1 }) else {
                    throw PostgresError(
                        kind: .invalidParameter,
                        message: "parameter $\(index + 1) contains a NUL byte, which PostgreSQL text cannot store")
                }
                storage[index] = cString
            case .bytes(let bytes):
                types[index] = 17  // bytea
                formats[index] = 1
                lengths[index] = Int32(bytes.count)
                storage[index] = bytes.isEmpty ? [0] : ContiguousArray(bytes.lazy.map { CChar(bitPattern: $0) })
            }
        }
        let result: OpaquePointer? = withParameterPointers(storage) { pointers in
            PQexecParams(handle, query.sql, Int32(count), types, pointers, lengths, formats, 0)
        }
        defer { PQclear(result) }
        try check(result, handle: handle)
        return readRows(result!)
    }

    private func withParameterPointers<R>(
        _ storage: [ContiguousArray<CChar>?], _ body: ([UnsafePointer<CChar>?]) -> R
    ) -> R {
        var pointers: [UnsafePointer<CChar>?] = []
        pointers.reserveCapacity(storage.count)
        func recurse(_ index: Int) -> R {
            if index == storage.count { return body(pointers) }
            guard let bytes = storage[index] else {
                pointers.append(nil)
                return recurse(index + 1)
            }
            return bytes.withUnsafeBufferPointer { buffer in
                pointers.append(buffer.baseAddress)
                return recurse(index + 1)
            }
        }
        return recurse(0)
    }

    private func readRows(_ result: OpaquePointer) -> PostgresRows {
        let rowCount = Int(PQntuples(result))
        let columnCount = Int(PQnfields(result))
        var columns: [String] = []
        columns.reserveCapacity(columnCount)
        for column in 0..<columnCount { columns.append(String(cString: PQfname(result, Int32(column)))) }
        var values: [[[UInt8]?]] = []
        values.reserveCapacity(rowCount)
        for row in 0..<rowCount {
            var rowValues: [[UInt8]?] = []
            rowValues.reserveCapacity(columnCount)
            for column in 0..<columnCount {
                if PQgetisnull(result, Int32(row), Int32(column)) == 1 {
                    rowValues.append(nil)
                } else {
                    let length = Int(PQgetlength(result, Int32(row), Int32(column)))
                    let pointer = PQgetvalue(result, Int32(row), Int32(column))!
                    rowValues.append(pointer.withMemoryRebound(to: UInt8.self, capacity: length) {
                        Array(UnsafeBufferPointer(start: $0, count: length))
                    })
                }
            }
            values.append(rowValues)
        }
        let tuples = String(cString: PQcmdTuples(result))
        return PostgresRows(columns: columns, values: values, affectedRows: Int(tuples) ?? rowCount)
    }

    private func check(_ result: OpaquePointer?, handle: OpaquePointer) throws {
        guard let result else { throw connectionError(handle) }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return
        case PGRES_COPY_IN, PGRES_COPY_OUT:
            // Only copyFromStdin may start a COPY (it checks the start itself): elsewhere the connection would be
            // left in the middle of one, and libpq would drop it quietly at the next statement.
            throw PostgresError(kind: .decoding, message: "a COPY statement must be sent with copyFromStdin")
        default:
            throw serverError(result, handle: handle)
        }
    }
}

/// Wraps a libpq handle to move it between threads; only the executor's thread uses it.
private struct SendablePointer: @unchecked Sendable {
    let pointer: OpaquePointer
    init(_ pointer: OpaquePointer) { self.pointer = pointer }
}

private func openConnection(_ connectionString: String, applicationName: String) throws -> OpaquePointer {
    guard !connectionString.utf8.contains(0) else {
        throw PostgresError(kind: .connectionFailed, message: "the connection string contains a NUL byte")
    }
    // A string libpq cannot parse is the user's to fix, not a server that is down: said apart, before any attempt.
    // Only a string libpq reads as a connection string (a URI, or key=value pairs); anything else is a database name.
    var givenKeywords: Set<String> = []
    let isConnectionString = connectionString.contains("=")
        || connectionString.hasPrefix("postgresql://") || connectionString.hasPrefix("postgres://")
    if isConnectionString {
        var parseError: UnsafeMutablePointer<CChar>?
        if let options = PQconninfoParse(connectionString, &parseError) {
            var option = options
            while let keyword = option.pointee.keyword {
                if option.pointee.val != nil { givenKeywords.insert(String(cString: keyword)) }
                option += 1
            }
            PQconninfoFree(options)
        } else {
            let raw = parseError.map { String(cString: $0) } ?? "cannot be parsed"
            if let parseError { PQfreemem(parseError) }
            let message = redactingSecrets(in: raw, connectionString: connectionString)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            throw PostgresError(kind: .malformedConnectionString,
                                message: "the database connection string is malformed: \(message)")
        }
    }
    // Keywords/values form lets us add fallback_application_name without editing the caller's string. A connection
    // attempt gives up after `defaultConnectTimeout` seconds (libpq waits forever on a server that accepts and never
    // answers): before dbname, so that a connect_timeout in the caller's string wins; and not at all when the timeout
    // may come from elsewhere, which an explicit value would override (PGCONNECT_TIMEOUT, a service file).
    var keywords = ["dbname", "fallback_application_name", "client_encoding"]
    var values = [connectionString, applicationName, "UTF8"]
    let environment = ProcessInfo.processInfo.environment
    if (environment["PGCONNECT_TIMEOUT"] ?? "").isEmpty, (environment["PGSERVICE"] ?? "").isEmpty,
       givenKeywords.isDisjoint(with: ["connect_timeout", "service"]) {
        keywords.insert("connect_timeout", at: 0)
        values.insert(String(PostgresConnection.defaultConnectTimeout), at: 0)
    }
    let handle: OpaquePointer? = withCStrings(keywords) { keywordPointers in
        withCStrings(values) { valuePointers in
            PQconnectdbParams(keywordPointers, valuePointers, 1)
        }
    }
    guard let handle else {
        throw PostgresError(kind: .connectionFailed, message: "could not allocate a database connection")
    }
    guard PQstatus(handle) == CONNECTION_OK else {
        let raw = String(cString: PQerrorMessage(handle))
        PQfinish(handle)
        let message = redactingSecrets(in: raw, connectionString: connectionString)
        throw PostgresError(kind: .connectionFailed, message: "cannot connect to the database: \(message)")
    }
    PQsetNoticeProcessor(handle, { _, _ in }, nil)  // NOTICEs ("already exists, skipping") are not for users
    // The formats results are read and printed in, whatever the server, a role default or PGOPTIONS chose: bytea as
    // hex, dates and times as ISO 8601 in UTC, intervals and strings in PostgreSQL's defaults, text in UTF-8,
    // floats exactly.
    let result = PQexec(handle, PostgresConnection.sessionSettings)
    defer { PQclear(result) }
    guard PQresultStatus(result) == PGRES_COMMAND_OK else {
        let raw = String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
        PQfinish(handle)
        throw PostgresError(kind: .connectionFailed, message: "cannot set up the database session: \(raw)")
    }
    return handle
}

extension PostgresConnection {
    /// Seconds a connection attempt may take, unless the connection string or PGCONNECT_TIMEOUT says otherwise.
    public static let defaultConnectTimeout = 10

    /// The session settings every connection starts with (see `connect`).
    public static let sessionSettings = """
        SET bytea_output = 'hex'; SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET IntervalStyle = 'postgres'; \
        SET client_encoding = 'UTF8'; SET extra_float_digits = 3; SET standard_conforming_strings = on
        """
}

private func withCStrings<R>(_ strings: [String], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    return body(copies.map { UnsafePointer($0) } + [nil])
}

/// Removes any password of `connectionString` from a libpq message, which can quote parts of a bad string.
func redactingSecrets(in message: String, connectionString: String) -> String {
    var secrets: [String] = []
    // key=value form and URI query form: password=...
    for pattern in [#"password\s*=\s*'((?:[^'\\]|\\.)*)'"#, #"password\s*=\s*([^\s&']+)"#, #"://[^:/@\s]*:([^@\s]*)@"#] {
        if let regex = try? NSRegularExpression(pattern: pattern, options: [.caseInsensitive]) {
            let range = NSRange(connectionString.startIndex..., in: connectionString)
            for match in regex.matches(in: connectionString, range: range) where match.numberOfRanges > 1 {
                if let r = Range(match.range(at: 1), in: connectionString), !connectionString[r].isEmpty {
                    secrets.append(String(connectionString[r]))
                    secrets.append(String(connectionString[r]).removingPercentEncoding ?? "")
                }
            }
        }
    }
    var text = message.trimmingCharacters(in: .whitespacesAndNewlines)
    for secret in secrets where !secret.isEmpty {
        text = text.replacingOccurrences(of: secret, with: "***")
    }
    return text.replacingOccurrences(of: "\n", with: "; ")
}

private func connectionError(_ handle: OpaquePointer) -> PostgresError {
    let raw = String(cString: PQerrorMessage(handle)).trimmingCharacters(in: .whitespacesAndNewlines)
    let lost = PQstatus(handle) != CONNECTION_OK
    return PostgresError(
        kind: lost ? .connectionLost : .server,
        message: lost ? "the database connection was lost: \(firstLine(raw))" : firstLine(raw))
}

private func firstLine(_ text: String) -> String {
    String(text.split(separator: "\n", omittingEmptySubsequences: true).first ?? "unknown libpq error")
}

private func serverError(_ result: OpaquePointer, handle: OpaquePointer) -> PostgresError {
    func field(_ code: Character) -> String? {
        guard let pointer = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
        return String(cString: pointer)
    }
    guard let sqlState = field("C") else { return connectionError(handle) }
    let column = field("c")
    var message = field("M") ?? "database error"
    if sqlState.hasPrefix(PostgresError.Code.dataExceptionClass) {
        // Data exceptions quote the offending value ("invalid input syntax for type integer: \"...\"").
        message = "invalid data" + (column.map { " in column \"\($0)\"" } ?? "") + " (value withheld)"
    }
    return PostgresError(
        kind: .server, sqlState: sqlState, message: message, schema: field("s"), table: field("t"),
        column: column, constraint: field("n"))
}
