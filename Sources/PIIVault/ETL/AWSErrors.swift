import AWS
import SQS

/// SQS failures as the command line reports them: unreachable 69, credentials refused 77, anything else (a missing
/// queue included, whose message names it) 1.
extension SQSError: PIIVaultReportableError {
    public var exitCode: PIIVaultExitCode {
        switch kind {
        case .connection, .timeout, .serverError, .throttled: return .unavailable
        case .badCredentials, .accessDenied: return .noPermission
        case .noSuchQueue, .invalidRequest, .invalidResponse, .checksumMismatch, .lostReceive: return .failure
        }
    }
}

/// AWS settings and credentials failures: a bad setting 64, no credentials or credentials refused 77, a credentials
/// service that cannot be reached 69, an answer that makes no sense 1.
extension AWSError: PIIVaultReportableError {
    public var exitCode: PIIVaultExitCode {
        switch kind {
        case .configuration: return .usage
        case .noCredentials, .credentialsRefused: return .noPermission
        case .unavailable: return .unavailable
        case .invalidResponse: return .failure
        }
    }
}
