import Foundation
import SigV4

/// A set of AWS credentials as a provider hands them out: keys, an optional session token, and when they expire.
///
/// `description` never shows the secret key or the session token.
public struct AWSCredentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The access key id (not secret; it names the key in CloudTrail).
    public let accessKeyId: String
    /// The secret access key.
    public let secretAccessKey: String
    /// The session token of temporary credentials.
    public let sessionToken: String?
    /// When temporary credentials stop working; nil for long-term keys.
    public let expiration: Date?
    /// Which provider handed them out (e.g. `environment`, `container`), for messages.
    public let source: String

    /// Creates credentials.
    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil,
                source: String) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken.flatMap { $0.isEmpty ? nil : $0 }
        self.expiration = expiration
        self.source = source
    }

    /// The keys in the form the signer takes.
    public var signing: SigV4.Credentials {
        SigV4.Credentials(accessKeyId: accessKeyId, secretAccessKey: secretAccessKey, sessionToken: sessionToken)
    }

    /// The secrets these credentials hold, for scrubbing server or library text before it is logged.
    public var secrets: [String] { [secretAccessKey, sessionToken ?? ""].filter { !$0.isEmpty } }

    /// The access key id, the source and the expiry; never a secret.
    public var description: String {
        let expiry = expiration.map { " expiring \(ISO8601DateFormatter().string(from: $0))" } ?? ""
        return "AWSCredentials(\(accessKeyId) from \(source)\(expiry))"
    }

    /// Same as ``description``.
    public var debugDescription: String { description }
}
