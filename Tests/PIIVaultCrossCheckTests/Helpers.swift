import Foundation
import PIIVault
import TestSupport
import XCTest

/// Bytes as lowercase hex.
func hex(_ bytes: some Sequence<UInt8>) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

/// Hex to bytes.
func unhex(_ string: String) -> [UInt8] {
    var out: [UInt8] = []
    var chars = Array(string.utf8)[...]
    while chars.count >= 2 {
        out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return out
}

/// Runs `Tests/crosscheck/crosscheck.py COMMAND` with a JSON request and returns its JSON answer. Fails (never skips)
/// when python3 or PyNaCl is missing.
func crosscheck(_ command: String, _ request: [String: Any]) throws -> [String: Any] {
    let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
    let input = try JSONSerialization.data(withJSONObject: request)
    let result = try runProcess("python3", [script, command], input: input)
    if result.status == 3 {
        throw TestSetupError("PyNaCl is missing for the cross-checks: pip install pynacl (the Makefile installs it)")
    }
    guard result.status == 0 else {
        throw TestSetupError("crosscheck.py \(command) failed with status \(result.status): \(result.stderr)")
    }
    guard let answer = try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any] else {
        throw TestSetupError("crosscheck.py \(command) did not answer a JSON object")
    }
    return answer
}

/// A token key from fixed bytes (the same bytes as PIIVaultTests' helper).
func fixedTokenKey(_ byte: UInt8 = 0x42) throws -> TokenKey {
    var bytes = (0..<32).map { UInt8($0) &+ byte }
    return try TokenKey(bytes: SecretBytes(consuming: &bytes))
}

/// A vault key pair from fixed secret bytes.
func fixedVaultKey(_ byte: UInt8 = 0x07) throws -> VaultSecretKey {
    var bytes = (0..<32).map { UInt8($0) &* 3 &+ byte }
    return try VaultSecretKey(bytes: SecretBytes(consuming: &bytes))
}
