import Foundation
import Postgres
import TestSupport
import XCTest

/// The libpq wrapper against the real local PostgreSQL server.
final class PostgresConnectionTests: XCTestCase {
    var database: ScratchDatabase!
    var connection: PostgresConnection!

    override func setUp() async throws {
        database = try await ScratchDatabase.create(prefix: "pg")
        connection = try await database.connect()
    }

    override func tearDown() async throws {
        await connection?.close()
        await database?.drop()
    }

    func testHostileStringsAreBoundNotPasted() async throws {
        let hostile = [
            "O'Brien", "'; DROP TABLE t; --", "back\\slash\\\\", "\"double\"", "tab\tnew\nline\r",
            "unicode: Zoë 東京 🚀 \u{202E}", "$1 $2 ?", "E'\\x41'", String(repeating: "x", count: 100_000),
        ]
        try await connection.execute("CREATE TABLE t (v text)")
        for value in hostile {
            let rows = try await connection.query("SELECT \(value)::text AS v, length(\(value)) AS n")
            XCTAssertEqual(try rows.first?["v"].string(), value)
            XCTAssertEqual(try rows.first?["n"].int(), value.count)
            try await connection.execute("INSERT INTO t (v) VALUES (\(value))")
        }
        let count = try await connection.query("SELECT count(*) AS n FROM t")
        XCTAssertEqual(try count.first?["n"].int(), hostile.count, "the table survived every hostile value")
    }

    func testArrayLiteralsArriveElementByElement() async throws {
        let texts = ["plain", "with,comma", "\"quoted\"", "back\\slash", "{braces}", "", "NULL", "O'Brien"]
        let bytes: [[UInt8]] = [[], [0, 1, 0xfe, 0xff], Array("\\x\"".utf8)]
        let rows = try await connection.query("""
            SELECT array_length(\(PostgresArray.texts(texts))::text[], 1) AS n_texts,
                   array_length(\(PostgresArray.bigints([1, -2, 9_007_199_254_740_993]))::bigint[], 1) AS n_ints,
                   (\(PostgresArray.bigints([1, -2, 9_007_199_254_740_993]))::bigint[])[3] AS third,
                   array_length(\(PostgresArray.bytes(bytes))::bytea[], 1) AS n_bytes
            """)
        XCTAssertEqual(try rows.first?["n_texts"].int(), texts.count)
        XCTAssertEqual(try rows.first?["n_ints"].int(), 3)
        XCTAssertEqual(try rows.first?["third"].int(), 9_007_199_254_740_993)
        XCTAssertEqual(try rows.first?["n_bytes"].int(), bytes.count)
        for (index, text) in texts.enumerated() {
            let element = try await connection.query(
                "SELECT (\(PostgresArray.texts(texts))::text[])[\(index + 1)] AS v")
            XCTAssertEqual(try element.first?["v"].string(), text)
        }
        for (index, value) in bytes.enumerated() {
            let element = try await connection.query(
                "SELECT (\(PostgresArray.bytes(bytes))::bytea[])[\(index + 1)] AS v")
            XCTAssertEqual(try element.first?["v"].bytes(), value)
        }
        let listed = ["ip.v1.ab", "NULL", "zoë", "\"quoted\"", "{braces}", "back\\slash"]
        let split = try await connection.query(
            "SELECT e FROM unnest(string_to_array(\(PostgresArray.commaSeparated(listed)), ',')) AS e")
        XCTAssertEqual(try split.map { try $0["e"].string() ?? "(null)" }, listed, "each element arrives as it was, in order")
    }

    func testNULByteIsRejectedClearlyWithoutEchoingTheValue() async throws {
        do {
            try await connection.query("SELECT \("secret\u{0}value")::text")
            XCTFail("a NUL byte must be refused")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .invalidParameter)
            XCTAssertTrue(error.description.contains("NUL"), error.description)
            XCTAssertTrue(error.description.contains("$1"), error.description)
            XCTAssertFalse(error.description.contains("secret"), error.description)
        }
        // The connection is still usable.
        let rows = try await connection.query("SELECT 1 AS one")
        XCTAssertEqual(try rows.first?["one"].int(), 1)
    }

    func testNULLsAndTypes() async throws {
        let missing: String? = nil
        let rows = try await connection.query("""
            SELECT \(missing)::text AS a, \(Optional(42))::int AS b, \(true)::bool AS c, \(Int64.max)::bigint AS d,
                   NULL::bytea AS e
            """)
        let row = try XCTUnwrap(rows.first)
        XCTAssertTrue(row["a"].isNull)
        XCTAssertNil(try row["a"].string())
        XCTAssertEqual(try row["b"].int(), 42)
        XCTAssertEqual(try row["c"].bool(), true)
        XCTAssertEqual(try row["d"].int(), Int(Int64.max))
        XCTAssertNil(try row["e"].bytes())
        XCTAssertThrowsError(try row["a"].requiredString())
        XCTAssertThrowsError(try row["nonexistent"].string())
    }

    func testByteaRoundTrip() async throws {
        let everyByte = (0...255).map { UInt8($0) }
        for value in [everyByte, [], [0], Array(repeating: 0xff, count: 70_000)] {
            let rows = try await connection.query("SELECT \(value)::bytea AS b, octet_length(\(value)) AS n")
            XCTAssertEqual(try rows.first?["b"].bytes(), value)
            XCTAssertEqual(try rows.first?["n"].int(), value.count)
        }
    }

    func testCopyOf100kRows() async throws {
        try await connection.execute("CREATE TABLE copied (id integer, name text, note text, data bytea)")
        var writer = CopyTextWriter()
        let awkward = "tab\there\nnewline\\backslash\rcr ünïcode"
        for id in 0..<100_000 {
            writer.append(id)
            writer.append("name-\(id)")
            writer.append(id % 10 == 0 ? nil : (id % 7 == 0 ? awkward : "n"))
            writer.append(bytes: id % 3 == 0 ? [UInt8(id & 0xff), 0, 0x5c, 0x09] : nil)
            writer.endRow()
        }
        let copied = try await connection.copyFromStdin(
            "COPY copied (id, name, note, data) FROM STDIN", data: writer.bytes)
        XCTAssertEqual(copied, 100_000)
        let summary = try await connection.query("""
            SELECT count(*) AS n, sum(id) AS s, count(note) AS notes, count(data) AS datas,
                   count(*) FILTER (WHERE note = \(awkward)) AS awkward
              FROM copied
            """)
        let row = try XCTUnwrap(summary.first)
        XCTAssertEqual(try row["n"].int(), 100_000)
        XCTAssertEqual(try row["s"].int(), (0..<100_000).reduce(0, +))
        XCTAssertEqual(try row["notes"].int(), 90_000)
        XCTAssertEqual(try row["datas"].int(), 33_334)
        XCTAssertEqual(try row["awkward"].int(), (0..<100_000).filter { $0 % 10 != 0 && $0 % 7 == 0 }.count)
        let bytes = try await connection.query("SELECT data FROM copied WHERE id = 300")
        XCTAssertEqual(try bytes.first?["data"].bytes(), [UInt8(300 & 0xff), 0, 0x5c, 0x09])
    }

    func testCopyWithBadDataFailsAndConnectionRecovers() async throws {
        try await connection.execute("CREATE TABLE c (id integer)")
        var writer = CopyTextWriter()
        writer.append("not-a-number")
        writer.endRow()
        do {
            try await connection.copyFromStdin("COPY c (id) FROM STDIN", data: writer.bytes)
            XCTFail("COPY of a non-integer must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "22P02")
            XCTAssertTrue(error.isRowSpecific)
            XCTAssertFalse(error.description.contains("not-a-number"), "data errors withhold the value: \(error)")
        }
        let rows = try await connection.query("SELECT count(*) AS n FROM c")
        XCTAssertEqual(try rows.first?["n"].int(), 0)
    }

    func testFailedStatementRollsTheTransactionBack() async throws {
        try await connection.execute("CREATE TABLE accounts (id integer PRIMARY KEY)")
        do {
            try await connection.transaction { connection in
                try await connection.execute("INSERT INTO accounts VALUES (1)")
                try await connection.execute("INSERT INTO accounts VALUES (1)")  // duplicate key
            }
            XCTFail("the duplicate must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "23505")
            XCTAssertEqual(error.constraint, "accounts_pkey")
        }
        struct Abort: Error {}
        do {
            try await connection.transaction { connection in
                try await connection.execute("INSERT INTO accounts VALUES (2)")
                throw Abort()
            }
        } catch is Abort {}
        let rows = try await connection.query("SELECT count(*) AS n FROM accounts")
        XCTAssertEqual(try rows.first?["n"].int(), 0, "both transactions were rolled back")
        let committed = try await connection.transaction { connection in
            try await connection.execute("INSERT INTO accounts VALUES (3)")
        }
        XCTAssertEqual(committed, 1)
        let after = try await connection.query("SELECT count(*) AS n FROM accounts")
        XCTAssertEqual(try after.first?["n"].int(), 1)
    }

    /// A body that catches a failed statement and goes on returns normally, but the server answers its COMMIT with
    /// ROLLBACK (and no error): the transaction reports that rather than passing for committed. And a COPY started
    /// any way but copyFromStdin is refused instead of leaving the connection in the middle of it.
    func testACommitThatRolledBackAndACopyOutsideCopyFromStdinAreErrors() async throws {
        try await connection.execute("CREATE TABLE accounts (id integer PRIMARY KEY)")
        do {
            try await connection.transaction { connection in
                try await connection.execute("INSERT INTO accounts VALUES (1)")
                _ = try? await connection.execute("INSERT INTO accounts VALUES (1)")  // fails; the body goes on
            }
            XCTFail("a rolled-back transaction passed for committed")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "25P02", "\(error)")
        }
        let rows = try await connection.query("SELECT count(*) AS n FROM accounts")
        XCTAssertEqual(try rows.first?["n"].int(), 0)
        do {
            _ = try await connection.queryScript("COPY accounts (id) FROM STDIN")
            XCTFail("a COPY went through queryScript")
        } catch let error as PostgresError {
            XCTAssertTrue(error.text.contains("copyFromStdin"), error.text)
        }
        do {
            _ = try await connection.copyFromStdin("COPY accounts (id) FROM STDIN -- \(1)", data: [])
            XCTFail("a COPY with a bound value was sent")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .invalidParameter)
        }
    }

    func testDataErrorsWithholdTheValue() async throws {
        do {
            try await connection.query("SELECT \("198.51.100.7-secret")::integer")
            XCTFail("must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.sqlState, "22P02")
            XCTAssertFalse(error.description.contains("198.51.100.7"), error.description)
        }
    }

    func testBadConnectionStringsGiveClearErrorsWithoutThePassword() async throws {
        let serverURL = try TestServices.databaseURL()
        var wrongPassword = URLComponents(string: serverURL)!
        wrongPassword.password = "hunter2-wrong-password"
        let cases = [
            wrongPassword.string!,
            "postgresql://postgres:hunter2-wrong-password@127.0.0.1:notaport/db",
            "host=127.0.0.1 port=bad password=hunter2-wrong-password",
            "host=127.0.0.1 port=1 password='hunter2-wrong-password' connect_timeout=2",
            "postgresql://postgres:hunter2-wrong-password@127.0.0.1:1/db?connect_timeout=2",
            "this is not a connection string password=hunter2-wrong-password",
        ]
        for connectionString in cases {
            do {
                let connection = try await PostgresConnection.connect(connectionString)
                await connection.close()
                XCTFail("connecting must fail")
            } catch let error as PostgresError {
                // A string libpq cannot parse is said apart from a server it cannot reach.
                if error.kind == .malformedConnectionString {
                    XCTAssertTrue(error.description.hasPrefix("the database connection string is malformed"), error.description)
                } else {
                    XCTAssertEqual(error.kind, .connectionFailed)
                    XCTAssertTrue(error.description.hasPrefix("cannot connect to the database"), error.description)
                }
                XCTAssertFalse(error.description.contains("hunter2"), "password leaked: \(error.description)")
            }
        }
    }

    func testBlockingCallsDoNotOccupyTheCooperativePool() async throws {
        // Eight half-second sleeps at once: on the two-thread cooperative pool they would take two seconds or more.
        let url = database.url
        let start = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    let connection = try await PostgresConnection.connect(url)
                    try await connection.execute("SELECT pg_sleep(0.5)")
                    await connection.close()
                }
            }
            try await group.waitForAll()
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 1.8)
    }

    func testClosedConnectionFailsClearly() async throws {
        let connection = try await database.connect()
        await connection.close()
        do {
            try await connection.query("SELECT 1")
            XCTFail("must fail")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .closed)
        }
    }
}
