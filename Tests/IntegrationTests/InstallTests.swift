import Foundation
import TestSupport
import XCTest

/// `make install`'s layout, through the real binary: an installed `piivault` finds its migrations in
/// `PREFIX/share/piivault/migrations` with no `--migrations-dir` and no `PIIVAULT_MIGRATIONS_DIR`.
final class InstallTests: XCTestCase {
    var database: ScratchDatabase!
    var prefix: URL!

    override func setUp() async throws {
        _ = try await MigratedTemplate.shared.name()  // the cluster's roles first (see MigrationTests)
        database = try await ScratchDatabase.create(prefix: "inst")
        prefix = FileManager.default.temporaryDirectory.appendingPathComponent("piivault-install-\(UUID().uuidString)")
    }

    override func tearDown() async throws {
        await database?.drop()
        if let prefix { try? FileManager.default.removeItem(at: prefix) }
    }

    /// Runs the script `make install` calls, on the binary these tests were built with (a nested `swift build`
    /// inside `swift test` would contend for the build folder).
    private func install() throws {
        let binDirectory = URL(fileURLWithPath: try piivaultBinary()).deletingLastPathComponent().path
        let script = TestServices.repositoryRoot.appendingPathComponent("scripts/install-piivault").path
        let result = try runProcess(script, [binDirectory, prefix.path])
        XCTAssertEqual(result.status, 0, result.stderr)
    }

    /// The installed binary as a user runs it: found through `PATH` (so its `argv[0]` is just `piivault`), from a
    /// folder of its own (no `./migrations` of the checkout, no `./share` of the prefix in reach), with
    /// PIIVAULT_MIGRATIONS_DIR removed from its environment.
    private func migrateWithInstalledBinary() throws -> ProcessResult {
        let elsewhere = prefix.appendingPathComponent("elsewhere")
        try FileManager.default.createDirectory(at: elsewhere, withIntermediateDirectories: true)
        let path = prefix.appendingPathComponent("bin").path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        return try runProcess("piivault", ["migrate", "--database-url", database.url],
                              environment: ["PIIVAULT_MIGRATIONS_DIR": nil, "PATH": path], currentDirectory: elsewhere)
    }

    func testInstalledBinaryFindsItsMigrations() throws {
        try install()
        for folder in ["migrations", "migrations/definitions"] {
            let installed = try FileManager.default.contentsOfDirectory(
                atPath: prefix.appendingPathComponent("share/piivault/" + folder).path).filter { $0 != "definitions" }
            let shipped = try FileManager.default.contentsOfDirectory(
                atPath: TestServices.repositoryRoot.appendingPathComponent(folder).path).filter { $0.hasSuffix(".sql") }
            XCTAssertEqual(installed.sorted(), shipped.sorted(), folder)
        }
        let result = try migrateWithInstalledBinary()
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("applied 0001_roles.sql"), result.stdout)
        XCTAssertTrue(result.stdout.contains("applied definitions/10_audit.sql"), result.stdout)
    }

    /// Without the share folder the same run fails: the success above comes from the installed migrations.
    func testInstalledBinaryWithoutShareFolderFails() throws {
        try install()
        try FileManager.default.removeItem(at: prefix.appendingPathComponent("share"))
        let result = try migrateWithInstalledBinary()
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("no migrations folder found"), result.stderr)
    }
}
