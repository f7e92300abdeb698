import Foundation
import PIIVault
import TestSupport
import XCTest

/// A fresh empty folder, removed after the test.
func makeTemporaryDirectory(_ test: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("piivault-crypto-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

/// Bytes as lowercase hex.
func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// A token key from fixed bytes.
func fixedTokenKey(_ byte: UInt8 = 0x42) throws -> TokenKey {
    var bytes = (0..<32).map { UInt8($0) &+ byte }
    return try TokenKey(bytes: SecretBytes(consuming: &bytes))
}

/// A vault key pair from fixed secret bytes.
func fixedVaultKey(_ byte: UInt8 = 0x07) throws -> VaultSecretKey {
    var bytes = (0..<32).map { UInt8($0) &* 3 &+ byte }
    return try VaultSecretKey(bytes: SecretBytes(consuming: &bytes))
}

/// Asserts that `body` throws exactly `expected`.
func XCTAssertThrowsError<E: Error & Equatable, T>(
    _ body: @autoclosure () throws -> T, equals expected: E, file: StaticString = #filePath, line: UInt = #line
) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual(error as? E, expected, "got \(error)", file: file, line: line)
    }
}
