/// piivault's documented exit codes (see README, "Exit status").
public enum PIIVaultExitCode: Int32, Sendable {
    case success = 0
    /// Something failed: a run that did not load everything, a chain that does not verify.
    case failure = 1
    /// Wrong arguments (swift-argument-parser's validation code).
    case usage = 64
    /// Bad input data or a malformed key file.
    case dataError = 65
    /// A service (database, SQS) could not be reached.
    case unavailable = 69
    /// Not done yet, try again later (EX_TEMPFAIL): a compliance action whose policy asks for approvals recorded a
    /// request instead of acting; run it again with `--request N` once other officers approved it.
    case tempFail = 75
    /// A permission was refused: key file mode or owner, database privilege.
    case noPermission = 77
}

/// An error the command line can print as one line and map to an exit code. Its `message` never holds PII,
/// secrets or parameter values.
public protocol PIIVaultReportableError: Error {
    /// One line saying what went wrong and what to do next.
    var message: String { get }
    /// The exit code the command line returns for it.
    var exitCode: PIIVaultExitCode { get }
}
