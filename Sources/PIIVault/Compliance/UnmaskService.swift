/// Runs `UnmaskRequest`s against a database for a compliance officer: opens its own connection for each request
/// and closes it afterwards, so a caller never handles a connection.
public struct UnmaskService: Sendable {
    /// A libpq connection string or URI ("" for libpq's defaults).
    public let databaseURL: String
    public let secretKey: VaultSecretKey
    /// The token keys, to check each opened value against its token with the key of the token's version (a value
    /// that does not match is reported as forged and withheld; one of a version without a key is reported in
    /// `UnmaskReport.unverifiedTokenVersions`). nil skips the check.
    public let tokenKeys: TokenKeySet?
    public let caller: AccessLogCaller

    public init(databaseURL: String, secretKey: VaultSecretKey, tokenKey: TokenKey?, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.secretKey = secretKey
        // One key is one version: no conflict possible.
        self.tokenKeys = tokenKey.map { try! TokenKeySet([$0]) }
        self.caller = caller
    }

    /// With several token keys (one per version).
    public init(databaseURL: String, secretKey: VaultSecretKey, tokenKeys: TokenKeySet?, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.secretKey = secretKey
        self.tokenKeys = tokenKeys
        self.caller = caller
    }

    /// Runs one request: one access-log entry (and a second when values are refused after release). Throws
    /// `ComplianceError` for a refusal that prints nothing; what was recovered in part comes back with a `shortfall`.
    public func run(_ request: UnmaskRequest) async throws -> UnmaskReport {
        try await ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "unmask").run(reason: request.reason) { session in
            let unmasker = Unmasker(session: session, secretKey: secretKey, tokenKeys: tokenKeys)
            var report = try await unmasker.run(request)
            report.unverifiedTokenVersions = unmasker.unverified.sorted
            return report
        }
    }
}
