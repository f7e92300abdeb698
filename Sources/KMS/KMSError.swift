/// A failed KMS call. (Settings and credentials problems are the AWS module's `AWSError`.)
///
/// `message` is one line: what went wrong and what to do next. It names the KMS key; it never contains key material,
/// a ciphertext, a secret key, session token or signature (server text is redacted and cut to one line).
public struct KMSError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    public enum Kind: String, Sendable {
        /// KMS refused to use the key for this request: access denied, another key, a ciphertext (or encryption
        /// context) that does not match, a disabled or pending-deletion key, no such key. Never retried.
        case refused
        /// The signature or the credentials were rejected (`UnrecognizedClientException`, `ExpiredToken`, ...).
        case badCredentials
        /// KMS is throttling the caller (`ThrottlingException`, HTTP 429), still after the retries.
        case throttled
        /// KMS answered with a 5xx status (`KMSInternalException`, `DependencyTimeoutException`,
        /// `KeyUnavailableException`), still after the retries.
        case serverError
        /// The endpoint could not be reached (refused, reset, a host name that does not resolve).
        case connection
        /// The endpoint's TLS certificate did not verify. Not retried.
        case tlsVerification
        /// A call (or all retries together) ran out of time.
        case timeout
        /// KMS rejected the request as invalid (any other 4xx error code).
        case invalidRequest
        /// The answer could not be understood.
        case invalidResponse
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// One line: what went wrong, what to do next.
    public let message: String
    /// The AWS error code, when KMS sent one.
    public let awsErrorCode: String?

    /// Creates an error.
    public init(kind: Kind, message: String, awsErrorCode: String? = nil) {
        self.kind = kind
        self.message = message
        self.awsErrorCode = awsErrorCode
    }

    /// Whether trying the same call again may succeed (throttling, 5xx, connection failures, per-call timeouts).
    public var isRetryable: Bool {
        switch kind {
        case .throttled, .serverError, .connection, .timeout: return true
        default: return false
        }
    }

    /// Whether KMS refused the credentials because they expired (a refresh and one retry may help).
    public var isExpiredToken: Bool {
        ["ExpiredToken", "ExpiredTokenException"].contains(awsErrorCode ?? "")
    }

    /// The message.
    public var description: String { message }
}

extension KMSError {
    /// KMS's answers that refuse this use of this key: the caller must change something (IAM, the key's state, the
    /// file), so they are never retried.
    static let refusalCodes: Set<String> = [
        "AccessDeniedException", "AccessDenied", "IncorrectKeyException", "InvalidCiphertextException",
        "DisabledException", "KMSInvalidStateException", "NotFoundException", "InvalidKeyUsageException",
        "InvalidGrantTokenException",
    ]
    static let throttlingCodes: Set<String> = [
        "ThrottlingException", "Throttling", "LimitExceededException", "TooManyRequestsException",
        "RequestLimitExceeded",
    ]
    /// KMS's own transient failures (HTTP 500/503, but classified by code too).
    static let unavailableCodes: Set<String> = [
        "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException", "InternalFailure",
        "ServiceUnavailable", "ServiceUnavailableException",
    ]
    static let badCredentialCodes: Set<String> = [
        "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignature", "MissingAuthenticationToken",
        "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId", "SignatureDoesNotMatch", "RequestExpired",
    ]

    /// What each refusal most likely means, for the message's "what to do next".
    static func advice(code: String) -> String {
        switch code {
        case "AccessDeniedException", "AccessDenied":
            return "the identity's IAM policy or the key policy does not allow this; grant kms:Decrypt (or kms:Encrypt) on the key with the piivault encryption context"
        case "IncorrectKeyException":
            return "the file was wrapped under another KMS key than the one it names; check the key line"
        case "InvalidCiphertextException":
            return "the wrapped key or its encryption context does not match (the file was altered, or its key line names another key id); restore the file from your copy"
        case "DisabledException":
            return "the KMS key is disabled; enable it (aws kms enable-key) if its use is intended"
        case "KMSInvalidStateException":
            return "the KMS key is pending deletion or otherwise unusable; cancel the deletion (aws kms cancel-key-deletion) if its use is intended"
        case "NotFoundException":
            return "no such KMS key in this account and region; check the key id, AWS_REGION and the endpoint"
        default:
            return "check the key, its policy and the identity's IAM policy"
        }
    }

    /// Maps an error answer to an error with a clear message.
    static func fromAWS(code: String?, serverMessage: String?, status: Int, context: String,
                        credentialsSource: String?) -> KMSError {
        let code = code ?? ""
        let detail = serverMessage.map { $0.isEmpty ? "" : " (\($0))" } ?? ""
        let codePart = code.isEmpty ? "HTTP \(status)" : code
        if refusalCodes.contains(code) {
            return KMSError(kind: .refused, message: "\(context): KMS refused: \(codePart)\(detail); \(advice(code: code))",
                            awsErrorCode: code)
        }
        if badCredentialCodes.contains(code) {
            let source = credentialsSource.map { " (from \($0))" } ?? ""
            return KMSError(kind: .badCredentials,
                            message: "\(context): KMS rejected the credentials\(source): \(codePart)\(detail); check the AWS credentials and the clock",
                            awsErrorCode: code)
        }
        if throttlingCodes.contains(code) || status == 429 {
            return KMSError(kind: .throttled, message: "\(context): KMS is throttling requests: \(codePart)\(detail); try again later",
                            awsErrorCode: code)
        }
        if unavailableCodes.contains(code) || status >= 500 {
            return KMSError(kind: .serverError, message: "\(context): KMS failed: \(codePart)\(detail); try again later",
                            awsErrorCode: code)
        }
        return KMSError(kind: .invalidRequest,
                        message: "\(context): KMS rejected the request: \(codePart)\(detail); check the KMS key id and the endpoint",
                        awsErrorCode: code)
    }
}
