/// What is wrong with the access log, at the first entry where something is.
public struct AccessLogBreak: Sendable, Equatable, PIIVaultReportableError {
    /// The kind of damage.
    public enum Kind: String, Sendable, Equatable {
        /// An entry's content or hash differs from what was hashed when it was appended.
        case modified
        /// Sequence numbers have a gap: entries were removed.
        case missing
        /// An entry is chained to an entry other than the one before it: entries were moved.
        case reordered
        /// The chain is consistent but disagrees with an anchor kept elsewhere: it was rewritten or truncated.
        case rewritten
    }

    /// The first entry found bad (for a truncated tail, the first entry that is gone).
    public let seq: Int
    public let kind: Kind
    /// What exactly does not match; names entries and hashes, never values.
    public let detail: String

    public init(seq: Int, kind: Kind, detail: String) {
        self.seq = seq
        self.kind = kind
        self.detail = detail
    }

    /// `access log broken at entry N: KIND: DETAIL`.
    public var message: String { "access log broken at entry \(seq): \(kind.rawValue): \(detail)" }

    public var exitCode: PIIVaultExitCode { .failure }
}

/// The result of recomputing the chain.
public enum AccessLogVerdict: Sendable, Equatable {
    /// Every entry is unchanged and in place; `head` is the last entry (0 and zero hash for an empty log).
    case intact(entryCount: Int, head: AccessLogAnchor)
    /// The first damage found.
    case broken(AccessLogBreak)
}

/// Recomputes the access log's hash chain outside the database and reports the first bad entry.
///
/// The chain is `hash(n) = SHA-256(hash(n-1) || bytes(entry n))` with `hash(0)` = 32 zero bytes. Checked per entry,
/// in sequence order: the sequence number follows the previous one (else *missing*); `prev_hash` is the previous
/// entry's hash (else *reordered* when it is the hash of some other entry of the log, *modified* otherwise); `hash`
/// is the recomputed one (else *modified*). Someone able to rewrite the table can recompute every hash after a change
/// or cut the tail off; only an anchor kept outside the database (`--anchor SEQ:HASH`) catches that (*rewritten*).
public enum AccessLogVerifier {
    /// Verifies `entries` (any order; they are sorted by `seq`) and, if given, the anchor.
    public static func verify(_ entries: [AccessLogEntry], anchor: AccessLogAnchor? = nil) -> AccessLogVerdict {
        let entries = entries.sorted { $0.seq < $1.seq }
        // Stored hashes and prev_hashes by entry, to say where a misplaced entry belongs.
        var seqByHash: [[UInt8]: Int] = [:]
        var seqByPrevHash: [[UInt8]: Int] = [:]
        for entry in entries {
            seqByHash[entry.hash] = entry.seq
            seqByPrevHash[entry.prevHash] = entry.seq
        }
        var previousHash = AccessLogEntry.genesisHash
        var expectedSeq = 1
        var verifiedHashes: [Int: [UInt8]] = [:]
        for entry in entries {
            if entry.seq != expectedSeq {
                let detail = entry.seq > expectedSeq
                    ? (entry.seq - expectedSeq == 1
                        ? "entry \(expectedSeq) is not in the log (the next entry is \(entry.seq))"
                        : "entries \(expectedSeq) to \(entry.seq - 1) are not in the log (the next entry is \(entry.seq))")
                    : "entry \(entry.seq) appears twice"
                return .broken(AccessLogBreak(seq: expectedSeq, kind: entry.seq > expectedSeq ? .missing : .reordered,
                                              detail: detail))
            }
            if entry.prevHash != previousHash {
                let previousName = entry.seq == 1 ? "the chain's start (32 zero bytes)" : "entry \(entry.seq - 1)"
                if let linked = seqByHash[entry.prevHash], linked != entry.seq - 1 {
                    var detail = "it is chained after entry \(linked), not after \(previousName)"
                    if let belongs = seqByPrevHash[previousHash], belongs != entry.seq {
                        detail += "; the entry chained after \(previousName) is stored as entry \(belongs)"
                    }
                    return .broken(AccessLogBreak(seq: entry.seq, kind: .reordered, detail: detail))
                }
                return .broken(AccessLogBreak(
                    seq: entry.seq, kind: .modified,
                    detail: "its prev_hash \(short(entry.prevHash)) is not the hash of \(previousName) "
                        + "(\(short(previousHash))): \(previousName) was changed and re-hashed, or entries between were removed"))
            }
            let recomputed = entry.recomputedHash
            if recomputed != entry.hash {
                return .broken(AccessLogBreak(
                    seq: entry.seq, kind: .modified,
                    detail: "its stored hash \(short(entry.hash)) differs from the hash of its content "
                        + "\(short(recomputed)): a field was changed after it was appended"))
            }
            verifiedHashes[entry.seq] = recomputed
            previousHash = recomputed
            expectedSeq += 1
        }
        let head = AccessLogAnchor(seq: expectedSeq - 1, hash: previousHash)
        if let anchor {
            if anchor.seq > head.seq {
                return .broken(AccessLogBreak(
                    seq: head.seq + 1, kind: .rewritten,
                    detail: "the log ends at entry \(head.seq) but the anchor names entry \(anchor.seq): "
                        + "entries \(head.seq + 1) to \(anchor.seq) were removed from the tail"))
            }
            let hashAtAnchor = anchor.seq == 0 ? AccessLogEntry.genesisHash : verifiedHashes[anchor.seq]
            if hashAtAnchor != anchor.hash {
                return .broken(AccessLogBreak(
                    seq: anchor.seq, kind: .rewritten,
                    detail: "its hash \(short(hashAtAnchor ?? [])) differs from the anchor's \(short(anchor.hash)): "
                        + "the chain up to entry \(anchor.seq) was rewritten since the anchor was taken"))
            }
        }
        return .intact(entryCount: entries.count, head: head)
    }

    /// The first 8 bytes in hex: enough to tell hashes apart in a message.
    private static func short(_ hash: [UInt8]) -> String {
        hexString(Array(hash.prefix(8))) + "…"
    }
}
