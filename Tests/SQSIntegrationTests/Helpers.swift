import Foundation
import Logging
@testable import SQS
import SigV4
import TestSupport
import XCTest

/// A logger that keeps every rendered line, so tests can check that no credential is ever logged.
final class CapturingLogStore: @unchecked Sendable {
    private let lock = NSLock()
    private var storage: [String] = []
    func append(_ line: String) { lock.lock(); storage.append(line); lock.unlock() }
    var lines: [String] { lock.lock(); defer { lock.unlock() }; return storage }
}

struct CapturingLogHandler: LogHandler {
    let store: CapturingLogStore
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        store.append("\(event.level) \(event.message) \(event.metadata ?? [:]) \(metadata) \(event.error.map { "\($0)" } ?? "")")
    }
}

enum SQSTestEnvironment {
    static let accessKey = "test"
    static let secretKey = "test-secret-key-never-logged"

    static func logger(_ store: CapturingLogStore) -> Logger {
        Logger(label: "sqs-test") { _ in CapturingLogHandler(store: store) }
    }

    /// A client for the emulator in `PIIVAULT_TEST_SQS_ENDPOINT` (skips or fails as TestServices decides).
    static func emulatorClient(_ wireProtocol: SQSWireProtocol, store: CapturingLogStore) throws -> SQSClient {
        let endpoint = try TestServices.sqsEndpoint()
        let configuration = try SQSConfiguration.resolve(
            environment: ["AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey,
                          "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_SQS": endpoint],
            homeDirectory: "/nonexistent", wireProtocol: wireProtocol,
            retry: SQSRetryPolicy(maxAttempts: 3, totalDeadline: .seconds(30)), callTimeout: .seconds(10))
        return SQSClient(configuration: configuration, logger: logger(store))
    }

    static func uniqueQueueName(_ prefix: String) -> String {
        "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())-\(Int(Date().timeIntervalSince1970))"
    }

    /// A loopback port nothing listens on: bound, then closed again.
    static func closedPort() throws -> Int {
        let result = try runProcess("python3", ["-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1]); s.close()"])
        return try XCTUnwrap(Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
    }
}

/// The canned-response server (`Tests/crosscheck/canned_server.py`), alive while this object is.
final class CannedServer: Sendable {
    private let server: ScriptServer
    var port: Int { server.port }

    init(responses: [[String: Any]]) throws {
        server = try ScriptServer(script: "canned_server.py", settings: responses)
    }

    func stop() { server.stop() }
}
