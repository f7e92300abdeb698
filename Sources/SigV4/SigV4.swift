import CSodium
import Foundation

/// AWS Signature Version 4 request signing. Pure functions, no I/O.
///
/// Modelled on soto-core's signer: every stage (canonical request, string to sign, signing key, signature) is its own
/// public function so that each can be checked against the AWS test suite, and the clock is a parameter.
public enum SigV4 {
    /// The only algorithm this module implements.
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// The hex SHA-256 of an empty payload.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    // MARK: Stage 1: canonical request

    /// A canonical request and the list of headers it signs.
    public struct CanonicalRequest: Sendable, Equatable {
        /// The canonical request text (hashed into the string to sign).
        public let text: String
        /// Lowercased, sorted header names joined with `;` (the `SignedHeaders` of the Authorization header).
        public let signedHeaders: String
    }

    /// Builds the canonical request.
    ///
    /// - Parameters:
    ///   - method: the HTTP method, e.g. `POST`.
    ///   - path: the path as written on the request line (percent-encoded as sent). It is normalised (`.`/`..`
    ///     segments removed, repeated slashes collapsed) and every segment URI-encoded, so an already encoded path
    ///     is encoded a second time, which is what AWS expects from every service except S3.
    ///   - query: the raw query string without `?` (may be empty).
    ///   - headers: exactly the headers to sign, in any order, duplicates allowed; must include `host` and
    ///     `x-amz-date` (``sign(method:url:headers:payloadHash:credentials:region:service:date:)`` adds them).
    ///   - payloadHash: lowercase hex SHA-256 of the body.
    public static func canonicalRequest(
        method: String, path: String, query: String, headers: [(name: String, value: String)], payloadHash: String
    ) -> CanonicalRequest {
        let (canonicalHeaders, signedHeaders) = canonicalHeaderBlock(headers)
        let text = [
            method.uppercased(),
            canonicalURI(path),
            canonicalQueryString(query),
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")
        return CanonicalRequest(text: text, signedHeaders: signedHeaders)
    }

    /// The canonical URI: the normalised path with each segment URI-encoded (see ``canonicalRequest``).
    public static func canonicalURI(_ path: String) -> String {
        var segments: [Substring] = []
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        for part in parts {
            switch part {
            case ".": continue
            case "..": if !segments.isEmpty { segments.removeLast() }
            default: segments.append(part)
            }
        }
        // A trailing slash is kept (the suite expects `/example/` for `//example//`) unless nothing remains.
        let keepsTrailingSlash = path.hasSuffix("/") && !segments.isEmpty
            && !(parts.last == "." || parts.last == "..")
        var result = "/" + segments.map { uriEncode(String($0)) }.joined(separator: "/")
        if keepsTrailingSlash { result += "/" }
        return result
    }

    /// The canonical query string: each name and value decoded, then URI-encoded, sorted by name then value.
    public static func canonicalQueryString(_ query: String) -> String {
        guard !query.isEmpty else { return "" }
        var pairs: [(String, String)] = []
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring, value: Substring
            if let eq = item.firstIndex(of: "=") {
                name = item[..<eq]
                value = item[item.index(after: eq)...]
            } else {
                name = item
                value = ""
            }
            pairs.append((uriEncode(percentDecode(name)), uriEncode(percentDecode(value))))
        }
        // Byte order of the encoded strings, as AWS specifies (not locale order).
        pairs.sort { lhs, rhs in
            if lhs.0 != rhs.0 { return Array(lhs.0.utf8).lexicographicallyPrecedes(rhs.0.utf8) }
            return Array(lhs.1.utf8).lexicographicallyPrecedes(rhs.1.utf8)
        }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// The canonical header block (each `name:value` line followed by a newline) and the signed header list.
    ///
    /// Names are lowercased; values trimmed with inner runs of whitespace (including the line breaks of folded
    /// values) collapsed to one space; duplicate names joined with `,` in the order given.
    public static func canonicalHeaderBlock(_ headers: [(name: String, value: String)]) -> (block: String, signed: String) {
        var merged: [String: [String]] = [:]
        for header in headers {
            merged[header.name.lowercased(), default: []].append(normaliseHeaderValue(header.value))
        }
        let names = merged.keys.sorted { Array($0.utf8).lexicographicallyPrecedes($1.utf8) }
        var block = ""
        for name in names {
            block += name + ":" + merged[name]!.joined(separator: ",") + "\n"
        }
        return (block, names.joined(separator: ";"))
    }

    private static func normaliseHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            .joined(separator: " ")
    }

    // MARK: Stage 2: string to sign

    /// The credential scope: `YYYYMMDD/region/service/aws4_request`.
    public static func credentialScope(date: Date, region: String, service: String) -> String {
        "\(dateStamp(date))/\(region)/\(service)/aws4_request"
    }

    /// The string to sign for a canonical request.
    public static func stringToSign(canonicalRequest: String, date: Date, region: String, service: String) -> String {
        [
            algorithm,
            amzDate(date),
            credentialScope(date: date, region: region, service: service),
            hexSHA256(Array(canonicalRequest.utf8)),
        ].joined(separator: "\n")
    }

    // MARK: Stage 3: signing key

    /// The derived signing key: HMAC chain over date, region, service and `aws4_request`.
    public static func signingKey(secretAccessKey: String, date: Date, region: String, service: String) -> [UInt8] {
        var key = hmacSHA256(key: Array(("AWS4" + secretAccessKey).utf8), message: Array(dateStamp(date).utf8))
        key = hmacSHA256(key: key, message: Array(region.utf8))
        key = hmacSHA256(key: key, message: Array(service.utf8))
        return hmacSHA256(key: key, message: Array("aws4_request".utf8))
    }

    // MARK: Stage 4: signature and Authorization header

    /// The hex signature of a string to sign.
    public static func signature(signingKey: [UInt8], stringToSign: String) -> String {
        hex(hmacSHA256(key: signingKey, message: Array(stringToSign.utf8)))
    }

    /// The `Authorization` header value.
    public static func authorizationHeader(
        accessKeyId: String, date: Date, region: String, service: String, signedHeaders: String, signature: String
    ) -> String {
        "\(algorithm) Credential=\(accessKeyId)/\(credentialScope(date: date, region: region, service: service)), "
            + "SignedHeaders=\(signedHeaders), Signature=\(signature)"
    }

    // MARK: All stages

    /// Signs a request: returns the headers to send, i.e. the given ones plus `host` (unless given), `x-amz-date`,
    /// `x-amz-security-token` (for temporary credentials) and `authorization`.
    ///
    /// Exactly the given headers plus those added here are signed, so a proxy that adds headers later does not break
    /// the signature.
    public static func sign(
        method: String, url: URL, headers: [(name: String, value: String)], payloadHash: String,
        credentials: Credentials, region: String, service: String, date: Date
    ) -> [(name: String, value: String)] {
        var signed = headers.filter {
            let name = $0.name.lowercased()
            return name != "authorization" && name != "x-amz-date"
                && !(credentials.sessionToken != nil && name == "x-amz-security-token")
        }
        if !signed.contains(where: { $0.name.lowercased() == "host" }) {
            signed.append((name: "host", value: hostHeader(url)))
        }
        signed.append((name: "x-amz-date", value: amzDate(date)))
        if let token = credentials.sessionToken {
            signed.append((name: "x-amz-security-token", value: token))
        }
        let components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        let path = components?.percentEncodedPath ?? "/"
        let canonical = canonicalRequest(
            method: method, path: path.isEmpty ? "/" : path, query: components?.percentEncodedQuery ?? "",
            headers: signed, payloadHash: payloadHash)
        let toSign = stringToSign(canonicalRequest: canonical.text, date: date, region: region, service: service)
        let key = signingKey(secretAccessKey: credentials.secretAccessKey, date: date, region: region, service: service)
        let authorization = authorizationHeader(
            accessKeyId: credentials.accessKeyId, date: date, region: region, service: service,
            signedHeaders: canonical.signedHeaders, signature: signature(signingKey: key, stringToSign: toSign))
        signed.append((name: "authorization", value: authorization))
        return signed
    }

    /// The `Host` header for a URL: host, plus the port when it is not the scheme's default.
    public static func hostHeader(_ url: URL) -> String {
        let host = url.host ?? ""
        let bracketed = host.contains(":") ? "[\(host)]" : host
        guard let port = url.port else { return bracketed }
        let scheme = url.scheme?.lowercased()
        if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) { return bracketed }
        return "\(bracketed):\(port)"
    }

    // MARK: Encoding and dates

    /// URI-encodes every byte except the unreserved characters `A-Z a-z 0-9 - . _ ~`, with uppercase hex.
    public static func uriEncode(_ string: String) -> String {
        var out = ""
        out.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                 UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(hexDigits[Int(byte >> 4)]) + String(hexDigits[Int(byte & 0x0f)])
            }
        }
        return out
    }

    private static let hexDigits: [Character] = Array("0123456789ABCDEF")

    /// Decodes `%XX` escapes; a malformed escape is kept as written (so that it is re-encoded, not lost).
    static func percentDecode(_ string: Substring) -> String {
        var bytes: [UInt8] = []
        let utf8 = Array(string.utf8)
        var index = 0
        while index < utf8.count {
            if utf8[index] == UInt8(ascii: "%"), index + 2 < utf8.count,
               let high = hexValue(utf8[index + 1]), let low = hexValue(utf8[index + 2]) {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(utf8[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// `YYYYMMDD'T'HHMMSS'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        let parts = utcParts(date)
        return String(format: "%04d%02d%02dT%02d%02d%02dZ", parts.year, parts.month, parts.day,
                      parts.hour, parts.minute, parts.second)
    }

    /// `YYYYMMDD` in UTC.
    public static func dateStamp(_ date: Date) -> String {
        let parts = utcParts(date)
        return String(format: "%04d%02d%02d", parts.year, parts.month, parts.day)
    }

    /// Parses `YYYYMMDD'T'HHMMSS'Z'` (the test suite's and botocore's format).
    public static func parseAmzDate(_ text: String) -> Date? {
        let digits = Array(text.utf8)
        guard digits.count == 16, digits[8] == UInt8(ascii: "T"), digits[15] == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? { Int(String(decoding: digits[range], as: UTF8.self)) }
        guard let year = number(0..<4), let month = number(4..<6), let day = number(6..<8),
              let hour = number(9..<11), let minute = number(11..<13), let second = number(13..<15),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + hour * 3_600 + minute * 60 + second))
    }

    // Civil-date arithmetic (Howard Hinnant's algorithms) so that no Calendar or locale can change the result.
    private static func utcParts(_ date: Date) -> (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day, secondOfDay / 3_600, secondOfDay % 3_600 / 60, secondOfDay % 60)
    }

    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    // MARK: Hashing (libsodium)

    /// SHA-256 of `bytes`.
    public static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        _ = bytes.withUnsafeBufferPointer { input in
            crypto_hash_sha256(&digest, input.baseAddress, UInt64(input.count))
        }
        return digest
    }

    /// Lowercase hex SHA-256 of `bytes` (the payload hash and the canonical request hash).
    public static func hexSHA256(_ bytes: [UInt8]) -> String { hex(sha256(bytes)) }

    /// HMAC-SHA-256. libsodium's `crypto_auth_hmacsha256_init` takes keys of any length.
    public static func hmacSHA256(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var state = crypto_auth_hmacsha256_state()
        var mac = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        // The C function wants a non-null pointer even for an empty key.
        let keyStorage = key.isEmpty ? [0] : key
        keyStorage.withUnsafeBufferPointer { keyBuffer in
            _ = crypto_auth_hmacsha256_init(&state, keyBuffer.baseAddress!, key.count)
        }
        message.withUnsafeBufferPointer { messageBuffer in
            _ = crypto_auth_hmacsha256_update(&state, messageBuffer.baseAddress, UInt64(messageBuffer.count))
        }
        _ = crypto_auth_hmacsha256_final(&state, &mac)
        return mac
    }

    /// Lowercase hex.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension SigV4 {
    /// AWS credentials. `description` never shows the secret key or the session token.
    public struct Credentials: Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        /// The access key id (not secret; it appears in every Authorization header).
        public let accessKeyId: String
        /// The secret access key.
        public let secretAccessKey: String
        /// The session token of temporary credentials, sent and signed as `X-Amz-Security-Token`.
        public let sessionToken: String?

        /// Creates credentials.
        public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil) {
            self.accessKeyId = accessKeyId
            self.secretAccessKey = secretAccessKey
            self.sessionToken = sessionToken
        }

        /// Redacted: only the access key id is shown.
        public var description: String {
            "Credentials(accessKeyId: \(accessKeyId), secretAccessKey: <redacted>\(sessionToken == nil ? "" : ", sessionToken: <redacted>"))"
        }

        /// Redacted, like ``description``.
        public var debugDescription: String { description }
    }
}
