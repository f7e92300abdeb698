import CSodium

/// The labels of the key-file formats (the contract in SECURITY.md).
public enum KeyFileLabel: String, Sendable, CaseIterable {
    case tokenKey = "PIIVAULT-TOKEN-KEY-1"
    /// A token key that carries its version and tombstone key (`TokenKeyPayload`).
    case tokenKeyVersioned = "PIIVAULT-TOKEN-KEY-2"
    case vaultPublicKey = "PIIVAULT-VAULT-PUBLIC-KEY-1"
    case vaultSecretKey = "PIIVAULT-VAULT-SECRET-KEY-1"
    case vaultEncryptedKey = "PIIVAULT-VAULT-ENCRYPTED-KEY-1"
    /// A token key wrapped by AWS KMS (`KMSKeyFile`): the payload of a `PIIVAULT-TOKEN-KEY-1` or `-2` file,
    /// encrypted by KMS.
    case tokenKeyKMS = "PIIVAULT-TOKEN-KEY-KMS-1"
    /// A vault secret key wrapped by AWS KMS: the payload of a `PIIVAULT-VAULT-SECRET-KEY-1` file, encrypted by KMS.
    case vaultSecretKeyKMS = "PIIVAULT-VAULT-SECRET-KEY-KMS-1"
}

/// The text format of key files: `#` comment lines, then one line `LABEL BASE64` (standard base64 with padding).
/// Blank lines and `\r\n` line ends are tolerated when reading, since people copy key files around by hand.
enum KeyFile {
    /// The file's text: comments, then the key line. The result holds the key in base64: the caller wipes it.
    static func render(label: KeyFileLabel, comments: [String], payload: UnsafeRawBufferPointer) -> [UInt8] {
        var text: [UInt8] = []
        for comment in comments { text += Array("# \(comment)\n".utf8) }
        text += Array("\(label.rawValue) ".utf8)
        // Encode straight into the output, so that no String copy of secret base64 is left behind.
        let variant = Int32(sodium_base64_VARIANT_ORIGINAL)
        let encodedLength = sodium_base64_encoded_len(payload.count, variant)
        var encoded = [CChar](repeating: 0, count: encodedLength)
        _ = sodium_bin2base64(
            &encoded, encodedLength, payload.baseAddress?.assumingMemoryBound(to: UInt8.self), payload.count, variant)
        for c in encoded.dropLast() { text.append(UInt8(bitPattern: c)) }
        sodium_memzero(&encoded, encoded.count)
        text.append(UInt8(ascii: "\n"))
        return text
    }

    /// Parses a key file's text and decodes its payload into guarded memory.
    static func parse(_ text: [UInt8], file: String, expected: [KeyFileLabel]) throws -> (KeyFileLabel, SecretBytes) {
        var keyLines: [ArraySlice<UInt8>] = []
        for var line in text.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true) {
            while let last = line.last, last == UInt8(ascii: "\r") || last == UInt8(ascii: " ") || last == 9 {
                line = line.dropLast()
            }
            while let first = line.first, first == UInt8(ascii: " ") || first == 9 { line = line.dropFirst() }
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            keyLines.append(line)
        }
        guard let line = keyLines.first else { throw KeyFileError.truncated(file: file) }
        guard keyLines.count == 1 else { throw KeyFileError.extraContent(file: file) }

        let separator = line.firstIndex(where: { $0 == UInt8(ascii: " ") || $0 == 9 })
        let labelBytes = separator.map { line[line.startIndex..<$0] } ?? line
        let label = String(decoding: labelBytes, as: UTF8.self)
        guard let known = expected.first(where: { $0.rawValue == label }) else {
            // A cut-off label line ("PIIVAULT-TOK") is a truncated file, not a foreign one.
            if separator == nil, expected.contains(where: { $0.rawValue.hasPrefix(label) }) {
                throw KeyFileError.truncated(file: file)
            }
            // Show the label only when it looks like one: never echo what might be key material.
            let looksLikeLabel = label.utf8.count <= 64 && label.hasPrefix("PIIVAULT-")
                && label.utf8.allSatisfy { ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
            throw KeyFileError.wrongLabel(
                file: file, expected: expected.map(\.rawValue).joined(separator: " or "),
                found: looksLikeLabel ? label : nil)
        }
        guard let separator else { throw KeyFileError.truncated(file: file) }
        var encoded = Array(line[(separator + 1)...])
        defer { sodium_memzero(&encoded, encoded.count) }
        while let first = encoded.first, first == UInt8(ascii: " ") || first == 9 { encoded.removeFirst() }
        return (known, try decodeBase64(encoded, file: file))
    }

    /// Decodes standard base64 with padding into guarded memory (the caller wipes `encoded`).
    static func decodeBase64(_ encoded: [UInt8], file: String) throws -> SecretBytes {
        guard !encoded.isEmpty else { throw KeyFileError.truncated(file: file) }
        for c in encoded {
            let ok = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39)
                || c == UInt8(ascii: "+") || c == UInt8(ascii: "/") || c == UInt8(ascii: "=")
            guard ok else { throw KeyFileError.badBase64(file: file) }
        }
        // Every character is base64 but the padding is incomplete: the line was cut short.
        guard encoded.count % 4 == 0 else { throw KeyFileError.truncated(file: file) }

        let capacity = encoded.count / 4 * 3
        var decodedLength = 0
        var ok = true
        let buffer = SecretBytes(count: capacity) { out in
            ok = encoded.withUnsafeBufferPointer { input in
                sodium_base642bin(
                    out.baseAddress!.assumingMemoryBound(to: UInt8.self), capacity,
                    UnsafeRawPointer(input.baseAddress!).assumingMemoryBound(to: CChar.self), input.count,
                    nil, &decodedLength, nil, Int32(sodium_base64_VARIANT_ORIGINAL)) == 0
            }
        }
        guard ok else { throw KeyFileError.badBase64(file: file) }
        if decodedLength == capacity { return buffer }
        return buffer.withUnsafeBytes { SecretBytes(copying: UnsafeRawBufferPointer(rebasing: $0[0..<decodedLength])) }
    }

    /// Standard base64 of `payload`, as bytes the caller wipes (no String copy of secret base64).
    static func encodeBase64(_ payload: UnsafeRawBufferPointer) -> [UInt8] {
        let variant = Int32(sodium_base64_VARIANT_ORIGINAL)
        let encodedLength = sodium_base64_encoded_len(payload.count, variant)
        var encoded = [CChar](repeating: 0, count: encodedLength)
        _ = sodium_bin2base64(
            &encoded, encodedLength, payload.baseAddress?.assumingMemoryBound(to: UInt8.self), payload.count, variant)
        let bytes = encoded.dropLast().map { UInt8(bitPattern: $0) }
        sodium_memzero(&encoded, encoded.count)
        return bytes
    }
}
