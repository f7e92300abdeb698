import Foundation
import CSodium

/// One entry of `audit.access_log`, as stored: who accessed what, why, and the entry's place in the hash chain.
///
/// It never holds a plaintext PII value: `subject` names a user id, tokens or a message id.
public struct AccessLogEntry: Sendable, Equatable {
    /// Position in the chain, 1, 2, 3, ... without gaps.
    public var seq: Int
    /// When the entry was appended, as UTC text `YYYY-MM-DDTHH:MM:SS.ffffffZ` (exactly 6 fractional digits): the form
    /// that is hashed, kept as text so that no date conversion can change it.
    public var at: String
    /// The database login that made the access (Postgres `session_user`).
    public var dbUser: String
    /// The operating-system user the client reported.
    public var osUser: String
    /// The host the client reported.
    public var clientHost: String
    /// What was done: `unmask`, `forget`, `lookup`, `rewrap`, ...
    public var action: String
    /// Why, as given by the caller (a case or request number).
    public var reason: String
    /// What was asked for: `user_id:...`, `tokens:...`, `message_id:...`.
    public var subject: String
    /// How many rows the access returned.
    public var rowCount: Int
    /// `ok`, `ok: DETAIL` (counts of what an erasure or a run did), `refused: WHY` (the database writes every refusal
    /// so), or another word and its detail (`not found: ...`, `unknown tokens: ...`: the access ran and found less);
    /// an access by a login outside piivault_compliance ends with `outsideComplianceMarker`.
    public var outcome: String

    /// How an access ended, read from the first word of its outcome.
    public enum OutcomeClass: String, Sendable {
        /// It ran: `ok`, `ok: 6 rows deleted`, `not found: ...`.
        case ok
        /// The database or the gate refused it: `refused: ...`.
        case refused
        /// It started and did not finish: `failed: ...`, `aborted: ...`.
        case failed
    }

    /// The outcome's class, from its first word (what comes before the first colon).
    public var outcomeClass: OutcomeClass {
        let word = outcome.prefix { $0 != ":" }.trimmingCharacters(in: .whitespaces)
        switch word {
        case "refused": return .refused
        case "failed", "aborted": return .failed
        default: return .ok
        }
    }
    /// The previous entry's hash (32 zero bytes for entry 1).
    public var prevHash: [UInt8]
    /// SHA-256(prevHash || canonicalBytes), as stored.
    public var hash: [UInt8]

    public init(
        seq: Int, at: String, dbUser: String, osUser: String, clientHost: String, action: String, reason: String,
        subject: String, rowCount: Int, outcome: String, prevHash: [UInt8], hash: [UInt8]
    ) {
        self.seq = seq
        self.at = at
        self.dbUser = dbUser
        self.osUser = osUser
        self.clientHost = clientHost
        self.action = action
        self.reason = reason
        self.subject = subject
        self.rowCount = rowCount
        self.outcome = outcome
        self.prevHash = prevHash
        self.hash = hash
    }

    /// What `audit.append_entry` adds to the outcome of an access by a superuser or by a login outside
    /// piivault_compliance (the database owner), which the database cannot refuse (migration 0017): followed by
    /// `superuser]` or `not a member]`.
    public static let outsideComplianceMarker = " [outside piivault_compliance: "

    /// An access the database could not refuse (see `outsideComplianceMarker`); refusals are never marked.
    public var isOutsideCompliance: Bool {
        !outcome.hasPrefix("refused") && outcome.contains(Self.outsideComplianceMarker)
    }

    /// The hash of the entry before the first one: 32 zero bytes.
    public static let genesisHash = [UInt8](repeating: 0, count: 32)

    /// bytes(entry), the serialisation the chain hashes (SECURITY.md, "The access log"): the fields seq, at, db_user, os_user,
    /// client_host, action, reason, subject, row_count, outcome in this order, each as UTF-8 text (numbers in
    /// decimal) prefixed by its byte length as a 4-byte big-endian integer. The length prefixes make it
    /// unambiguous: no two different entries give the same bytes.
    public var canonicalBytes: [UInt8] {
        var bytes: [UInt8] = []
        for field in [String(seq), at, dbUser, osUser, clientHost, action, reason, subject, String(rowCount), outcome] {
            let utf8 = Array(field.utf8)
            let length = UInt32(utf8.count)
            bytes += [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff)]
            bytes += utf8
        }
        return bytes
    }

    /// SHA-256(prevHash || canonicalBytes): what `hash` must be if the entry is unchanged.
    public var recomputedHash: [UInt8] {
        sha256(prevHash + canonicalBytes)
    }
}

/// A point of the chain kept outside the database (`piivault audit checkpoint` prints it as `SEQ:HASH`), against
/// which `audit verify --anchor` detects a chain rewritten or truncated since.
public struct AccessLogAnchor: Sendable, Equatable, CustomStringConvertible {
    /// The entry's sequence number; 0 is the empty log.
    public let seq: Int
    /// The entry's hash (32 bytes).
    public let hash: [UInt8]

    public init(seq: Int, hash: [UInt8]) {
        self.seq = seq
        self.hash = hash
    }

    /// Parses `SEQ:HASH` (HASH is 64 hex digits); nil if it is not that.
    public init?(parsing text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let seq = Int(parts[0]), seq >= 0, let hash = bytesFromHex(parts[1]), hash.count == 32
        else { return nil }
        self.init(seq: seq, hash: hash)
    }

    /// `SEQ:HASH` with the hash in lowercase hex.
    public var description: String { "\(seq):\(hexString(hash))" }
}
