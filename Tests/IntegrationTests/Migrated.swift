import Foundation
import Postgres
import TestSupport

extension ScratchDatabase {
    /// A scratch database migrated with the project's migrations by the real binary.
    static func migrated(prefix: String) async throws -> ScratchDatabase {
        let database = try await ScratchDatabase.create(prefix: prefix)
        let migrations = TestServices.repositoryRoot.appendingPathComponent("migrations").path
        let result = try runPiivault(["migrate", "--database-url", database.url, "--migrations-dir", migrations])
        guard result.status == 0 else {
            await database.drop()
            throw TestSetupError("piivault migrate failed: \(result.stderr)")
        }
        return database
    }
}
