import Foundation
import Postgres
import TestSupport
import XCTest

extension ScratchDatabase {
    /// A scratch database migrated with the project's migrations by the real binary. The binary migrates one
    /// template database per test process; each test gets a copy of it (`CREATE DATABASE ... TEMPLATE`), which takes a
    /// fraction of the time of migrating afresh.
    static func migrated(prefix: String) async throws -> ScratchDatabase {
        try await ScratchDatabase.create(prefix: prefix, template: try await MigratedTemplate.shared.name())
    }
}

/// The migrated template database of this test process, made on first use and dropped when the test bundle ends.
actor MigratedTemplate {
    static let shared = MigratedTemplate()
    private var template: ScratchDatabase?

    func name() async throws -> String {
        if let template { return template.name }
        let database = try await ScratchDatabase.create(prefix: "template")
        let migrations = TestServices.repositoryRoot.appendingPathComponent("migrations").path
        let result = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", migrations])
        guard result.status == 0 else {
            await database.drop()
            throw TestSetupError("piivault migrate failed: \(result.stderr)")
        }
        template = database
        XCTestObservationCenter.shared.addTestObserver(DropAtEnd(database))
        return database.name
    }

    /// Drops the template when the bundle has run.
    private final class DropAtEnd: NSObject, XCTestObservation, @unchecked Sendable {
        // Immutable after init.
        private let database: ScratchDatabase
        init(_ database: ScratchDatabase) { self.database = database }
        func testBundleDidFinish(_ testBundle: Bundle) {
            let done = DispatchSemaphore(value: 0)
            let database = self.database
            Task.detached { await database.drop(); done.signal() }
            done.wait()
        }
    }
}
