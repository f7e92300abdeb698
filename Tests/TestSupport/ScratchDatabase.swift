import Foundation
import Postgres

/// A fresh database in the local cluster for one test, dropped by `drop()`, with logins made for it on request.
public final class ScratchDatabase: @unchecked Sendable {
    /// The database's name.
    public let name: String
    /// A superuser URI into this database.
    public let url: String
    /// The superuser URI of the cluster's `postgres` database.
    public let adminURL: String
    private var logins: [String] = []
    private let lock = NSLock()

    private init(name: String, url: String, adminURL: String) {
        self.name = name
        self.url = url
        self.adminURL = adminURL
    }

    /// Creates a database with a unique name: empty, or a copy of the database `template` (which nobody may be
    /// connected to).
    public static func create(prefix: String = "t", template: String? = nil) async throws -> ScratchDatabase {
        let adminURL = try TestServices.databaseURL()
        let name = "\(prefix)_\(randomHex(6))"
        let admin = try await PostgresConnection.connect(adminURL)
        do {
            try await admin.execute(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)" + (template.map { " TEMPLATE \($0)" } ?? "")))
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
        return ScratchDatabase(name: name, url: try replacingDatabase(in: adminURL, with: name), adminURL: adminURL)
    }

    /// Runs `body` holding a lock that every test process of the cluster shares (an advisory lock in the cluster's
    /// `postgres` database, on the connection handed to `body`): for work that must happen once per cluster.
    public static func withClusterLock(_ body: (PostgresConnection) async throws -> Void) async throws {
        let admin = try await PostgresConnection.connect(try TestServices.databaseURL())
        do {
            // An arbitrary constant key: "piivault test cluster".
            _ = try await admin.execute("SELECT pg_advisory_lock(7000123456)")
            try await body(admin)
            _ = try await admin.execute("SELECT pg_advisory_unlock(7000123456)")
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
    }

    /// A superuser connection to this database.
    public func connect() async throws -> PostgresConnection {
        try await PostgresConnection.connect(url)
    }

    /// Creates a login (with a random password) that is a member of `role`, and returns a URI for it.
    public func createLogin(memberOf role: String?) async throws -> String {
        let user = "\(name)_\(role.map { $0.replacingOccurrences(of: "piivault_", with: "") } ?? "nobody")_\(Self.randomHex(3))"
        let password = Self.randomHex(12)
        let admin = try await PostgresConnection.connect(adminURL)
        let membership = role.map { " IN ROLE \($0)" } ?? ""
        // Stored as a cheap SCRAM verifier: the tests connect as these logins hundreds of times.
        let verifier = ScramVerifier.make(password: password)
        try await admin.execute(PostgresQuery(unsafeSQL: "CREATE ROLE \(user) LOGIN PASSWORD '\(verifier)'\(membership)"))
        await admin.close()
        lock.withLock { logins.append(user) }
        var components = URLComponents(string: url)!
        components.user = user
        components.password = password
        return components.string!
    }

    /// Drops the database and the logins made for it.
    public func drop() async {
        guard let admin = try? await PostgresConnection.connect(adminURL) else { return }
        _ = try? await admin.execute(PostgresQuery(unsafeSQL: "DROP DATABASE IF EXISTS \(name) WITH (FORCE)"))
        for user in lock.withLock({ logins }) {
            _ = try? await admin.execute(PostgresQuery(unsafeSQL: "DROP ROLE IF EXISTS \(user)"))
        }
        await admin.close()
    }

    /// Random lowercase hex of `bytes` bytes.
    public static func randomHex(_ bytes: Int) -> String {
        (0..<bytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    private static func replacingDatabase(in url: String, with name: String) throws -> String {
        guard var components = URLComponents(string: url) else {
            throw TestSetupError("PIIVAULT_TEST_DATABASE_URL is not a postgresql:// URI")
        }
        components.path = "/" + name
        return components.string!
    }
}
