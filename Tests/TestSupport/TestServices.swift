import Foundation
import XCTest

/// Finds the local services (started by `scripts/services start`) and the tests' reference data in `Tests/Fixtures`.
///
/// Settings come from the environment first, then from `.local/services.env` in the checkout. When a service is
/// missing, a test is skipped on a developer's machine but fails when `CI` or `PIIVAULT_REQUIRE_SERVICES=1` is set:
/// in CI an integration test never skips.
public enum TestServices {
    /// The checkout's root folder.
    public static let repositoryRoot: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // Tests/TestSupport/TestServices.swift
        return url
    }()

    /// The tests' reference data, carried in the repository: `Tests/Fixtures` (see its README).
    public static var fixturesDirectory: URL {
        repositoryRoot.appendingPathComponent("Tests/Fixtures")
    }

    /// A file or folder under `Tests/Fixtures`, or an error naming the missing path.
    public static func fixture(_ relativePath: String) throws -> URL {
        let url = fixturesDirectory.appendingPathComponent(relativePath)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TestSetupError("test fixture missing: \(url.path) does not exist; it is part of the repository (git checkout -- Tests/Fixtures)")
        }
        return url
    }

    /// Whether a missing service fails the test instead of skipping it.
    public static var servicesRequired: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["PIIVAULT_REQUIRE_SERVICES"] == "1" || !(env["CI"] ?? "").isEmpty
    }

    /// The settings written by `scripts/services start`.
    public static let servicesFile: [String: String] = {
        let url = repositoryRoot.appendingPathComponent(".local/services.env")
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [:] }
        var result: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            var value = String(line[line.index(after: eq)...])
            if value.hasPrefix("'") && value.hasSuffix("'") && value.count >= 2 {
                value = String(value.dropFirst().dropLast())
            }
            result[String(line[..<eq])] = value
        }
        return result
    }()

    /// A setting from the environment, else from `.local/services.env`.
    public static func setting(_ name: String) -> String? {
        if let value = ProcessInfo.processInfo.environment[name], !value.isEmpty { return value }
        return servicesFile[name]
    }

    /// The superuser connection URI of the throwaway PostgreSQL cluster.
    public static func databaseURL() throws -> String {
        try required("PIIVAULT_TEST_DATABASE_URL", service: "PostgreSQL")
    }

    /// The HTTP endpoint of the SQS emulator (`moto_server`).
    public static func sqsEndpoint() throws -> String {
        try required("PIIVAULT_TEST_SQS_ENDPOINT", service: "the SQS emulator")
    }

    /// The CA that signed the throwaway cluster's TLS certificate (for `localhost` only).
    public static func postgresCA() throws -> String {
        if setting("PIIVAULT_TEST_DATABASE_URL") != nil, setting("PIIVAULT_TEST_PG_CA") == nil {
            // A cluster started by an older scripts/services serves no TLS.
            let message = "the PostgreSQL cluster serves no TLS: PIIVAULT_TEST_PG_CA is not set; restart it with `scripts/services stop; scripts/services start`"
            if servicesRequired { throw TestSetupError(message) }
            throw XCTSkip(message)
        }
        return try required("PIIVAULT_TEST_PG_CA", service: "PostgreSQL with TLS")
    }

    private static func required(_ name: String, service: String) throws -> String {
        if let value = setting(name) { return value }
        let message = "\(service) is not available: \(name) is not set and .local/services.env has no entry; run `make services` (or `scripts/services start`) first"
        if servicesRequired { throw TestSetupError(message) }
        throw XCTSkip(message)
    }
}

/// A test's environment is not what it needs; the message says what to do.
public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
