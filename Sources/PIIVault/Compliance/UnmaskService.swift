/// Runs `UnmaskRequest`s against a database for a compliance officer: opens its own connection for each request
/// and closes it afterwards, so a caller never handles a connection.
public struct UnmaskService: Sendable {
    /// A libpq connection string or URI ("" for libpq's defaults).
    public let databaseURL: String
    public let secretKey: VaultSecretKey
    /// The token key, to check each opened value against its token (a value that does not match is reported as
    /// forged and withheld). nil skips the check.
    public let tokenKey: TokenKey?
    public let caller: AccessLogCaller

    public init(databaseURL: String, secretKey: VaultSecretKey, tokenKey: TokenKey?, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.secretKey = secretKey
        self.tokenKey = tokenKey
        self.caller = caller
    }

    /// Runs one request: one access-log entry (and a second when values are refused after release). Throws
    /// `UnmaskError` for a refusal that prints nothing; what was recovered in part comes back with a `shortfall`.
    public func run(_ request: UnmaskRequest) async throws -> UnmaskReport {
        try await Database.withConnection(databaseURL) { connection in
            try await Unmasker(connection: connection, secretKey: secretKey, tokenKey: tokenKey, caller: caller)
                .run(request)
        }
    }
}
