import Foundation

/// Entry points for the libFuzzer harnesses (`Fuzz/`, `make fuzz`) into parsers that are internal. Not API: only
/// `@_spi(Fuzzing) import AWS` sees it, and only the harnesses import it so.
@_spi(Fuzzing) public enum AWSFuzzing {
    /// Reads `output` as the standard output of a `credential_process` program (`CredentialProcess.run` after the
    /// program exited 0); the credentials, or the error a run would report.
    public static func credentialProcessOutput(_ output: [UInt8]) throws -> AWSCredentials {
        try CredentialProcess.credentials(fromOutput: Data(output), profile: "fuzz", program: "fuzz-helper")
    }

    /// `parseISO8601`, as the STS answers' and `credential_process`'s `Expiration` is read.
    public static func parseExpiration(_ text: String) -> Date? { parseISO8601(text) }
}
