import Foundation
import Postgres

/// One `retokenize` run: why, and how many values per batch.
public struct RetokenizeRequest: Sendable {
    /// Why (the rotation's change or incident number); logged. Required.
    public let reason: String
    /// Values moved per transaction.
    public let batchSize: Int

    public init(reason: String, batchSize: Int = 1000) {
        self.reason = reason
        self.batchSize = batchSize
    }
}

/// What a `retokenize` run did.
public struct RetokenizeReport: Sendable, Equatable {
    /// The run's access-log entry.
    public let logSeq: Int
    /// Its logged outcome (the counts found when the run started).
    public let outcome: String
    /// The version the values were moved to (the token key's).
    public let toVersion: Int
    /// Values sealed again under a new token.
    public var valuesMoved = 0
    /// Values whose new token the vault already held (the ETL had sealed them under the new version): the logins
    /// joined that value and the old one was deleted.
    public var valuesJoined = 0
    /// Values gone before their batch applied (erased by forget, moved by another run).
    public var valuesSkipped = 0
    /// Rows of `user_logins` whose `masked_ip` or `masked_device_id` (or both) were rewritten.
    public var loginsUpdated = 0
    /// Transactions committed.
    public var batches = 0
    /// Data keys the run sealed values under.
    public var dataKeys = 0

    /// One line per count, for the terminal.
    public var text: String {
        """
        moved \(valuesMoved) sealed values to v\(toVersion)
        joined \(valuesJoined) values already sealed under v\(toVersion)
        skipped \(valuesSkipped) values erased or moved meanwhile
        rewrote the tokens of \(loginsUpdated) logins
        in \(batches) batches under \(dataKeys) new data keys

        """
    }
}

/// Why a `retokenize` run stopped.
public enum RetokenizeError: PIIVaultReportableError, Equatable {
    /// The request was refused and the refusal logged (a newer version present, another vault key).
    case refused(outcome: String, logSeq: Int, otherKeyID: String?)
    /// A value of an older version does not open with its token; the run stopped there (batches before it stay
    /// done) and the refusal is logged.
    case valueDoesNotOpen(token: String, logSeq: Int)
    /// A batch handed out values the run had already moved: the vault did not delete them.
    case noProgress(token: String)
    /// The batches ended with values of older versions left that the run did not move (a value whose data key is
    /// missing from `vault.data_keys` is never handed out; an ETL run still on an older token key may have sealed one
    /// after the last batch): the run is not finished.
    case valuesLeft(count: Int)

    public var message: String {
        switch self {
        case let .refused(outcome, seq, other):
            if let other {
                return "retokenize \(outcome) (access-log entry \(seq)); rewrap the data keys of vault key \(other) to this key first, or run retokenize with that vault.key"
            }
            return "retokenize \(outcome) (access-log entry \(seq)); nothing changed"
        case let .valueDoesNotOpen(token, seq):
            return "the sealed value of token \(token) does not open with its token: it is damaged or was moved; the run stopped there, earlier batches are done (refusal logged as access-log entry \(seq)); check it with piivault unmask --token \(token)"
        case .noProgress(let token):
            return "the vault handed out token \(token) again after it was moved; run piivault migrate and retry (the batches done stay done)"
        case .valuesLeft(let count):
            return "\(count) sealed values of older token versions are left that this run did not move (values whose data key is missing from vault.data_keys, or values an ETL run on an older token key sealed meanwhile); the batches done stay done; run retokenize again, after restoring any missing data key"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .refused(_, _, let other): return other == nil ? .failure : .noPermission
        case .valueDoesNotOpen: return .dataError
        case .noProgress: return .failure
        case .valuesLeft: return .dataError
        }
    }
}

/// `retokenize`: moves every sealed value and login row from older token key versions to the version of the token key
/// given, through the `ComplianceRunner` (action `retokenize`, one entry per run; migration 0016). For each value of
/// an older version: open it (the data key with the vault secret key, the value with its old token as additional
/// data), compute its token under the new key, seal it again bound to the new token under a data key of this run
/// (sealed to the vault key's public half; a new one after `DataKeySealer.valueLimit` values), and hand the mapping to
/// `vault.apply_retokenize_batch`, which inserts the new value (or keeps the one the ETL already sealed), rewrites the
/// logins and deletes the old value. Each batch is one transaction, so a run killed midway leaves whole batches, and
/// the next run moves the rest: resumable and idempotent. Runs through the `ComplianceRunner`.
public struct RetokenizeService: Sendable {
    public let databaseURL: String
    public let secretKey: VaultSecretKey
    /// The new token key: its version is the target.
    public let tokenKey: TokenKey
    public let caller: AccessLogCaller
    /// Called after batch N (1, 2, ...) has committed. Tests use it to simulate a crash midway.
    public var afterCommit: @Sendable (_ batchNumber: Int) async throws -> Void = { _ in }

    public init(databaseURL: String, secretKey: VaultSecretKey, tokenKey: TokenKey, caller: AccessLogCaller = .current) {
        self.databaseURL = databaseURL
        self.secretKey = secretKey
        self.tokenKey = tokenKey
        self.caller = caller
    }

    public func run(_ request: RetokenizeRequest) async throws -> RetokenizeReport {
        var runner = ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "retokenize")
        runner.afterBatch = afterCommit
        return try await runner.run(reason: request.reason) { session in
            let grant = try await session.requestGrant("""
                SELECT * FROM vault.request_retokenize(\(tokenKey.version), \(tokenKey.keyID.hex), \(secretKey.keyID.hex),
                                                       \(request.reason), \(caller.osUser), \(caller.clientHost))
                """, deniedSubject: "tokens")
            if grant.isRefused {
                throw RetokenizeError.refused(outcome: grant.outcome, logSeq: grant.seq, otherKeyID: grant.otherKeyID)
            }
            // The new version's key is recorded before any token of it is written, or the run is refused when the
            // vault knows that version under another key.
            try await TokenKeyRegistry.check(version: tokenKey.version, keyID: tokenKey.keyID.description, on: session.connection)
            try await session.bind("SELECT vault.start_retokenize(\(grant.seq))")
            var report = RetokenizeReport(logSeq: grant.seq, outcome: grant.outcome, toVersion: tokenKey.version)
            let tokenizer = Tokenizer(key: tokenKey)
            let ring = DataKeyRing(secretKey: secretKey)
            var sealer: DataKeySealer?
            var sealerID: Int?
            var moved = Set<String>()
            report.batches = try await session.batches {
                let rows = try await session.connection.query(
                    "SELECT * FROM vault.release_retokenize_values(\(grant.seq), \(request.batchSize))")
                if rows.isEmpty { return .finished }
                if sealer.map({ $0.sealedCount + rows.count > DataKeySealer.valueLimit }) ?? true {
                    sealer = try DataKeySealer(vaultPublicKey: secretKey.publicKey)
                    sealerID = nil
                }
                guard let current = sealer else { return .finished }
                var oldTokens: [String] = [], newTokens: [String] = [], newSealed: [[UInt8]] = []
                for row in rows {
                    let old = try row["token"].requiredString()
                    guard moved.insert(old).inserted else { throw RetokenizeError.noProgress(token: old) }
                    guard let field = PIIField(rawValue: try row["field"].requiredString()) else {
                        throw RetokenizeError.valueDoesNotOpen(token: old, logSeq: try await refuse(session, old))
                    }
                    let reference = try DataKeyReference(row, id: "data_key_id", keyID: "key_id", sealed: "sealed_key")
                    let value: String
                    do {
                        value = try ring.openValue(try row["sealed"].requiredBytes(), token: old, dataKey: reference)
                    } catch {
                        throw RetokenizeError.valueDoesNotOpen(token: old, logSeq: try await refuse(session, old))
                    }
                    let new = tokenizer.token(forCanonical: value, field: field)
                    oldTokens.append(old)
                    newTokens.append(new)
                    newSealed.append(try current.seal(value, token: new))
                }
                let knownKeyID = sealerID
                let (applied, keyID) = try await session.connection.transaction { connection -> (PostgresRow, Int) in
                    var keyID = knownKeyID
                    if keyID == nil {
                        keyID = try await connection.query("""
                            SELECT vault.add_retokenize_data_key(\(grant.seq), \(current.sealedDataKey.keyID.hex),
                                                                 \(current.sealedDataKey.sealed)) AS id
                            """).requiredFirst("vault.add_retokenize_data_key")["id"].requiredInt()
                    }
                    guard let keyID else { throw ComplianceError.protocolError(action: "retokenize") }
                    let row = try await connection.query("""
                        SELECT * FROM vault.apply_retokenize_batch(
                            \(grant.seq), \(PostgresArray.texts(oldTokens))::text[], \(PostgresArray.texts(newTokens))::text[],
                            \(PostgresArray.bytes(newSealed))::bytea[], \(keyID))
                        """).requiredFirst("vault.apply_retokenize_batch")
                    return (row, keyID)
                }
                if sealerID == nil { report.dataKeys += 1 }
                sealerID = keyID
                report.valuesMoved += try applied["values_moved"].requiredInt()
                report.valuesJoined += try applied["values_joined"].requiredInt()
                report.valuesSkipped += try applied["values_skipped"].requiredInt()
                report.loginsUpdated += try applied["logins_updated"].requiredInt()
                return .committed(more: true)
            }
            let remaining = try await session.connection.query(
                "SELECT vault.finish_retokenize(\(grant.seq)) AS remaining"
            ).requiredFirst("vault.finish_retokenize")["remaining"].requiredInt()
            if remaining > 0 { throw RetokenizeError.valuesLeft(count: remaining) }
            return report
        }
    }

    /// Logs a value that does not open as a refusal of this run and returns the entry's seq.
    private func refuse(_ session: ComplianceSession, _ token: String) async throws -> Int {
        try await session.recordRefusal(subject: "tokens:\(token)",
                                        outcome: "refused: value damaged (token \(token) does not open with its token)")
    }
}
