import AWS
import Foundation
import XCTest

final class CredentialsTests: XCTestCase {
    func testEnvironmentProvider() async throws {
        let provider = EnvironmentCredentialsProvider(environment: AWSEnvironment(
            variables: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "TK"],
            homeDirectory: "/nonexistent"))
        let credentials = try await provider.credentials()
        XCTAssertEqual(credentials.accessKeyId, "AK")
        XCTAssertEqual(credentials.sessionToken, "TK")
        XCTAssertNil(credentials.expiration)
        XCTAssertFalse("\(credentials)".contains("SK"))
        XCTAssertFalse("\(credentials)".contains("TK"))

        let half = EnvironmentCredentialsProvider(environment: AWSEnvironment(
            variables: ["AWS_ACCESS_KEY_ID": "AK"], homeDirectory: "/nonexistent"))
        do {
            _ = try await half.credentials()
            XCTFail("expected an error")
        } catch let error as AWSError {
            XCTAssertEqual(error.kind, .configuration)
            XCTAssertTrue(error.message.contains("AWS_SECRET_ACCESS_KEY"), error.message)
        }
    }

    /// The first provider with credentials wins, later ones are not asked, and the winner is kept.
    func testChainOrderAndStickiness() async throws {
        let empty = EnvironmentCredentialsProvider(environment: AWSEnvironment(variables: [:], homeDirectory: "/x"))
        let first = CountingProvider(lifetime: nil)
        let second = CountingProvider(lifetime: nil)
        let chain = DefaultCredentialsChain(providers: [empty, first, second])
        let credentials = try await chain.credentials()
        XCTAssertEqual(credentials.accessKeyId, "AKID1")
        _ = try await chain.credentials()
        let firstCalls = await first.calls, secondCalls = await second.calls
        XCTAssertEqual(firstCalls, 2)
        XCTAssertEqual(secondCalls, 0)
    }

    /// No provider: one line naming each provider and why it had nothing, with what to set; no secret.
    func testChainWithNothingNamesEveryProvider() async throws {
        let environment = AWSEnvironment(variables: ["AWS_PROFILE": "nightly"], homeDirectory: "/nonexistent")
        let config = try AWSSharedConfig.load(environment: environment)
        let chain = DefaultCredentialsChain(providers: [
            EnvironmentCredentialsProvider(environment: environment),
            ProfileCredentialsProvider(environment: environment, config: config),
        ])
        do {
            _ = try await chain.credentials()
            XCTFail("expected an error")
        } catch let error as AWSError {
            XCTAssertEqual(error.kind, .noCredentials)
            XCTAssertFalse(error.message.contains("\n"))
            for expected in ["environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set",
                             "shared files: no profile \"nightly\"", "set AWS_ACCESS_KEY_ID", "AWS_PROFILE"] {
                XCTAssertTrue(error.message.contains(expected), "\(error.message) lacks \(expected)")
            }
        }
    }

    /// Cached until the lead time before expiry, then asked again; invalidation asks at once.
    func testCachingRefreshesBeforeExpiry() async throws {
        let clock = TestClock()
        let base = CountingProvider(lifetime: 60, now: { clock.now })
        let cache = CachingCredentialsProvider(base, refreshLeadTime: 10, now: { clock.now })
        let first = try await cache.credentials()
        XCTAssertEqual(first.accessKeyId, "AKID1")
        clock.advance(49)
        let stillFirst = try await cache.credentials()
        XCTAssertEqual(stillFirst.accessKeyId, "AKID1", "refreshed too early")
        clock.advance(1.5)  // 9.5 s before expiry: inside the lead time
        let second = try await cache.credentials()
        XCTAssertEqual(second.accessKeyId, "AKID2")
        let again = try await cache.credentials()
        XCTAssertEqual(again.accessKeyId, "AKID2")
        await cache.invalidate()
        let third = try await cache.credentials()
        XCTAssertEqual(third.accessKeyId, "AKID3")
        let calls = await base.calls
        XCTAssertEqual(calls, 3)
    }

    /// Credentials that arrive already inside the lead time (60 s of life, a lead of 300 s) are kept for half of what
    /// they had left, not fetched again at every request.
    func testShortLivedCredentialsAreNotFetchedAtEveryRequest() async throws {
        let clock = TestClock()
        let base = CountingProvider(lifetime: 60, now: { clock.now })
        let cache = CachingCredentialsProvider(base, refreshLeadTime: 300, now: { clock.now })
        for _ in 0..<10 { _ = try await cache.credentials() }
        var calls = await base.calls
        XCTAssertEqual(calls, 1)
        clock.advance(29)
        _ = try await cache.credentials()
        calls = await base.calls
        XCTAssertEqual(calls, 1, "refreshed before half their life")
        clock.advance(2)
        let second = try await cache.credentials()
        XCTAssertEqual(second.accessKeyId, "AKID2")
        calls = await base.calls
        XCTAssertEqual(calls, 2)
    }

    /// Long-term keys are fetched once.
    func testCachingKeepsLongTermKeys() async throws {
        let base = CountingProvider(lifetime: nil)
        let cache = CachingCredentialsProvider(base, refreshLeadTime: 300)
        for _ in 0..<5 { _ = try await cache.credentials() }
        let calls = await base.calls
        XCTAssertEqual(calls, 1)
    }

    /// Concurrent callers during a refresh share one call to the slow provider.
    func testConcurrentCallersShareOneRefresh() async throws {
        let base = SlowProvider()
        let cache = CachingCredentialsProvider(base, refreshLeadTime: 1)
        let keys = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { try await cache.credentials().accessKeyId } }
            var keys: [String] = []
            for try await key in group { keys.append(key) }
            return keys
        }
        XCTAssertEqual(Set(keys), ["SLOW1"])
        let calls = await base.calls
        XCTAssertEqual(calls, 1)
    }

    /// A failed refresh keeps the current credentials while they are still valid, and fails once they expired.
    func testFailedRefreshUsesUnexpiredCredentials() async throws {
        let clock = TestClock()
        let base = FlakyProvider(now: { clock.now })
        let cache = CachingCredentialsProvider(base, refreshLeadTime: 30, now: { clock.now })
        let first = try await cache.credentials()
        clock.advance(45)  // due for refresh (15 s left), and the provider now fails
        let kept = try await cache.credentials()
        XCTAssertEqual(kept.accessKeyId, first.accessKeyId)
        clock.advance(20)  // expired
        do {
            _ = try await cache.credentials()
            XCTFail("expected the refresh error")
        } catch let error as AWSError {
            XCTAssertEqual(error.kind, .unavailable)
        }
    }
}

/// Takes a moment to answer, so that callers pile up. An actor: the counter is its isolated state.
private actor SlowProvider: AWSCredentialsProvider {
    nonisolated let name = "slow"
    private(set) var calls = 0
    func credentials() async throws -> AWSCredentials {
        calls += 1
        let number = calls
        try await Task.sleep(for: .milliseconds(200))
        return AWSCredentials(accessKeyId: "SLOW\(number)", secretAccessKey: "S", expiration: Date().addingTimeInterval(3600),
                              source: name)
    }
}

/// Answers once with 60-second credentials, then fails. An actor: the counter is its isolated state.
private actor FlakyProvider: AWSCredentialsProvider {
    nonisolated let name = "flaky"
    private let now: @Sendable () -> Date
    private var calls = 0
    init(now: @escaping @Sendable () -> Date) { self.now = now }
    func credentials() async throws -> AWSCredentials {
        calls += 1
        if calls > 1 { throw AWSError(kind: .unavailable, message: "down") }
        return AWSCredentials(accessKeyId: "FLAKY", secretAccessKey: "S", expiration: now().addingTimeInterval(60),
                              source: name)
    }
}
