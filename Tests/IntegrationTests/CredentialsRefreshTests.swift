import AWS
import Foundation
import Logging
import PIIVault
import TestSupport
import XCTest

/// Issue 10, acceptance 3: credentials that expire during a run are replaced before they expire, the run completes,
/// and SQS requests after the refresh are signed with the new keys (as the front before the emulator saw them).
final class CredentialsRefreshTests: AWSTestCase {
    func testRunOutlivesTwoSecondCredentials() async throws {
        let queueURL = try await sendSample(queue: "refresh-\(ScratchDatabase.randomHex(4))")
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint()])
        defer { front.stop() }
        let provider = ShortLivedProvider(lifetime: 2)
        let source = try await SQSMessageSource.resolve(
            queueURL: front.url + URL(string: queueURL)!.path, queueName: nil, endpointURL: nil, waitTimeSeconds: 1,
            visibilityTimeout: 30, logger: Logger(label: "refresh-test"),
            environment: ["AWS_REGION": "us-east-1", "HOME": home.path],
            credentialsProvider: CachingCredentialsProvider(provider, refreshLeadTime: 1))
        var configuration = ETLConfiguration()
        configuration.idleExit = 3
        let run = ETLRun(
            source: source, databaseURL: database.url,
            tokenKey: try KeyLoading.loadTokenKey(path: keys.appendingPathComponent("token.key").path),
            vaultPublicKey: try KeyLoading.loadVaultPublicKey(path: keys.appendingPathComponent("vault.pub").path),
            configuration: configuration, logger: Logger(label: "refresh-test"))
        let started = Date()
        let summary = try await run.run()
        let elapsed = Date().timeIntervalSince(started)

        XCTAssertEqual(summary.outcome, "completed")
        XCTAssertEqual(summary.loaded, 99)
        XCTAssertEqual(summary.quarantined, 1)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 99)
        XCTAssertGreaterThan(elapsed, 2, "the run must outlive the first credentials")

        let issued = await provider.issued
        XCTAssertGreaterThanOrEqual(issued.count, 2, "the provider was asked again before expiry")
        let keysSeen = front.entries(kind: "sqs").compactMap { $0["key"] as? String }
        XCTAssertEqual(keysSeen.first, "AKIDREFRESH1")
        XCTAssertTrue(keysSeen.contains("AKIDREFRESH2"), "requests after the refresh use the new keys: \(keysSeen)")
        // Every request was signed with credentials that had not expired when they were handed out for it: no key
        // is used after a later one has been seen by more than one request in flight's worth.
        for (index, key) in keysSeen.enumerated() {
            let number = Int(key.dropFirst("AKIDREFRESH".count)) ?? 0
            let newestBefore = keysSeen[..<index].compactMap { Int($0.dropFirst("AKIDREFRESH".count)) }.max() ?? 0
            XCTAssertGreaterThanOrEqual(number, newestBefore - 1, "request \(index) used stale key \(key): \(keysSeen)")
        }
    }
}

/// Hands out numbered credentials that expire `lifetime` seconds after issue. An actor: the issue log is its
/// isolated state.
private actor ShortLivedProvider: AWSCredentialsProvider {
    nonisolated let name = "short-lived test provider"
    private let lifetime: TimeInterval
    private(set) var issued: [Date] = []

    init(lifetime: TimeInterval) { self.lifetime = lifetime }

    func credentials() async throws -> AWSCredentials {
        issued.append(Date())
        return AWSCredentials(accessKeyId: "AKIDREFRESH\(issued.count)", secretAccessKey: "refresh-secret",
                              sessionToken: "refresh-token-\(issued.count)",
                              expiration: Date().addingTimeInterval(lifetime), source: name)
    }
}
