/// A problem with the AWS settings or with obtaining credentials.
///
/// `message` is one line: what went wrong and what to do next. It never contains a secret key, session token,
/// web identity token or signature.
public struct AWSError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is (the core maps these to exit codes).
    public enum Kind: String, Sendable {
        /// A setting is missing or malformed (region, endpoint, profile, a credentials source).
        case configuration
        /// No provider in the chain had credentials.
        case noCredentials
        /// A credentials service (STS, the container endpoint, IMDS, a `credential_process`) refused to hand out
        /// credentials: wrong role, untrusted token, access denied.
        case credentialsRefused
        /// A credentials service could not be reached or did not answer in time.
        case unavailable
        /// A credentials service answered with something that could not be understood.
        case invalidResponse
        /// The CA bundle (`AWS_CA_BUNDLE` or the profile's `ca_bundle`) cannot be read or holds no PEM certificate.
        case invalidCABundle
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// One line: what went wrong, what to do next.
    public let message: String

    /// Creates an error.
    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// Thrown by a credentials provider that has nothing to offer (its settings are absent), so that a chain tries the
/// next one. `reason` says what was missing, e.g. `AWS_ACCESS_KEY_ID not set`; it never holds a secret.
public struct AWSCredentialsNotFound: Error, CustomStringConvertible, Sendable {
    /// Why the provider had nothing.
    public let reason: String

    /// Creates the error.
    public init(_ reason: String) { self.reason = reason }

    /// The reason.
    public var description: String { reason }
}
