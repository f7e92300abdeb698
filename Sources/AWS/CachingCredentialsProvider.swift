import Foundation
import Logging

/// Caches another provider's credentials and asks it again a little before they expire, so that a run longer than
/// the credentials' lifetime keeps working.
///
/// One refresh at a time: callers that arrive while a refresh is under way wait for that same refresh. If a refresh
/// fails while the cached credentials have not yet expired, those are used and the next call tries again.
/// An actor: the cache and the refresh in flight are its isolated state.
public actor CachingCredentialsProvider: AWSCredentialsProvider {
    public nonisolated let name: String
    private let base: any AWSCredentialsProvider
    private let refreshLeadTime: TimeInterval
    private let now: @Sendable () -> Date
    private let logger: Logger
    private var cached: AWSCredentials?
    /// When `cached` is to be replaced; nil for credentials that do not expire.
    private var dueAt: Date?
    private var refresh: Task<AWSCredentials, any Error>?
    /// How often the underlying provider has been asked (for tests and debug logs).
    public private(set) var fetches = 0

    /// The refresh lead time the SDKs use by default: five minutes before expiry.
    public static let defaultRefreshLeadTime: TimeInterval = 300

    /// Creates the cache.
    ///
    /// - Parameters:
    ///   - refreshLeadTime: how long before `expiration` cached credentials are replaced.
    ///   - now: the clock (injectable for tests).
    public init(_ base: any AWSCredentialsProvider, refreshLeadTime: TimeInterval = defaultRefreshLeadTime,
                logger: Logger = Logger(label: "piivault.aws"), now: @escaping @Sendable () -> Date = { Date() }) {
        self.base = base
        self.name = base.name
        self.refreshLeadTime = refreshLeadTime
        self.logger = logger
        self.now = now
    }

    public func credentials() async throws -> AWSCredentials {
        if let cached, !isDue { return cached }
        let task: Task<AWSCredentials, any Error>
        if let refresh {
            task = refresh
        } else {
            // Runs on this actor (it inherits the isolation), so it may update the cache itself.
            task = Task {
                defer { self.refresh = nil }
                let fresh = try await self.base.credentials()
                self.fetches += 1
                self.cached = fresh
                self.dueAt = Self.refreshTime(of: fresh, fetchedAt: self.now(), leadTime: self.refreshLeadTime)
                self.logger.debug("AWS credentials obtained", metadata: [
                    "provider": "\(fresh.source)", "access_key_id": "\(fresh.accessKeyId)",
                    "expires": "\(fresh.expiration.map { ISO8601DateFormatter().string(from: $0) } ?? "never")",
                ])
                return fresh
            }
            refresh = task
        }
        do {
            return try await task.value
        } catch {
            if let cached, let expiration = cached.expiration, now() < expiration {
                logger.warning("AWS credentials refresh failed; using the current ones until they expire",
                               metadata: ["provider": "\(name)", "error": "\(error)"])
                return cached
            }
            throw error
        }
    }

    /// Drops the cached credentials; the next call asks the underlying provider (and the provider forgets its own).
    public func invalidate() async {
        cached = nil
        dueAt = nil
        await base.invalidate()
    }

    private var isDue: Bool {
        guard let dueAt else { return false }
        return now() >= dueAt
    }

    /// When credentials fetched at `fetchedAt` are to be replaced: `leadTime` before they expire; those that arrive
    /// already inside the lead time (a short lifetime, or a lead time as long as the session) at half of what they had
    /// left, instead of being asked for again at every request (a `credential_process` run, an STS call or three IMDS
    /// requests each time).
    static func refreshTime(of credentials: AWSCredentials, fetchedAt: Date, leadTime: TimeInterval) -> Date? {
        guard let expiration = credentials.expiration else { return nil }
        let life = expiration.timeIntervalSince(fetchedAt)
        return life > leadTime
            ? expiration.addingTimeInterval(-leadTime) : fetchedAt.addingTimeInterval(max(0, life) / 2)
    }
}
