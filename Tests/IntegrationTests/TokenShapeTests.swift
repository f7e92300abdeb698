import Postgres
import TestSupport
import XCTest
import PIIVault

/// Issue 10, acceptance 4: the Swift `Token` parser and the database's token check (`audit.is_token`, which
/// `vault.request_unmask_tokens` applies before a token reaches the log) accept and refuse the same strings.
final class TokenShapeTests: XCTestCase {
    func testTheSwiftParserAndTheSQLCheckAgreeOnEverySample() async throws {
        let database = try await ScratchDatabase.migrated(prefix: "token")
        let owner = try await database.connect()
        var disagreements: [String] = []
        for (text, expected) in TokenSamples.all {
            let rows = try await owner.query("SELECT audit.is_token(\(text)) AS ok")
            let sql = try rows.first?["ok"].bool() ?? false
            let swift = Token(parsing: text) != nil
            XCTAssertEqual(swift, expected, "Swift: \(text.debugDescription)")
            if sql != swift { disagreements.append("\(text.debugDescription): SQL \(sql), Swift \(swift)") }
        }
        await owner.close()
        await database.drop()
        XCTAssertEqual(disagreements, [])
    }
}
