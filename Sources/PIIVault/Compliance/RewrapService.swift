import CSodium
import Foundation
import Postgres

/// One `rewrap` run: from the vault key that opens the data keys to the public key they are sealed to afterwards.
public struct RewrapRequest: Sendable {
    /// The old vault secret key: opens the data keys sealed to its key id.
    public let oldSecretKey: VaultSecretKey
    /// The new vault public key: the data keys (and, with `full`, the new data keys) are sealed to it.
    public let newPublicKey: VaultPublicKey
    /// Why (the rotation's ticket); logged. Required.
    public let reason: String
    /// Also re-encrypt every value under fresh data keys sealed to the new key, and delete the old data keys.
    public let full: Bool
    /// Data keys (or, with `full`, values) per transaction.
    public let batchSize: Int
    /// Count only: nothing changes and nothing is logged.
    public let dryRun: Bool

    public init(oldSecretKey: VaultSecretKey, newPublicKey: VaultPublicKey, reason: String, full: Bool = false,
                batchSize: Int = 500, dryRun: Bool = false) {
        self.oldSecretKey = oldSecretKey
        self.newPublicKey = newPublicKey
        self.reason = reason
        self.full = full
        self.batchSize = batchSize
        self.dryRun = dryRun
    }
}

/// What a `rewrap` run did (or, dry, would do). Counts only: no key material, no value.
public struct RewrapReport: Sendable, Equatable {
    public let oldKeyID: String
    public let newKeyID: String
    public let full: Bool
    /// The `rewrap` entry; nil for a dry run.
    public let logSeq: Int?
    /// Data keys sealed to the old key when the run asked.
    public var dataKeysFound = 0
    /// Sealed values and quarantined bodies under them (counted for `full` only).
    public var valuesFound = 0
    /// Data keys sealed to neither key: left alone.
    public var otherDataKeys = 0
    /// Their key ids.
    public var otherKeyIDs: [String] = []
    /// Data keys now sealed to the new key (plain rewrap).
    public var dataKeysRewrapped = 0
    /// Data keys that changed under the run (deleted, or replaced by another writer): left as they are.
    public var dataKeysChanged = 0
    /// Data keys that did not open with the old key: left sealed to it.
    public var dataKeysDamaged = 0
    /// Values and quarantined bodies re-encrypted under the new data keys (`full`).
    public var valuesResealed = 0
    /// Values that did not open (`full`): left under their old data key.
    public var valuesDamaged = 0
    /// Data keys this run created, sealed to the new key (`full`).
    public var dataKeysCreated = 0
    /// Old data keys deleted once no value referenced them (`full`).
    public var dataKeysDeleted = 0
    /// Old data keys still present after the run (`full`).
    public var dataKeysLeft = 0
    /// An ETL run sealing to the old key was running, so no old data key was deleted (`full`).
    public var etlRunningWithOldKey = false
    /// Committed batches.
    public var batches = 0

    /// True when there was nothing sealed to the old key.
    public var nothingToDo: Bool { dataKeysFound == 0 }

    /// A few lines for the terminal.
    public var text: String {
        var lines: [String] = []
        let dry = logSeq == nil
        if nothingToDo {
            lines.append("nothing to rewrap: no data key is sealed to vault key \(oldKeyID)")
        } else if dry {
            lines.append("would rewrap \(dataKeysFound) data keys from vault key \(oldKeyID) to \(newKeyID)"
                         + (full ? " and re-encrypt \(valuesFound) values under new data keys" : ""))
        } else if full {
            lines.append("re-encrypted \(valuesResealed) values under \(dataKeysCreated) new data keys sealed to \(newKeyID)")
            lines.append("deleted \(dataKeysDeleted) data keys sealed to \(oldKeyID); \(dataKeysLeft) left")
        } else {
            lines.append("rewrapped \(dataKeysRewrapped) data keys from vault key \(oldKeyID) to \(newKeyID)")
        }
        if dataKeysChanged > 0 { lines.append("\(dataKeysChanged) data keys changed during the run; left as they are") }
        if dataKeysDamaged > 0 { lines.append("\(dataKeysDamaged) data keys did not open with the old key; left sealed to it") }
        if valuesDamaged > 0 { lines.append("\(valuesDamaged) values did not open; left under their old data key") }
        if otherDataKeys > 0 {
            lines.append("\(otherDataKeys) data keys sealed to other vault keys left alone: \(otherKeyIDs.joined(separator: ", "))")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Why a `rewrap` run did not finish its work. The report still says what was done.
public enum RewrapShortfall: PIIVaultReportableError, Equatable {
    /// Data keys or values that did not open; logged as a refusal.
    case damaged(dataKeys: Int, values: Int, logSeq: Int)
    /// `full`: old data keys are still present (values added under them during the run, or an ETL run sealing to the
    /// old key is still running).
    case oldDataKeysLeft(count: Int, etlRunning: Bool)

    public var message: String {
        switch self {
        case let .damaged(keys, values, seq):
            return "\(keys) data keys and \(values) values did not open with the old vault key and were left as they are (logged as access-log entry \(seq)); restore them from a backup, then run rewrap again"
        case let .oldDataKeysLeft(count, running):
            return running
                ? "\(count) data keys are still sealed to the old vault key: an ETL run sealing to it is running; give the ETL the new vault.pub, then run rewrap --full again"
                : "\(count) data keys are still sealed to the old vault key (values added during the run); run rewrap --full again"
        }
    }

    public var exitCode: PIIVaultExitCode {
        switch self {
        case .damaged: return .dataError
        case .oldDataKeysLeft: return .failure
        }
    }
}

/// `rewrap --to` names the old key's own public key.
public struct RewrapSameKey: PIIVaultReportableError {
    public let keyID: String
    public var message: String {
        "--to holds the public key of the old vault key (key id \(keyID)); give the new key pair's vault.pub"
    }
    public var exitCode: PIIVaultExitCode { .usage }
}

/// `rewrap`: re-seals every data key sealed to the old vault key to the new public key, through the logged-access
/// gate (migration 0015): one `rewrap` entry per run, committed before anything is released; then batches, each its
/// own transaction, each guarded by what it replaces. A killed run is finished by running it again (a new entry).
/// With `full`, every value under those data keys is re-encrypted under new data keys sealed to the new key, and the
/// old data keys are deleted once nothing references them. Runs through the `ComplianceRunner`.
public struct RewrapService: Sendable {
    public let databaseURL: String
    public let caller: AccessLogCaller
    /// Called after each committed batch with the number of batches committed so far (progress, and the tests'
    /// fault hook).
    public let afterBatch: @Sendable (Int) async throws -> Void

    public init(databaseURL: String, caller: AccessLogCaller = .current,
                afterBatch: @escaping @Sendable (Int) async throws -> Void = { _ in }) {
        self.databaseURL = databaseURL
        self.caller = caller
        self.afterBatch = afterBatch
    }

    /// Runs one rewrap. Returns the report and, when something was left undone, why.
    public func run(_ request: RewrapRequest) async throws -> (report: RewrapReport, shortfall: RewrapShortfall?) {
        let oldID = request.oldSecretKey.keyID, newID = request.newPublicKey.keyID
        guard oldID != newID else { throw RewrapSameKey(keyID: oldID.hex) }
        var runner = ComplianceRunner(databaseURL: databaseURL, caller: caller, action: "rewrap")
        runner.afterBatch = afterBatch
        return try await runner.run(reason: request.reason) { session in
            // A dry run only counts (no entry, no grant); it goes through the request step all the same.
            let row = try await session.request("""
                SELECT * FROM vault.request_rewrap(\(oldID.hex), \(newID.hex), \(request.full), \(request.reason),
                                                   \(caller.osUser), \(caller.clientHost), \(request.dryRun))
                """, deniedSubject: "vault_key")
            let seq = request.dryRun ? nil : try AccessGrant(row).seq
            var report = RewrapReport(oldKeyID: oldID.hex, newKeyID: newID.hex, full: request.full, logSeq: seq)
            report.dataKeysFound = try row["data_keys"].requiredInt()
            report.valuesFound = try row["sealed_values"].requiredInt() + row["quarantined_values"].requiredInt()
            report.otherDataKeys = try row["other_data_keys"].requiredInt()
            report.otherKeyIDs = try row["other_key_ids"].string().map { $0.split(separator: ",").map(String.init) } ?? []
            guard let seq, !report.nothingToDo else { return (report, nil) }

            try await session.bind("SELECT vault.start_rewrap(\(seq))")
            let run = RewrapRun(session: session, seq: seq, request: request)
            if request.full {
                try await run.reencryptValues(into: &report)
            } else {
                try await run.rewrapDataKeys(into: &report)
            }
            if report.dataKeysDamaged > 0 || report.valuesDamaged > 0 {
                let refusal = try await session.recordRefusal(
                    subject: "vault_key:\(oldID.hex)->\(newID.hex)",
                    outcome: "refused: data key damaged (\(report.dataKeysDamaged) data keys and \(report.valuesDamaged) values did not open with vault key \(oldID.hex))")
                return (report, .damaged(dataKeys: report.dataKeysDamaged, values: report.valuesDamaged, logSeq: refusal))
            }
            if request.full && report.dataKeysLeft > 0 {
                return (report, .oldDataKeysLeft(count: report.dataKeysLeft, etlRunning: report.etlRunningWithOldKey))
            }
            return (report, nil)
        }
    }
}

/// The batches of one started rewrap run, on its session (the run is bound to it: migration 0015).
private struct RewrapRun {
    let session: ComplianceSession
    let seq: Int
    let request: RewrapRequest

    /// Plain rewrap: each batch of data keys opened with the old key and sealed again to the new one.
    func rewrapDataKeys(into report: inout RewrapReport) async throws {
        let oldKey = request.oldSecretKey, newKey = request.newPublicKey
        var after = 0
        let batches = try await session.batches(after: report.batches) {
            let (count, last, rewrapped, changed, damaged) = try await session.connection.transaction { connection in
                let rows = try await connection.query(
                    "SELECT id, sealed_key FROM vault.release_rewrap_keys(\(seq), \(after), \(request.batchSize))")
                var ids: [Int] = [], old: [[UInt8]] = [], new: [[UInt8]] = []
                var damaged = 0, last = after
                for row in rows {
                    let id = try row["id"].requiredInt(), sealed = try row["sealed_key"].requiredBytes()
                    last = id
                    guard let opener = try? DataKeyOpener(sealedDataKey: SealedDataKey(keyID: oldKey.keyID, sealed: sealed),
                                                          secretKey: oldKey)
                    else { damaged += 1; continue }
                    ids.append(id); old.append(sealed); new.append(try opener.sealed(to: newKey).sealed)
                }
                var replaced = 0
                if !ids.isEmpty {
                    replaced = try await connection.query("""
                        SELECT vault.replace_rewrap_keys(\(seq), \(PostgresArray.bigints(ids))::bigint[],
                                                         \(PostgresArray.bytes(old))::bytea[],
                                                         \(PostgresArray.bytes(new))::bytea[]) AS n
                        """).requiredFirst("vault.replace_rewrap_keys")["n"].requiredInt()
                }
                return (rows.count, last, replaced, ids.count - replaced, damaged)
            }
            guard count > 0 else { return .finished }
            report.dataKeysRewrapped += rewrapped
            report.dataKeysChanged += changed
            report.dataKeysDamaged += damaged
            after = last
            return .committed(more: count >= request.batchSize)
        }
        report.batches = batches
    }

    /// Full rewrap: every value under the old data keys opened and sealed again under a data key of this run (sealed
    /// to the new key, stored in the batch's transaction before the values that use it), then the old data keys no
    /// value references are deleted.
    func reencryptValues(into report: inout RewrapReport) async throws {
        var sealer: RunSealer?
        var opener: (id: Int, opener: DataKeyOpener?)?
        for kind in ["secret", "quarantine"] {
            var afterKey = 0, afterRef = ""
            let batches = try await session.batches(after: report.batches) {
                let current = sealer, cached = opener
                let outcome = try await session.connection.transaction { connection in
                    try await reencryptBatch(kind: kind, afterKey: afterKey, afterRef: afterRef, sealer: current,
                                             cached: cached, connection: connection)
                }
                guard outcome.count > 0 else { return .finished }
                if outcome.sealer?.id != sealer?.id { report.dataKeysCreated += 1 }
                sealer = outcome.sealer
                opener = outcome.opener
                report.valuesResealed += outcome.moved
                report.valuesDamaged += outcome.damaged
                report.dataKeysDamaged += outcome.damagedKeys
                report.dataKeysDeleted += outcome.deleted
                (afterKey, afterRef) = outcome.last
                return .committed(more: outcome.count >= request.batchSize)
            }
            report.batches = batches
        }
        // Old data keys no value was under (or whose values another run moved) go now.
        let row = try await session.connection.query("SELECT * FROM vault.drop_rewrapped_data_keys(\(seq))")
            .requiredFirst("vault.drop_rewrapped_data_keys")
        report.dataKeysDeleted += try row["deleted"].requiredInt()
        report.dataKeysLeft = try row["in_use"].requiredInt()
        report.etlRunningWithOldKey = try row["etl_running"].bool() ?? false
    }

    private struct RunSealer: Sendable {
        let sealer: DataKeySealer
        let id: Int
    }

    private struct BatchOutcome: Sendable {
        var count = 0
        var moved = 0
        var damaged = 0
        var damagedKeys = 0
        var deleted = 0
        var last: (Int, String) = (0, "")
        var opener: (id: Int, opener: DataKeyOpener?)?
        var sealer: RunSealer?
    }

    /// The run's data key for a batch of `count` values: `current`, or (none yet, or it would pass
    /// `DataKeySealer.valueLimit` values) a fresh one sealed to the new key and stored in the batch's transaction.
    private func sealer(for count: Int, current: RunSealer?, connection: PostgresConnection) async throws -> RunSealer {
        if let current, current.sealer.sealedCount + count <= DataKeySealer.valueLimit { return current }
        let sealer = try DataKeySealer(vaultPublicKey: request.newPublicKey)
        let id = try await connection.query(
            "SELECT vault.add_rewrap_data_key(\(seq), \(sealer.sealedDataKey.sealed)) AS id")
            .requiredFirst("vault.add_rewrap_data_key")["id"].requiredInt()
        return RunSealer(sealer: sealer, id: id)
    }

    private func reencryptBatch(
        kind: String, afterKey: Int, afterRef: String, sealer current: RunSealer?,
        cached: (id: Int, opener: DataKeyOpener?)?,
        connection: PostgresConnection
    ) async throws -> BatchOutcome {
        let oldKey = request.oldSecretKey
        let rows = try await connection.query("""
            SELECT ref, data_key_id, sealed_key, sealed
              FROM vault.release_rewrap_values(\(seq), \(kind), \(afterKey), \(afterRef), \(request.batchSize))
            """)
        var outcome = BatchOutcome(count: rows.count, last: (afterKey, afterRef), opener: cached, sealer: current)
        guard !rows.isEmpty else { return outcome }
        let sealer = try await self.sealer(for: rows.count, current: current, connection: connection)
        outcome.sealer = sealer
        var refs: [String] = [], oldIDs: [Int] = [], sealed: [[UInt8]] = []
        for row in rows {
            let ref = try row["ref"].requiredString(), dataKeyID = try row["data_key_id"].requiredInt()
            outcome.last = (dataKeyID, ref)
            // Rows come ordered by data key: each old data key is opened once.
            if outcome.opener?.id != dataKeyID {
                let opened = try? DataKeyOpener(
                    sealedDataKey: SealedDataKey(keyID: oldKey.keyID, sealed: try row["sealed_key"].requiredBytes()),
                    secretKey: oldKey)
                if opened == nil { outcome.damagedKeys += 1 }
                outcome.opener = (dataKeyID, opened)
            }
            guard let opener = outcome.opener?.opener else { outcome.damaged += 1; continue }
            var additional = ref
            let bytes = try row["sealed"].requiredBytes()
            let resealed: [UInt8]? = additional.withUTF8 { ad in
                guard var plain = try? opener.open(bytes, additionalData: UnsafeRawBufferPointer(ad)) else { return nil }
                defer { sodium_memzero(&plain, plain.count) }
                return plain.withUnsafeBytes { try? sealer.sealer.seal($0, additionalData: UnsafeRawBufferPointer(ad)) }
            }
            guard let resealed else { outcome.damaged += 1; continue }
            refs.append(ref); oldIDs.append(dataKeyID); sealed.append(resealed)
        }
        if !refs.isEmpty {
            outcome.moved = try await connection.query("""
                SELECT vault.replace_rewrap_values(\(seq), \(kind), \(PostgresArray.texts(refs))::text[],
                                                   \(PostgresArray.bigints(oldIDs))::bigint[], \(sealer.id),
                                                   \(PostgresArray.bytes(sealed))::bytea[]) AS n
                """).requiredFirst("vault.replace_rewrap_values")["n"].requiredInt()
        }
        // Old data keys emptied by this batch go in the same transaction.
        outcome.deleted = try await connection.query(
            "SELECT deleted FROM vault.drop_rewrapped_data_keys(\(seq))").first?["deleted"].requiredInt() ?? 0
        return outcome
    }
}
