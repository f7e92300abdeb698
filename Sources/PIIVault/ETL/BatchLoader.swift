import Foundation
import Postgres

/// What loading one batch did.
struct LoadOutcome: Sendable {
    var loaded = 0
    var duplicates = 0
    var quarantined = 0
    var valuesSealed = 0
    /// Logins of forgotten users, not loaded.
    var suppressed = 0
    /// Tokens whose values this batch sealed (now in the vault once it committed).
    var tokens: [String] = []

    mutating func add(_ other: LoadOutcome) {
        loaded += other.loaded
        duplicates += other.duplicates
        quarantined += other.quarantined
        valuesSealed += other.valuesSealed
        suppressed += other.suppressed
        tokens += other.tokens
    }
}

/// A batch encoded for `COPY ... FROM STDIN` (text format): logins, sealed values and quarantined messages.
struct EncodedBatch: Sendable {
    var logins: CopyTextWriter
    var secrets: CopyTextWriter
    var quarantine: CopyTextWriter
    /// Tokens whose values the batch seals.
    var tokens: [String] = []
    /// Logins of forgotten users in the batch (not loaded).
    var suppressed = 0
    /// The keyed user-id hashes of the batch's logins: the insert checks them against the tombstones under the lock
    /// when something was erased since the run's look-ups.
    var subjectHashes: [String] = []
    /// The distinct tokens the batch's logins reference and it does not seal itself: each was found in the vault by
    /// the run's look-ups, and the insert checks it is still there when something was erased since. (A value the
    /// batch seals is there once its insert has run: inserted, or already present under the lock.)
    var referencedTokens: [String] {
        var others = referenced
        for token in tokens { others.remove(DigestKey(token)) }
        return others.map(\.text)
    }
    private var referenced = Set<DigestKey>()
    /// True when the run's look-ups alone do not vouch for the batch, so the insert must check its tombstones and
    /// references even when nothing was erased: part of a batch split around a refused row, whose values may have
    /// been sealed by a message that was then quarantined.
    let mustRecheck: Bool

    /// `etlRunID` is the run loading the batch: its logins go to that run's partition of user_logins.
    init(_ batch: [PreparedMessage], dataKeyID: Int, etlRunID: Int, mustRecheck: Bool = false) {
        self.mustRecheck = mustRecheck
        // Each buffer is reserved at its final size (but for escapes, which are rare): grown by doubling, a batch's
        // COPY data took up to twice its size, and was copied at each step.
        logins = CopyTextWriter(reservingCapacity: batch.reduce(0) { size, message in
            guard case .login(let login, _) = message.content else { return size }
            return size + Self.encodedSize(of: login)
        })
        secrets = CopyTextWriter()
        quarantine = CopyTextWriter()
        referenced.reserveCapacity(2 * batch.count)
        var sealedValues: [PreparedSecret] = []
        for message in batch {
            switch message.content {
            case .login(let login, let sealed):
                subjectHashes.append(login.subjectHash)
                referenced.insert(DigestKey(login.ipToken))
                referenced.insert(DigestKey(login.deviceToken))
                logins.append(login.messageID)
                logins.append(login.userID)
                logins.append(login.deviceType)
                logins.append(login.ipToken)
                logins.append(login.deviceToken)
                logins.append(login.locale)
                logins.append(login.appVersion)
                logins.append(login.appVersionText)
                logins.append(login.createDate)
                logins.append(login.subjectHash)
                logins.append(etlRunID)
                logins.endRow()
                sealedValues += sealed
            case .quarantine(let entry):
                quarantine.append(entry.messageID)
                quarantine.append(entry.reason)
                quarantine.append(bytes: entry.sealedBody)
                quarantine.endRow()
            case .suppressed:
                suppressed += 1
            }
        }
        secrets = CopyTextWriter(reservingCapacity: sealedValues.reduce(0) { $0 + Self.encodedSize(of: $1) })
        // In token order: two ETL processes whose batches seal some of the same values then wait on each other's
        // uncommitted rows of vault.secrets' primary key in one order, never in a cycle (a deadlock, 40P01).
        for index in tokenOrder(sealedValues.map(\.token)) {
            let secret = sealedValues[index]
            tokens.append(secret.token)
            secrets.append(secret.token)
            secrets.append(secret.field.rawValue)
            secrets.append(dataKeyID)
            secrets.append(bytes: secret.sealed)
            secrets.endRow()
        }
    }
}

extension EncodedBatch {
    /// The bytes `login`'s COPY line takes, escapes aside: its values, at most 20 digits for each integer (the app
    /// version, the run id), 2 bytes for each NULL, and the tabs and newline between and after them.
    static func encodedSize(of login: PreparedLogin) -> Int {
        login.messageID.utf8.count + login.userID.utf8.count + login.deviceType.utf8.count + login.ipToken.utf8.count
            + login.deviceToken.utf8.count + (login.locale?.utf8.count ?? 2) + 20
            + (login.appVersionText?.utf8.count ?? 2) + login.createDate.utf8.count + login.subjectHash.utf8.count + 20 + 11
    }

    /// The bytes `secret`'s COPY line takes: token, field, at most 20 digits for the data key id, the sealed bytes in
    /// hex after `\\x`, and the tabs and newline.
    static func encodedSize(of secret: PreparedSecret) -> Int {
        secret.token.utf8.count + secret.field.rawValue.utf8.count + 20 + 3 + 2 * secret.sealed.count + 4
    }
}

/// Loads prepared batches, one transaction each, through the run's ``ETLStore``. One bad row never blocks a batch:
/// on a row-specific database error the batch is split in halves until the offending message is alone; that message
/// is then quarantined and the rest loads.
struct BatchLoader: Sendable {
    let store: any ETLWriteSession
    /// The run loading the batches (``EncodedBatch``).
    let etlRunID: Int

    /// Loads `batch`, whose values were sealed with `quarantiner`'s data key.
    func load(_ batch: [PreparedMessage], quarantiner: Quarantiner) async throws -> LoadOutcome {
        try await load(batch, encoded: EncodedBatch(batch, dataKeyID: quarantiner.dataKeyID, etlRunID: etlRunID),
                       quarantiner: quarantiner)
    }

    /// Loads `batch`, already encoded as `encoded`.
    func load(_ batch: [PreparedMessage], encoded: EncodedBatch, quarantiner: Quarantiner) async throws -> LoadOutcome {
        do {
            return try await insert(encoded, dataKeyID: quarantiner.dataKeyID)
        } catch let error as PostgresError where error.isRowSpecific {
            if batch.count == 1, case .login = batch[0].content {
                let reason = "rejected by the database: \(error.sqlState ?? "unknown")"
                    + (error.column.map { " in column \($0)" } ?? "")
                let entry = try quarantiner.quarantine(batch[0].source, reason: reason)
                return try await insert(EncodedBatch([entry], dataKeyID: quarantiner.dataKeyID, etlRunID: etlRunID),
                                        dataKeyID: quarantiner.dataKeyID)
            }
            if batch.count == 1 { throw error }
            // Each half carries every value its logins reference that the batch seals, so a half loads even when the
            // message that sealed a value they share is quarantined; a value both halves carry is inserted once (the
            // second finds it present). Each half still checks its other references under the lock whatever the
            // erasure count: the run's look-ups vouched for the whole batch, not for a part of it.
            var outcome = LoadOutcome()
            for half in Self.halves(of: batch) {
                let encoded = EncodedBatch(half, dataKeyID: quarantiner.dataKeyID, etlRunID: etlRunID, mustRecheck: true)
                outcome.add(try await load(half, encoded: encoded, quarantiner: quarantiner))
            }
            outcome.tokens = Array(Set(outcome.tokens))  // a token both halves sealed counts once
            return outcome
        }
    }

    /// `batch` in two halves, each login carrying, besides its own sealed values, those of the tokens it references
    /// that `batch` seals with a message of the other half (a value is sealed once a batch, with the first message
    /// that has it), once a half.
    static func halves(of batch: [PreparedMessage]) -> [[PreparedMessage]] {
        var sealed: [String: PreparedSecret] = [:]
        for message in batch {
            if case .login(_, let secrets) = message.content { for secret in secrets { sealed[secret.token] = secret } }
        }
        let middle = batch.count / 2
        return [Array(batch[..<middle]), Array(batch[middle...])].map { half in
            var half = half
            var carried = Set<String>()
            for message in half {
                if case .login(_, let secrets) = message.content { carried.formUnion(secrets.map(\.token)) }
            }
            for index in half.indices {
                guard case .login(let login, var secrets) = half[index].content else { continue }
                let missing = [login.ipToken, login.deviceToken].filter { !carried.contains($0) && sealed[$0] != nil }
                guard !missing.isEmpty else { continue }
                for token in missing where carried.insert(token).inserted { secrets.append(sealed[token]!) }
                half[index].content = .login(login, secrets: secrets)
            }
            return half
        }
    }

    /// One transaction, tried again (at most twice more) when the server ended it to break a deadlock or a
    /// serialization conflict with another session (an erasure, another ETL process): it rolled back whole, so
    /// trying again loads nothing twice.
    private func insert(_ encoded: EncodedBatch, dataKeyID: Int) async throws -> LoadOutcome {
        var attempt = 1
        while true {
            do {
                return try await store.insert(encoded, dataKeyID: dataKeyID)
            } catch let error as PostgresError where error.isTransientConflict && attempt < 3 {
                attempt += 1
            }
        }
    }
}

/// The indices of `tokens` in the order `<` puts them (tokens are ASCII, where that is the bytes' order). Sorted on
/// each token's first 16 bytes as two integers (no reference counting while sorting: a batch sorts thousands), and on
/// the whole token only where those are equal.
func tokenOrder(_ tokens: [String]) -> [Int] {
    struct Key {
        var high: UInt64 = 0
        var low: UInt64 = 0
        var index: Int
    }
    var keys = tokens.enumerated().map { index, token in
        var token = token
        return token.withUTF8 { utf8 in
            var key = Key(index: index)
            for position in 0..<16 {
                let byte = UInt64(position < utf8.count ? utf8[position] : 0)
                if position < 8 { key.high |= byte << (56 - 8 * position) } else { key.low |= byte << (120 - 8 * position) }
            }
            return key
        }
    }
    keys.sort { a, b in
        if a.high != b.high { return a.high < b.high }
        if a.low != b.low { return a.low < b.low }
        return tokenPrecedes(tokens[a.index], tokens[b.index])
    }
    return keys.map(\.index)
}

/// `a < b` for tokens (ASCII, where String's order is the bytes' order), by memcmp.
func tokenPrecedes(_ a: String, _ b: String) -> Bool {
    var a = a, b = b
    return a.withUTF8 { x in
        b.withUTF8 { y in
            let common = min(x.count, y.count)
            let order = common == 0 ? 0 : memcmp(x.baseAddress!, y.baseAddress!, common)
            return order != 0 ? order < 0 : x.count < y.count
        }
    }
}
