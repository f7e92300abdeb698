@testable import PIIVault
import XCTest

/// The file source's set of line fingerprints answers exactly as `Set<UInt64>` of their low 48 bits would, across its
/// merges.
final class FingerprintSetTests: XCTestCase {
    func testInsertAnswersAsASetDoesAcrossMerges() {
        var generator = SystemRandomNumberGenerator()
        var compact = FingerprintSet(expectedCount: 1_000)  // too small: the array must grow as well
        var reference = Set<UInt64>()
        // Values from a small range, so a quarter of the inserts repeat one, some across merges; spread over the
        // buckets, and several with the same low 32 bits in different buckets; and the extremes.
        var values: [UInt64] = (0..<100_000).map { _ in
            let small = UInt64.random(in: 0..<80_000, using: &generator)
            return (small % 7) << 45 | (small &* 2_654_435_761) & 0x1fff_ffff_ffff
        }
        values += [0, 0xffff_ffff_ffff, 0, 0xffff_ffff_ffff, 1 << 32, 1, 0xffff_0000_0000, 0xffff]
        for value in values {
            XCTAssertEqual(compact.insert(value), reference.insert(value).inserted, "value \(value)")
        }
        XCTAssertEqual(compact.count, reference.count)
        for value in reference.prefix(1_000) { XCTAssertFalse(compact.insert(value)) }
    }

    func testFingerprintsDifferingOnlyAbove32BitsAreDifferent() {
        var set = FingerprintSet()
        // Enough of them to be merged into the sorted buckets and looked up there.
        for bucket in 0..<UInt64(40_000) { XCTAssertTrue(set.insert(bucket << 32 | 0xdead_beef), "bucket \(bucket)") }
        for bucket in 0..<UInt64(40_000) { XCTAssertFalse(set.insert(bucket << 32 | 0xdead_beef), "bucket \(bucket)") }
        XCTAssertEqual(set.count, 40_000)
        // Only 48 bits count: the top 16 are ignored.
        XCTAssertFalse(set.insert(0xabcd_0000_0000_0000 | 7 << 32 | 0xdead_beef))
    }
}
