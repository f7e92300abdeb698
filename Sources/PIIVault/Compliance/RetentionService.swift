import Foundation
import Postgres

/// One `retention` run: how old a login must be to go, why, and how.
public struct RetentionRequest: Sendable {
    /// Logins whose `create_date` is before the UTC date this many days ago are deleted (`create_date <
    /// current_date - days`, the date taken in UTC): with 30 on 2026-11-25, rows dated 2026-10-25 and earlier.
    public let olderThanDays: Int
    /// Why (the retention policy's reference); logged. Required.
    public let reason: String
    /// Count only: nothing changes and nothing is logged.
    public let dryRun: Bool
    /// Logins (step 1) or tokens (step 2) per transaction.
    public let batchSize: Int

    public init(olderThanDays: Int, reason: String, dryRun: Bool = false, batchSize: Int = RetentionRequest.defaultBatchSize) {
        self.olderThanDays = olderThanDays
        self.reason = reason
        self.dryRun = dryRun
        self.batchSize = batchSize
    }

    public static let defaultBatchSize = 2000
}

/// What a retention run deleted (or, with `--dry-run`, would delete).
public struct RetentionReport: Sendable, Equatable {
    /// The cutoff (`YYYY-MM-DD`): logins dated before it were deleted.
    public let cutoff: String
    public let loginsDeleted: Int
    public let valuesDeleted: Int
    public let dataKeysDeleted: Int
    /// The `retention` entry; nil for a dry run.
    public let logSeq: Int?

    public var isDryRun: Bool { logSeq == nil }

    /// The counts in `format`, ending with a newline. No token, no value: counts and the cutoff only.
    public func rendered(_ format: OutputFormat) -> String {
        switch format {
        case .table:
            let verb = isDryRun ? "would delete" : "deleted"
            return """
                cutoff \(cutoff) (logins dated before it)
                \(verb) \(loginsDeleted) login rows
                \(verb) \(valuesDeleted) sealed values
                \(verb) \(dataKeysDeleted) data keys

                """
        case .json:
            return TextOutput.json([
                "cutoff": cutoff, "logins_deleted": loginsDeleted, "values_deleted": valuesDeleted,
                "data_keys_deleted": dataKeysDeleted, "dry_run": isDryRun,
                "log_seq": logSeq.map { $0 as Any } ?? NSNull(),
            ] as [String: Any])
        case .csv:
            return TextOutput.csv(
                header: ["cutoff", "logins_deleted", "values_deleted", "data_keys_deleted", "dry_run", "log_seq"],
                rows: [[cutoff, String(loginsDeleted), String(valuesDeleted), String(dataKeysDeleted),
                        String(isDryRun), logSeq.map(String.init) ?? ""]])
        }
    }
}

/// `retention`: deletes the logins older than the cutoff, then the sealed values no remaining login references, then
/// the data keys no remaining value or quarantined body uses (migration 0014). One `retention` entry per run, appended
/// and committed before anything is deleted (`vault.request_retention`); then each batch is its own short transaction
/// through a function that checks that committed grant, so a failed append deletes nothing, the ETL keeps loading
/// beside it, and a run killed midway is finished by the next. Opens its own connection and closes it.
public struct RetentionService: Sendable {
    public let databaseURL: String
    public let caller: AccessLogCaller
    /// Called after each committed batch with its number (1, 2, ...): the command line's fault hook for tests.
    public let afterBatch: @Sendable (Int) async throws -> Void

    public init(databaseURL: String, caller: AccessLogCaller = .current,
                afterBatch: @escaping @Sendable (Int) async throws -> Void = { _ in })
    {
        self.databaseURL = databaseURL
        self.caller = caller
        self.afterBatch = afterBatch
    }

    public func run(_ request: RetentionRequest) async throws -> RetentionReport {
        guard !request.reason.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw UnmaskError.reasonRequired
        }
        return try await Database.withConnection(databaseURL, applicationName: "piivault retention") { connection in
            let gate = LoggedAccessGate(connection: connection, caller: caller, action: "retention")
            let started: PostgresRows
            do {
                started = try await connection.query(request.dryRun ? """
                    SELECT NULL::bigint AS log_seq, cutoff::text AS cutoff_text, logins, sealed_values, data_keys
                      FROM vault.preview_retention(\(request.olderThanDays))
                    """ : """
                    SELECT log_seq, cutoff::text AS cutoff_text, logins, sealed_values, data_keys
                      FROM vault.request_retention(\(request.olderThanDays), \(request.reason), \(caller.osUser),
                                                   \(caller.clientHost))
                    """)  // its own transaction: the entry and its grant are committed when it returns
            } catch let error as PostgresError where error.isPermissionDenied {
                // A dry run by a login outside compliance is an attempt too.
                throw UnmaskError.notPermitted(logSeq: try? await gate.recordDenied(subject: "cutoff", reason: request.reason))
            } catch let error as PostgresError where error.sqlState == "55P03" {
                throw AccessLogBusy(holders: await gate.lockHolders())
            }
            guard let row = started.first else { throw UnmaskProtocolError() }
            let cutoff = try row["cutoff_text"].requiredString()
            guard let seq = try row["log_seq"].int() else {
                return RetentionReport(cutoff: cutoff, loginsDeleted: try row["logins"].requiredInt(),
                                       valuesDeleted: try row["sealed_values"].requiredInt(),
                                       dataKeysDeleted: try row["data_keys"].requiredInt(), logSeq: nil)
            }
            do {
                return try await deleteInBatches(seq: seq, cutoff: cutoff, batchSize: request.batchSize,
                                                 connection: connection)
            } catch let error as PostgresError where error.sqlState == "55P03" {
                throw await ForgetService.lockTimeout(on: connection, gate: gate)
            }
        }
    }

    /// Steps 1 to 3 under grant `seq`, each batch committed on its own (autocommit), then the grant closed.
    private func deleteInBatches(seq: Int, cutoff: String, batchSize: Int, connection: PostgresConnection)
        async throws -> RetentionReport
    {
        var batches = 0
        var logins = 0
        while true {
            let deleted = try await connection.query(
                "SELECT vault.retention_delete_logins(\(seq), \(batchSize)) AS n").first?["n"].requiredInt() ?? 0
            if deleted == 0 { break }
            logins += deleted
            batches += 1
            try await afterBatch(batches)
        }
        var values = 0
        while true {
            guard let row = try await connection.query(
                "SELECT * FROM vault.retention_delete_values(\(seq), \(batchSize))").first else { break }
            let taken = try row["tokens_taken"].requiredInt()
            if taken == 0 { break }
            values += try row["values_deleted"].requiredInt()
            batches += 1
            try await afterBatch(batches)
        }
        let keys = try await connection.query(
            "SELECT vault.retention_delete_data_keys(\(seq)) AS n").first?["n"].requiredInt() ?? 0
        _ = try await connection.query("SELECT vault.finish_retention(\(seq))")
        return RetentionReport(cutoff: cutoff, loginsDeleted: logins, valuesDeleted: values, dataKeysDeleted: keys,
                               logSeq: seq)
    }
}
