import AWS
import CSodium
import Foundation
import Logging
import SigV4

/// The answer of `Encrypt`.
public struct KMSEncryptResult: Sendable {
    /// The ARN of the KMS key that encrypted.
    public let keyID: String
    /// The ciphertext (opaque to anyone but KMS).
    public let ciphertextBlob: [UInt8]
}

/// The answer of `Decrypt`. The caller owns `plaintextBase64` and wipes it.
public struct KMSDecryptResult: Sendable {
    /// The ARN of the KMS key that decrypted.
    public let keyID: String
    /// The plaintext as KMS sent it: standard base64, the characters only (not decoded here, so that the caller can
    /// decode straight into guarded memory).
    public var plaintextBase64: [UInt8]
}

/// AWS KMS client for what piivault needs: `Encrypt` and `Decrypt` with an encryption context, in the JSON 1.1
/// protocol (`X-Amz-Target: TrentService.<Action>`, `Content-Type: application/x-amz-json-1.1`, botocore's kms
/// model), signed with SigV4 for the service `kms`, with retries of throttled, 5xx and unreachable calls. Refusals
/// (access denied, another key, a ciphertext or context that does not match, a disabled key) are never retried.
public struct KMSClient: Sendable {
    /// The resolved settings.
    public let configuration: KMSConfiguration
    private let transport: any HTTPTransport
    private let logger: Logger
    private let now: @Sendable () -> Date

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - transport: how requests are sent (default: the configuration's transport; a fake in unit tests).
    ///   - logger: where calls and retries are logged; never with credentials, plaintext or ciphertext.
    ///   - now: the clock used for signatures (injectable for tests).
    public init(configuration: KMSConfiguration, transport: (any HTTPTransport)? = nil,
                logger: Logger = Logger(label: "piivault.kms"), now: @escaping @Sendable () -> Date = { Date() }) {
        self.configuration = configuration
        self.transport = transport ?? configuration.transport
        self.logger = logger
        self.now = now
    }

    /// `Encrypt`: encrypts up to 4096 bytes under `keyID` (a key id, key ARN, alias name or alias ARN) bound to
    /// `context`. `plaintextBase64` is the plaintext in standard base64; the request body holding it is wiped after
    /// the call.
    public func encrypt(keyID: String, plaintextBase64: [UInt8], context: [String: String]) async throws
        -> KMSEncryptResult {
        var body = Array("{\"EncryptionContext\":".utf8) + Self.jsonObject(context)
            + Array(",\"KeyId\":".utf8) + Self.jsonString(keyID) + Array(",\"Plaintext\":\"".utf8)
            + plaintextBase64 + Array("\"}".utf8)
        defer { Self.wipe(&body) }
        let answer = try await call("Encrypt", keyID: keyID, body: body)
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any],
              let blobText = object["CiphertextBlob"] as? String, let blob = Data(base64Encoded: blobText),
              let arn = object["KeyId"] as? String
        else { throw invalidResponse("Encrypt", keyID: keyID, "no CiphertextBlob or KeyId") }
        return KMSEncryptResult(keyID: arn, ciphertextBlob: Array(blob))
    }

    /// `Decrypt`: decrypts `ciphertextBlob` with `keyID` (KMS refuses with `IncorrectKeyException` when the blob
    /// was made by another key) and `context`, which must equal the context it was encrypted with.
    public func decrypt(ciphertextBlob: [UInt8], keyID: String, context: [String: String]) async throws
        -> KMSDecryptResult {
        let body = Array("{\"CiphertextBlob\":\"".utf8) + Array(Data(ciphertextBlob).base64EncodedString().utf8)
            + Array("\",\"EncryptionContext\":".utf8) + Self.jsonObject(context)
            + Array(",\"KeyId\":".utf8) + Self.jsonString(keyID) + Array("}".utf8)
        var answer = try await call("Decrypt", keyID: keyID, body: body)
        defer { Self.wipe(&answer) }
        // The plaintext is cut out of the answer before the rest is parsed, so that no String ever holds it.
        guard var plaintext = Self.takeStringValue(of: "Plaintext", from: &answer) else {
            throw invalidResponse("Decrypt", keyID: keyID, "no Plaintext")
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(answer)) as? [String: Any],
              let arn = object["KeyId"] as? String
        else {
            Self.wipe(&plaintext)
            throw invalidResponse("Decrypt", keyID: keyID, "no KeyId")
        }
        return KMSDecryptResult(keyID: arn, plaintextBase64: plaintext)
    }

    // MARK: Requests

    /// Builds and signs one request.
    func prepare(action: String, body: [UInt8], date: Date, credentials: SigV4.Credentials)
        -> [(name: String, value: String)] {
        let headers: [(name: String, value: String)] = [
            (name: "Content-Type", value: "application/x-amz-json-1.1"),
            (name: "X-Amz-Target", value: "TrentService.\(action)"),
        ]
        return SigV4.sign(method: "POST", url: configuration.endpoint, headers: headers,
                          payloadHash: SigV4.hexSHA256(body), credentials: credentials,
                          region: configuration.region, service: "kms", date: date)
    }

    /// Sends one action with retries; returns the answer's body or throws a ``KMSError`` (or the credentials
    /// provider's `AWSError`).
    private func call(_ action: String, keyID: String, body: [UInt8]) async throws -> [UInt8] {
        let context = "KMS \(action) with key \(keyID)"
        let clock = ContinuousClock()
        let started = clock.now
        let deadline = started + configuration.totalDeadline
        var attempt = 0
        var refreshedAfterExpiry = false
        while true {
            attempt += 1
            let credentials = try await configuration.credentialsProvider.credentials()
            let headers = prepare(action: action, body: body, date: now(), credentials: credentials.signing)
            let error: KMSError
            do {
                let response = try await transport.send(
                    HTTPRequest(method: "POST", url: configuration.endpoint, headers: headers, body: body,
                                maxResponseBytes: 64 * 1024),
                    timeout: min(configuration.callTimeout, deadline - clock.now))
                logger.debug("KMS call", metadata: ["action": "\(action)", "attempt": "\(attempt)",
                                                    "status": "\(response.status)"])
                if (200..<300).contains(response.status) { return response.body }
                error = errorFromAnswer(response, context: context, credentials: credentials)
            } catch is CancellationError {
                throw CancellationError()
            } catch let failure as HTTPTransportError {
                error = transportError(failure, context: context, credentials: credentials)
            }
            if error.isExpiredToken && !refreshedAfterExpiry {
                refreshedAfterExpiry = true
                await configuration.credentialsProvider.invalidate()
                continue
            }
            guard error.isRetryable else { throw error }
            let ceiling = min(Duration.seconds(5), configuration.baseDelay * (1 << min(attempt - 1, 20)))
            let pause = Duration.nanoseconds(Int64.random(in: 0...max(0, ceiling.nanoseconds)))
            if attempt >= configuration.maxAttempts || deadline - clock.now <= pause + .milliseconds(1) {
                let elapsed = String(format: "%.1fs", (clock.now - started).timeInterval)
                throw KMSError(kind: error.kind,
                               message: "\(error.message) (gave up after \(attempt) attempt\(attempt == 1 ? "" : "s") in \(elapsed))",
                               awsErrorCode: error.awsErrorCode)
            }
            logger.warning("KMS call failed, retrying", metadata: [
                "action": "\(action)", "attempt": "\(attempt)", "error": "\(error.message)",
            ])
            try await Task.sleep(for: pause)
        }
    }

    /// Reads the error code and message of a JSON 1.1 error answer (`__type`, `message`; or `x-amzn-ErrorType`).
    private func errorFromAnswer(_ response: HTTPResponse, context: String, credentials: AWSCredentials) -> KMSError {
        var code: String?
        var text: String?
        if let object = try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any] {
            code = (object["__type"] as? String ?? object["code"] as? String)
            text = object["message"] as? String ?? object["Message"] as? String
        } else if let tree = XMLElementNode.parse(response.body) {
            code = tree.descendants("Code").first?.text
            text = tree.descendants("Message").first?.text
        }
        if code == nil, let header = response.header("x-amzn-ErrorType") { code = header }
        // `com.amazonaws.kms#AccessDeniedException` or `AccessDeniedException:http://...` -> `AccessDeniedException`.
        let short = code.flatMap { $0.split(separator: "#").last }.flatMap { $0.split(separator: ":").first }
            .map { String($0).trimmingCharacters(in: .whitespacesAndNewlines) }
        return KMSError.fromAWS(code: short, serverMessage: text.map { redact($0, credentials: credentials) },
                                status: response.status, context: context, credentialsSource: credentials.source)
    }

    private func transportError(_ error: HTTPTransportError, context: String, credentials: AWSCredentials) -> KMSError {
        let endpoint = configuration.endpoint.absoluteString
        let detail = redact(error.detail, credentials: credentials)
        switch error.kind {
        case .timedOut:
            return KMSError(kind: .timeout,
                            message: "\(context): KMS at \(endpoint) did not answer in time (\(detail)); check the endpoint and the network")
        case .responseTooLarge:
            return KMSError(kind: .invalidResponse,
                            message: "\(context): the answer from \(endpoint) is larger than any KMS answer can be; check that the endpoint is KMS")
        case .tlsFailed:
            return KMSError(kind: .tlsVerification,
                            message: "\(context): TLS verification of KMS at \(endpoint) failed (\(detail)); \(error.tlsAdvice)")
        case .connectFailed, .failed:
            return KMSError(kind: .connection,
                            message: "\(context): cannot reach KMS at \(endpoint) (\(detail)); check the endpoint (AWS_ENDPOINT_URL_KMS, AWS_ENDPOINT_URL, or AWS_REGION for AWS itself) and the network")
        }
    }

    private func invalidResponse(_ action: String, keyID: String, _ what: String) -> KMSError {
        KMSError(kind: .invalidResponse,
                 message: "KMS \(action) with key \(keyID) at \(configuration.endpoint.absoluteString): unexpected answer (\(what)); check that the endpoint is KMS")
    }

    /// One line of server or library text with every credential removed and the length bounded.
    func redact(_ text: String, credentials: AWSCredentials?) -> String {
        var line = text.split(whereSeparator: { $0.isNewline }).first.map(String.init) ?? ""
        for secret in credentials?.secrets ?? [] {
            line = line.replacingOccurrences(of: secret, with: "<redacted>")
        }
        if let range = line.range(of: "Signature=") { line = line[..<range.upperBound] + "<redacted>" }
        if line.count > 300 { line = String(line.prefix(300)) + "..." }
        return line.trimmingCharacters(in: .whitespaces)
    }

    // MARK: JSON by hand (so that secrets never pass through a String)

    /// A JSON string literal.
    static func jsonString(_ text: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for unit in text.utf8 {
            switch unit {
            case UInt8(ascii: "\""): out += Array("\\\"".utf8)
            case UInt8(ascii: "\\"): out += Array("\\\\".utf8)
            case 0..<0x20: out += Array(String(format: "\\u%04x", unit).utf8)
            default: out.append(unit)
            }
        }
        out.append(UInt8(ascii: "\""))
        return out
    }

    /// A JSON object of strings, keys sorted.
    static func jsonObject(_ map: [String: String]) -> [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "{")]
        for (index, key) in map.keys.sorted().enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            out += jsonString(key) + [UInt8(ascii: ":")] + jsonString(map[key]!)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }

    /// Finds `"name":"VALUE"` at the top of a JSON answer, returns VALUE's bytes (with `\/` unescaped) and
    /// overwrites them in `body` with `A`s, so that the rest can be parsed without the secret; nil when absent.
    static func takeStringValue(of name: String, from body: inout [UInt8]) -> [UInt8]? {
        let key = Array("\"\(name)\"".utf8)
        guard body.count > key.count else { return nil }
        var index = 0
        while index + key.count <= body.count {
            if Array(body[index..<index + key.count]) == key {
                var cursor = index + key.count
                while cursor < body.count, [0x20, 0x09, 0x0a, 0x0d].contains(body[cursor]) { cursor += 1 }
                guard cursor < body.count, body[cursor] == UInt8(ascii: ":") else { index += 1; continue }
                cursor += 1
                while cursor < body.count, [0x20, 0x09, 0x0a, 0x0d].contains(body[cursor]) { cursor += 1 }
                guard cursor < body.count, body[cursor] == UInt8(ascii: "\"") else { return nil }
                cursor += 1
                var value: [UInt8] = []
                value.reserveCapacity(256)
                while cursor < body.count, body[cursor] != UInt8(ascii: "\"") {
                    if body[cursor] == UInt8(ascii: "\\") {
                        body[cursor] = UInt8(ascii: "A")
                        cursor += 1
                        guard cursor < body.count else { wipe(&value); return nil }
                    }
                    value.append(body[cursor])
                    body[cursor] = UInt8(ascii: "A")
                    cursor += 1
                }
                return value
            }
            index += 1
        }
        return nil
    }

    /// Overwrites bytes with zeros (`sodium_memzero`: not optimised away).
    static func wipe(_ bytes: inout [UInt8]) {
        sodium_memzero(&bytes, bytes.count)
    }
}
