import Foundation
import Postgres

/// Who is asking, as written into the access log's `os_user` and `client_host`. The database records its own
/// authenticated login (`db_user`) beside these, which are the client's claim.
public struct AccessLogCaller: Sendable, Equatable {
    public var osUser: String
    public var clientHost: String

    public init(osUser: String, clientHost: String) {
        self.osUser = osUser
        self.clientHost = clientHost
    }

    /// This process's user (`USER`/`LOGNAME`, else the uid) and host name.
    public static var current: AccessLogCaller {
        let environment = ProcessInfo.processInfo.environment
        let user = environment["USER"] ?? environment["LOGNAME"] ?? "uid \(getuid())"
        return AccessLogCaller(osUser: user, clientHost: ProcessInfo.processInfo.hostName)
    }
}

/// A sealed value with the sealed data key it was encrypted under, as `vault.unmask_tokens` returns it.
public struct SealedSecret: Sendable, Equatable {
    public let token: String
    /// `ip` or `device_id`.
    public let field: String
    public let dataKeyID: Int
    /// The vault key id the data key was sealed to.
    public let keyID: String
    /// The data key, sealed (`crypto_box_seal`) to the vault public key.
    public let sealedDataKey: [UInt8]
    /// nonce || XChaCha20-Poly1305 ciphertext of the canonical value, with the token as additional data.
    public let sealed: [UInt8]

    public init(token: String, field: String, dataKeyID: Int, keyID: String, sealedDataKey: [UInt8], sealed: [UInt8]) {
        self.token = token
        self.field = field
        self.dataKeyID = dataKeyID
        self.keyID = keyID
        self.sealedDataKey = sealedDataKey
        self.sealed = sealed
    }
}

/// What a logged access gave: rows, or a refusal the database recorded (over the row cap).
public enum LoggedAccess<Rows: Sendable>: Sendable {
    /// The access and its log entry are committed; `rows` may be empty (nothing matched, still logged).
    case granted(Rows)
    /// The database refused and logged the refusal; `outcome` is the logged text (`refused: ...`).
    case refused(outcome: String)
}

/// Reads sealed values through the logging functions of migration 0007 (role `piivault_compliance`).
///
/// Fail closed: each call runs the function and COMMITs in one transaction and returns only after the commit
/// succeeded, so whatever the caller opens and prints has a committed access-log entry. Opening the sealed values is
/// the caller's business (it needs the vault secret key, which never reaches the database).
public struct LoggedVaultReader: Sendable {
    public let connection: PostgresConnection
    public let caller: AccessLogCaller

    public init(connection: PostgresConnection, caller: AccessLogCaller = .current) {
        self.connection = connection
        self.caller = caller
    }

    /// The sealed values of `tokens` that exist (`vault.unmask_tokens`); refused when more than `maxRows` tokens are
    /// asked for.
    public func unmaskTokens(_ tokens: [String], reason: String, maxRows: Int) async throws
        -> LoggedAccess<[SealedSecret]>
    {
        try Self.requireReason(reason)
        let tokensJSON = String(decoding: try JSONSerialization.data(withJSONObject: tokens), as: UTF8.self)
        let rows = try await connection.transaction { connection in
            try await connection.query("""
                SELECT * FROM vault.unmask_tokens(
                    ARRAY(SELECT jsonb_array_elements_text(\(tokensJSON)::jsonb)), \(reason), \(caller.osUser),
                    \(caller.clientHost), \(maxRows))
                """)
        }
        if let refusal = try Self.refusal(in: rows) { return .refused(outcome: refusal) }
        return .granted(try rows.map { row in
            SealedSecret(
                token: try row["token"].requiredString(), field: try row["field"].requiredString(),
                dataKeyID: try row["data_key_id"].requiredInt(), keyID: try row["key_id"].requiredString(),
                sealedDataKey: try row["sealed_key"].requiredBytes(), sealed: try row["sealed"].requiredBytes())
        })
    }

    /// Every `user_logins` row of `userID` with its sealed ip and device id (`vault.unmask_user`), as raw rows with
    /// the function's columns; refused when the user has more than `maxRows` rows.
    public func unmaskUser(_ userID: String, reason: String, maxRows: Int) async throws -> LoggedAccess<PostgresRows> {
        try Self.requireReason(reason)
        let rows = try await connection.transaction { connection in
            try await connection.query("""
                SELECT * FROM vault.unmask_user(\(userID), \(reason), \(caller.osUser), \(caller.clientHost), \(maxRows))
                """)
        }
        if let refusal = try Self.refusal(in: rows) { return .refused(outcome: refusal) }
        return .granted(rows)
    }

    /// Logs a refusal decided by the client after an access (a data key sealed to another vault key, a value that
    /// does not open under its token) and returns the entry's seq. The logged outcome starts with `refused: `.
    @discardableResult
    public func recordRefusal(action: String, reason: String, subject: String, outcome: String) async throws -> Int {
        try Self.requireReason(reason)
        let rows = try await connection.query("""
            SELECT audit.record_refusal(\(action), \(reason), \(subject), \(outcome), \(caller.osUser),
                                        \(caller.clientHost)) AS seq
            """)
        return try rows.first?["seq"].requiredInt() ?? 0
    }

    private static func requireReason(_ reason: String) throws {
        if reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { throw AccessLogError.reasonRequired }
    }

    /// A refusal is one row whose outcome starts with `refused`.
    private static func refusal(in rows: PostgresRows) throws -> String? {
        guard rows.count == 1, let outcome = try rows[0]["outcome"].string(), outcome.hasPrefix("refused") else {
            return nil
        }
        return outcome
    }
}
