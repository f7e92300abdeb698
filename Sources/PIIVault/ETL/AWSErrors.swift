import AWS
import SQS

/// SQS failures as the command line reports them: unreachable or a TLS certificate that does not verify 69,
/// credentials refused 77, anything else (a missing queue included, whose message names it) 1.
extension SQSError: PIIVaultReportableError {
    public var exitCode: PIIVaultExitCode {
        switch kind {
        case .connection, .unknownHost, .tlsVerification, .timeout, .serverError, .throttled: return .unavailable
        case .badCredentials, .accessDenied: return .noPermission
        case .noSuchQueue, .invalidRequest, .invalidResponse, .checksumMismatch, .lostReceive: return .failure
        }
    }
}

/// AWS settings and credentials failures: a bad setting 64, no credentials or credentials refused 77, a credentials
/// service that cannot be reached (or whose TLS certificate does not verify) 69, an answer that makes no sense 1, a CA
/// bundle that cannot be read or holds no certificate 65 (like a malformed key file).
extension AWSError: PIIVaultReportableError {
    public var exitCode: PIIVaultExitCode {
        switch kind {
        case .configuration: return .usage
        case .noCredentials, .credentialsRefused: return .noPermission
        case .unavailable: return .unavailable
        case .invalidResponse: return .failure
        case .invalidCABundle: return .dataError
        }
    }
}
