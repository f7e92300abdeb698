/// A failed SQS call. (Settings and credentials problems are the AWS module's `AWSError`.)
///
/// `message` is one line: what went wrong and what to do next. It never contains a secret key, session token or
/// signature (server-supplied text is redacted and cut to one line before it is kept).
public struct SQSError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is, for callers that react differently (the core maps these to its own errors).
    public enum Kind: String, Sendable {
        /// The queue does not exist (`AWS.SimpleQueueService.NonExistentQueue`, `QueueDoesNotExist`).
        case noSuchQueue
        /// The credentials are valid but not allowed to do this (`AccessDenied`).
        case accessDenied
        /// The signature or the credentials were rejected (`SignatureDoesNotMatch`, `InvalidClientTokenId`, ...).
        case badCredentials
        /// SQS is throttling the caller (`Throttling`, `RequestThrottled`, HTTP 429).
        case throttled
        /// SQS answered with a 5xx status.
        case serverError
        /// The endpoint could not be reached (refused, reset, a TLS protocol failure).
        case connection
        /// The endpoint's host name does not resolve (DNS). Not retried: a name that does not resolve now will not a
        /// moment later; most often the endpoint setting is missing or misspelt.
        case unknownHost
        /// The endpoint's TLS certificate did not verify (an untrusted CA, a certificate for another host name).
        /// Not retried: the same certificate would fail again.
        case tlsVerification
        /// A call (or all retries together) ran out of time.
        case timeout
        /// SQS rejected the request as invalid (any other 4xx error code).
        case invalidRequest
        /// The answer could not be understood.
        case invalidResponse
        /// A message's MD5 checksum did not match its body.
        case checksumMismatch
        /// A receive's answer was lost after SQS may have handed out messages (never retried: they are hidden until
        /// their visibility timeout ends).
        case lostReceive
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// One line: what went wrong, what to do next.
    public let message: String
    /// The AWS error code, when SQS sent one.
    public let awsErrorCode: String?
    /// The HTTP status, when there was an answer.
    public let httpStatus: Int?

    /// Creates an error.
    public init(kind: Kind, message: String, awsErrorCode: String? = nil, httpStatus: Int? = nil) {
        self.kind = kind
        self.message = message
        self.awsErrorCode = awsErrorCode
        self.httpStatus = httpStatus
    }

    /// Whether trying the same call again may succeed (throttling, 5xx, connection failures, per-call timeouts).
    public var isRetryable: Bool {
        switch kind {
        case .throttled, .serverError, .connection, .timeout: return true
        default: return false
        }
    }

    /// Whether SQS refused the credentials because they expired (a refresh and one retry may help).
    public var isExpiredToken: Bool {
        ["ExpiredToken", "ExpiredTokenException"].contains(awsErrorCode ?? "")
    }

    /// The message.
    public var description: String { message }
}

extension SQSError {
    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "SlowDown",
        "AWS.SimpleQueueService.RequestThrottled", "RequestLimitExceeded", "BandwidthLimitExceeded",
    ]
    static let noSuchQueueCodes: Set<String> = [
        "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue",
    ]
    static let badCredentialCodes: Set<String> = [
        "SignatureDoesNotMatch", "InvalidClientTokenId", "InvalidSignatureException", "IncompleteSignature",
        "UnrecognizedClientException", "MissingAuthenticationToken", "ExpiredToken", "ExpiredTokenException",
        "InvalidAccessKeyId", "AuthFailure", "RequestExpired", "InvalidSecurity",
    ]

    /// Maps an AWS error answer to an error with a clear message.
    ///
    /// - Parameters:
    ///   - code: the AWS error code (query protocol `Code`, JSON `__type` after `#`, or `x-amzn-query-error`).
    ///   - serverMessage: the server's text, already redacted and cut to one line.
    ///   - context: what was being done, e.g. `ReceiveMessage on https://.../queue`.
    ///   - credentialsSource: which provider supplied the credentials, named when they are refused.
    static func fromAWS(code: String?, serverMessage: String?, status: Int, context: String,
                        credentialsSource: String? = nil) -> SQSError {
        let code = code ?? ""
        let detail = serverMessage.map { $0.isEmpty ? "" : " (\($0))" } ?? ""
        let codePart = code.isEmpty ? "HTTP \(status)" : code
        if noSuchQueueCodes.contains(code) {
            return SQSError(
                kind: .noSuchQueue,
                message: "no such queue: \(context) failed with \(codePart)\(detail); check the queue URL or name, the region and the endpoint",
                awsErrorCode: code, httpStatus: status)
        }
        if code == "AccessDenied" || code == "AccessDeniedException" || code == "AuthorizationError"
            || code == "KMS.AccessDeniedException" {
            return SQSError(
                kind: .accessDenied,
                message: "access denied: \(context) failed with \(codePart)\(detail); grant these credentials the SQS permission for this queue",
                awsErrorCode: code, httpStatus: status)
        }
        if badCredentialCodes.contains(code) {
            // The server's text for a signature mismatch can quote the canonical request, so none of it is kept.
            return SQSError(
                kind: .badCredentials,
                message: "bad signature or credentials: \(context) failed with \(codePart)\(credentialsSource.map { " (credentials from \($0))" } ?? ""); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the profile or role that supplies them), AWS_SESSION_TOKEN for temporary credentials, the region and the system clock",
                awsErrorCode: code, httpStatus: status)
        }
        if throttlingCodes.contains(code) || status == 429 {
            return SQSError(
                kind: .throttled,
                message: "throttled: \(context) failed with \(codePart)\(detail); retry later or lower the request rate",
                awsErrorCode: code.isEmpty ? nil : code, httpStatus: status)
        }
        if status >= 500 {
            return SQSError(
                kind: .serverError,
                message: "SQS server error: \(context) failed with \(codePart)\(detail); retry later",
                awsErrorCode: code.isEmpty ? nil : code, httpStatus: status)
        }
        return SQSError(
            kind: .invalidRequest,
            message: "SQS rejected the request: \(context) failed with \(codePart)\(detail)",
            awsErrorCode: code.isEmpty ? nil : code, httpStatus: status)
    }
}
