import Foundation
import PIIVault
import TestSupport
import XCTest

/// Reading the migrations folder: versioned files and the definitions folder (no database needed).
final class MigrationFilesTests: XCTestCase {
    func testReadsTheRepositorysMigrationsAndDefinitions() throws {
        let directory = TestServices.repositoryRoot.appendingPathComponent("migrations")
        let migrations = try MigrationFiles.load(from: directory)
        XCTAssertEqual(migrations.first?.fileName, "0001_roles.sql")
        XCTAssertTrue(migrations.contains { $0.fileName == "0018_actions_as_data.sql" })
        let definitions = try MigrationFiles.loadDefinitions(from: directory)
        XCTAssertEqual(definitions.first?.displayName, "definitions/05_locks.sql")
        XCTAssertTrue(definitions.contains { $0.displayName == "definitions/10_audit.sql" })
        XCTAssertEqual(definitions.map(\.fileName), definitions.map(\.fileName).sorted())
        XCTAssertEqual(definitions.first?.checksum.count, 64)
    }

    func testDefinitionsApplyInByteOrderOfTheirNames() throws {
        let directory = try makeTemporaryDirectory(self)
        let folder = directory.appendingPathComponent("definitions")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        for name in ["10_b.sql", "09_z.sql", "10_B.sql", "10_a.sql"] {
            try "SELECT 1;\n".write(to: folder.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try "not SQL, ignored\n".write(to: folder.appendingPathComponent("notes.txt"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try MigrationFiles.loadDefinitions(from: directory).map(\.fileName),
                       ["09_z.sql", "10_B.sql", "10_a.sql", "10_b.sql"])
    }

    func testAMissingDefinitionsFolderOrABadNameIsRefused() throws {
        let directory = try makeTemporaryDirectory(self)
        let folder = directory.appendingPathComponent("definitions")
        XCTAssertThrowsError(try MigrationFiles.loadDefinitions(from: directory),
                             equals: MigrationError.definitionsNotFound(path: folder.path))
        XCTAssertTrue(MigrationError.definitionsNotFound(path: folder.path).message.contains("definitions/ included"))
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try "SELECT 1;\n".write(to: folder.appendingPathComponent("audit.sql"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try MigrationFiles.loadDefinitions(from: directory),
                             equals: MigrationError.badDefinitionFileName("audit.sql"))
    }
}
