import Foundation
@testable import PIIVault
import XCTest

/// The serialisation and the verifier without a database. The vectors were computed by Postgres
/// (`audit.entry_bytes`, `audit.append_entry` of migration 0007), so they pin Swift and SQL to the same bytes.
final class AccessLogVerifierTests: XCTestCase {
    private let first = AccessLogEntry(
        seq: 1, at: "2026-11-24T21:22:28.672985Z", dbUser: "postgres", osUser: "alice", clientHost: "host1",
        action: "unmask", reason: "case 1", subject: "user_id:u1", rowCount: 1, outcome: "ok",
        prevHash: AccessLogEntry.genesisHash,
        hash: bytesFromHex("917a03ac41d52a1b2fc01a5fa1413b6339cb9932b352a0fc14f676bad7653734")!)

    private var second: AccessLogEntry {
        AccessLogEntry(
            seq: 2, at: "2026-11-24T21:22:28.676704Z", dbUser: "postgres", osUser: "", clientHost: "",
            action: "unmask", reason: "case 2", subject: "x", rowCount: 0, outcome: "ok", prevHash: first.hash,
            hash: bytesFromHex("521e06c5a0ff2d5d842843f7eee9d27f481e53ca245bb601b1b7e9d67d2a8f0d")!)
    }

    func testCanonicalBytesMatchPostgres() {
        XCTAssertEqual(hexString(first.canonicalBytes), "00000001310000001b323032362d31312d32345432313a32323a32382e3637323938355a00000008706f73746772657300000005616c69636500000005686f73743100000006756e6d61736b000000066361736520310000000a757365725f69643a75310000000131000000026f6b")
        XCTAssertEqual(first.recomputedHash, first.hash)
        XCTAssertEqual(second.recomputedHash, second.hash)
    }

    /// A chain of `count` entries built the way append_entry builds it.
    private func chain(_ count: Int) -> [AccessLogEntry] {
        var entries: [AccessLogEntry] = []
        var previous = AccessLogEntry.genesisHash
        for seq in 1...count {
            var entry = AccessLogEntry(
                seq: seq, at: String(format: "2024-01-01T00:00:%02d.000000Z", seq), dbUser: "db", osUser: "os",
                clientHost: "h", action: "unmask", reason: "case \(seq)", subject: "user_id:u", rowCount: 1,
                outcome: "ok", prevHash: previous, hash: [])
            entry.hash = entry.recomputedHash
            previous = entry.hash
            entries.append(entry)
        }
        return entries
    }

    private func brokenAt(_ verdict: AccessLogVerdict) -> (Int, AccessLogBreak.Kind)? {
        if case .broken(let damage) = verdict { return (damage.seq, damage.kind) }
        return nil
    }

    func testIntactChainAndAnchors() {
        let entries = chain(10)
        let head = AccessLogAnchor(seq: 10, hash: entries[9].hash)
        XCTAssertEqual(AccessLogVerifier.verify(entries), .intact(entryCount: 10, head: head))
        XCTAssertEqual(AccessLogVerifier.verify(entries, anchor: head), .intact(entryCount: 10, head: head))
        XCTAssertEqual(AccessLogVerifier.verify([]),
                       .intact(entryCount: 0, head: AccessLogAnchor(seq: 0, hash: AccessLogEntry.genesisHash)))
        XCTAssertEqual(AccessLogAnchor(parsing: head.description), head)
        XCTAssertNil(AccessLogAnchor(parsing: "10:abc"))
        XCTAssertNil(AccessLogAnchor(parsing: "x:" + hexString(head.hash)))
    }

    func testEachKindOfDamage() {
        var modified = chain(10)
        modified[3].reason = "other"
        XCTAssertTrue(brokenAt(AccessLogVerifier.verify(modified))! == (4, .modified))

        var missing = chain(10)
        missing.remove(at: 0)
        XCTAssertTrue(brokenAt(AccessLogVerifier.verify(missing))! == (1, .missing))

        var swapped = chain(10)
        swapped[2].seq = 7
        swapped[6].seq = 3
        XCTAssertTrue(brokenAt(AccessLogVerifier.verify(swapped))! == (3, .reordered))

        let full = chain(10)
        let anchor = AccessLogAnchor(seq: 10, hash: full[9].hash)
        XCTAssertTrue(brokenAt(AccessLogVerifier.verify(Array(full.prefix(8)), anchor: anchor))! == (9, .rewritten))
        let other = AccessLogAnchor(seq: 5, hash: full[9].hash)
        XCTAssertTrue(brokenAt(AccessLogVerifier.verify(full, anchor: other))! == (5, .rewritten))
    }
}
