import TestSupport
import XCTest

/// The command tree of the real binary.
final class CommandLineTests: XCTestCase {
    func testHelpListsTheSubcommands() throws {
        let result = try runPiivault(["--help"])
        XCTAssertEqual(result.status, 0)
        for subcommand in ["keygen", "migrate", "etl", "unmask", "audit"] {
            XCTAssertTrue(result.stdout.contains(subcommand), "help mentions \(subcommand)")
        }
        XCTAssertTrue(result.stdout.contains("Exit status"), "help documents the exit codes")
    }

    func testVersion() throws {
        let result = try runPiivault(["--version"])
        XCTAssertEqual(result.status, 0)
        XCTAssertTrue(result.stdout.range(of: #"^\d+\.\d+\.\d+\n$"#, options: .regularExpression) != nil, result.stdout)
    }

    func testUnknownSubcommandIsAUsageError() throws {
        let result = try runPiivault(["frobnicate"])
        XCTAssertEqual(result.status, 64)
    }
}
