import Foundation
import Postgres
import TestSupport
import XCTest

/// Shared set-up for the AWS-facing ETL tests: a migrated scratch database, fresh keys, the sample sent to a queue
/// on the emulator, and `piivault etl` runs with a controlled AWS environment (no inherited AWS settings).
class AWSTestCase: XCTestCase {
    var database: ScratchDatabase!
    var keys: URL!
    /// An empty home directory, so that no `~/.aws` of the machine leaks into a run.
    var home: URL!

    override func setUp() async throws {
        database = try await ScratchDatabase.migrated(prefix: "aws")
        keys = FileManager.default.temporaryDirectory.appendingPathComponent("aws-keys-\(ScratchDatabase.randomHex(4))")
        let keygen = try runPiivault(["keygen", "--dir", keys.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        home = FileManager.default.temporaryDirectory.appendingPathComponent("aws-home-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
    }

    override func tearDown() async throws {
        await database?.drop()
        if let keys { try? FileManager.default.removeItem(at: keys) }
        if let home { try? FileManager.default.removeItem(at: home) }
    }

    /// Every AWS variable a developer's shell (or the machine: `AWS_CA_BUNDLE`) might carry, unset, plus a clean
    /// home; IMDS off unless a test turns it on (this machine has none, and waiting for it would only slow the test).
    var cleanAWSEnvironment: [String: String?] {
        var env: [String: String?] = ["HOME": home.path, "AWS_EC2_METADATA_DISABLED": "true", "AWS_REGION": "us-east-1"]
        for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                     "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                     "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_STS", "AWS_DEFAULT_REGION",
                     "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                     "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                     "AWS_EC2_METADATA_SERVICE_ENDPOINT", "PIIVAULT_QUEUE_URL", "PIIVAULT_QUEUE_NAME",
                     "PIIVAULT_AWS_REFRESH_LEAD_SECONDS", "AWS_CA_BUNDLE"] {
            env[name] = .some(nil)
        }
        return env
    }

    /// Sends the real sample to a new queue on the emulator, each body `json.dumps(record, sort_keys=True)`; its URL.
    func sendSample(queue: String) async throws -> String {
        let sample = try TestServices.fixture("fetch-sample-messages.json")
        guard let records = try JSONSerialization.jsonObject(with: Data(contentsOf: sample)) as? [Any] else {
            throw TestSetupError("\(sample.path) is not a JSON array")
        }
        return try await SQSEmulator.send(records.map(SQSEmulator.pythonJSON), toQueueNamed: queue)
    }

    /// Runs `piivault etl` on this test's database and keys with `environment` on top of the clean AWS environment.
    func etl(_ arguments: [String], environment: [String: String?]) throws -> ProcessResult {
        var env = cleanAWSEnvironment
        for (key, value) in environment { env[key] = value }
        return try runPiivault(
            ["etl", "--database-url", database.url,
             "--token-key", keys.appendingPathComponent("token.key").path,
             "--vault-public-key", keys.appendingPathComponent("vault.pub").path,
             // One empty long poll (1 s) ends a drained run.
             "--idle-exit", "1", "--wait-time", "1"] + arguments,
            environment: env)
    }

    func query(_ query: PostgresQuery) async throws -> PostgresRows {
        let connection = try await database.connect()
        defer { Task { await connection.close() } }
        return try await connection.query(query)
    }

    func loadedRows() async throws -> Int {
        try await query("SELECT count(*) FROM public.user_logins").first![0].requiredInt()
    }

    /// The outcomes of the runs recorded in `etl_runs`, oldest first.
    func runOutcomes() async throws -> [String] {
        try await query("SELECT outcome FROM public.etl_runs ORDER BY id").map { try $0["outcome"].string() ?? "" }
    }

    /// The lines a run wrote to standard error.
    func errorLines(_ result: ProcessResult) -> [String] {
        result.stderr.split(separator: "\n").map(String.init)
    }

    /// A loopback port nothing listens on: bound, then closed again.
    func closedPort() throws -> Int {
        let result = try runProcess("python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1]); s.close()"])
        return try XCTUnwrap(Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}
