import Foundation
import Postgres

/// One `forget` call: the data subject's user id, why, and whether only to count.
public struct ForgetRequest: Sendable {
    /// The user id to erase. Sent to the database only to find the rows; never logged (the log names its keyed hash).
    public let userID: String
    /// Why (the erasure request's number); logged. Required.
    public let reason: String
    /// Count only: nothing changes and nothing is logged.
    public let dryRun: Bool
    /// How long to wait, in whole seconds, for an ETL batch (or another erasure) holding the vault-wide lock.
    public let lockWaitSeconds: Int

    /// The default wait for the vault-wide lock: an ETL batch holds it for the length of its commit.
    public static let defaultLockWaitSeconds = 10

    public init(userID: String, reason: String, dryRun: Bool = false, lockWaitSeconds: Int = defaultLockWaitSeconds) {
        self.userID = userID
        self.reason = reason
        self.dryRun = dryRun
        self.lockWaitSeconds = lockWaitSeconds
    }
}

/// What `forget` erased (or, with `--dry-run`, would erase).
public struct ForgetReport: Sendable, Equatable {
    /// The keyed hash of the user id that names the subject in the log and the tombstone.
    public let subjectHash: String
    public let rowsDeleted: Int
    public let valuesDeleted: Int
    /// Sealed values of this user that other users' logins still reference (their data too), so kept.
    public let valuesKept: Int
    /// The `forget` entry; nil for a dry run.
    public let logSeq: Int?

    /// One line per count, for the terminal.
    public var text: String {
        let verb = logSeq == nil ? "would delete" : "deleted"
        return """
            subject \(subjectHash)
            \(verb) \(rowsDeleted) login rows
            \(verb) \(valuesDeleted) sealed values
            kept \(valuesKept) sealed values shared with other users

            """
    }
}

/// `forget`: erases one data subject through `vault.forget_user` (migration 0013), which appends the `forget` entry,
/// deletes the user's logins and every sealed value no remaining login references, and keeps the tombstone, all in
/// one transaction: if the entry cannot be written, nothing is deleted. Takes the vault-wide lock exclusively (each ETL
/// batch takes it shared). Runs through the `ComplianceRunner` (action `forget`).
public struct ForgetService: Sendable {
    public let databaseURL: String
    public let tokenKey: TokenKey
    public let caller: AccessLogCaller

    public init(databaseURL: String, tokenKey: TokenKey, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.tokenKey = tokenKey
        self.caller = caller
    }

    public func run(_ request: ForgetRequest) async throws -> ForgetReport {
        let subjectHash = TombstoneHasher(key: tokenKey).hash(userID: request.userID)
        return try await ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "forget")
            .run(reason: request.reason) { session in
                // One transaction: the entry and the deletions commit together or not at all. First the vault-wide
                // lock (`VaultValueLock`): no ETL batch is between its look-up of the vault and its commit while
                // forget decides which sealed values no login references any more. Waited for `lockWaitSeconds` at
                // most (10 s by default; an ETL batch holds it for its commit), then reported with its holder.
                let row: PostgresRow
                do {
                    row = try await session.request("""
                        SELECT * FROM vault.forget_user(\(subjectHash), \(request.userID), \(request.reason),
                                                        \(caller.osUser), \(caller.clientHost), \(request.dryRun))
                        """, deniedSubject: "user_id", waitsOn: .vault) { connection in
                        guard !request.dryRun else { return }
                        // set_config(..., true) is SET LOCAL with a bound value.
                        let wait = "\(max(1, request.lockWaitSeconds))s"
                        _ = try await connection.query("SELECT set_config('lock_timeout', \(wait), true)")
                        _ = try await connection.query(VaultValueLock.exclusive)
                    }
                } catch let error as PostgresError where error.code == .invalidParameterValue {
                    // vault.forget_user checks the subject hash against the one the ETL recorded with the rows.
                    throw ForgetSubjectMismatch()
                } catch let error as PostgresError
                    where error.code == .objectNotInPrerequisiteState && error.text.contains("carry no subject hash") {
                    throw ForgetRowsWithoutSubjectHash()
                }
                return ForgetReport(subjectHash: subjectHash, rowsDeleted: try row["rows_deleted"].requiredInt(),
                                    valuesDeleted: try row["values_deleted"].requiredInt(),
                                    valuesKept: try row["values_kept"].requiredInt(), logSeq: try row["log_seq"].int())
            }
    }
}

/// The user's rows carry another subject hash than this token key gives for the user id (they were loaded with a
/// token key of another tombstone key); the database refused, nothing was deleted or logged.
public struct ForgetSubjectMismatch: PIIVaultReportableError {
    public var message: String {
        "the user's rows were loaded with another token key (their keyed user-id hash is not this key's); nothing was deleted or logged: run forget with the token key the ETL uses"
    }
    public var exitCode: PIIVaultExitCode { .dataError }
}

/// Dual control asks for approvals of forget, and some of the user's rows carry no subject hash (loaded before
/// piivault recorded one): the approvers approve a hash, which cannot be tied to them. Nothing deleted or logged.
public struct ForgetRowsWithoutSubjectHash: PIIVaultReportableError {
    public var message: String {
        "some of the user's rows were loaded before piivault recorded subject hashes, so an approval cannot be tied to them; nothing was deleted or logged: the next ETL run records their hashes (then ask again), or the policy owner can set the forget policy to 0 approvals for this erasure (piivault policy set forget --approvals 0; logged), then back"
    }
    public var exitCode: PIIVaultExitCode { .dataError }
}

/// What `forget --quarantined` erased (or, with `--dry-run`, would erase).
public struct QuarantineForgetReport: Sendable, Equatable {
    public let messageID: String
    /// 1, or 0 when no quarantined message has this id.
    public let bodiesDeleted: Int
    /// The `forget` entry; nil for a dry run.
    public let logSeq: Int?

    public var text: String {
        "\(logSeq == nil ? "would delete" : "deleted") \(bodiesDeleted) quarantined body\n"
    }
}

/// No quarantined message has the id `forget --quarantined` was given (logged as not found).
public struct QuarantinedMessageNotFound: PIIVaultReportableError {
    public let logSeq: Int?
    public var message: String {
        "no quarantined message has this id; nothing deleted"
            + (logSeq.map { " (logged as access-log entry \($0)); check the id with `piivault unmask --quarantined`" } ?? "")
    }
    public var exitCode: PIIVaultExitCode { .failure }
}

extension ForgetService {
    /// `forget --quarantined`: deletes one quarantined body through `vault.forget_quarantined` (migration 0014), its
    /// `forget` entry (subject `message_id:<id>`) appended first in the same transaction. An unknown id is logged as not
    /// found and throws ``QuarantinedMessageNotFound``. Needs no token key (the message id names the subject).
    public static func forgetQuarantined(
        messageID: String, reason: String, dryRun: Bool, databaseURL: String, caller: AccessLogCaller = .current
    ) async throws -> QuarantineForgetReport {
        let report = try await ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "forget")
            .run(reason: reason) { session in
                let row = try await session.request("""
                    SELECT * FROM vault.forget_quarantined(\(messageID), \(reason), \(caller.osUser),
                                                           \(caller.clientHost), \(dryRun))
                    """, deniedSubject: "message_id")
                return QuarantineForgetReport(messageID: messageID, bodiesDeleted: try row["bodies_deleted"].requiredInt(),
                                              logSeq: try row["log_seq"].int())
            }
        if report.bodiesDeleted == 0 { throw QuarantinedMessageNotFound(logSeq: report.logSeq) }
        return report
    }
}
