@testable import PIIVault
import XCTest

/// The file source's set of line fingerprints answers exactly as `Set<UInt32>` would, across its merges.
final class FingerprintSetTests: XCTestCase {
    func testInsertAnswersAsASetDoesAcrossMerges() {
        var generator = SystemRandomNumberGenerator()
        var compact = FingerprintSet(expectedCount: 1_000)  // too small: the array must grow as well
        var reference = Set<UInt32>()
        // Values from a small range, so a quarter of the inserts repeat one, some across merges; and the extremes.
        var values = (0..<100_000).map { _ in UInt32.random(in: 0..<80_000, using: &generator) &* 53_681 }
        values += [0, .max, 0, .max]
        for value in values {
            XCTAssertEqual(compact.insert(value), reference.insert(value).inserted, "value \(value)")
        }
        XCTAssertEqual(compact.count, reference.count)
        for value in reference.prefix(1_000) { XCTAssertFalse(compact.insert(value)) }
    }
}
