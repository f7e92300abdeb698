import Foundation

/// Reads a queue's counters from the SQS emulator (`moto_server`) directly over HTTP, without the project's SQS
/// client or a Python process: tests use it to check and to wait on the queue's state.
public enum SQSEmulator {
    /// Messages a receive would return now (`visible`) and messages received but neither deleted nor visible again
    /// (`inFlight`).
    public struct Counts: Sendable, Equatable {
        public let visible: Int
        public let inFlight: Int
        /// Every message still in the queue, visible or not.
        public var total: Int { visible + inFlight }
    }

    /// The counters of the queue at `queueURL` (a queue of the emulator in `PIIVAULT_TEST_SQS_ENDPOINT`).
    public static func counts(queueURL: String) async throws -> Counts {
        let text = try await call("GetQueueAttributes", [
            ("QueueUrl", queueURL),
            ("AttributeName.1", "ApproximateNumberOfMessages"),
            ("AttributeName.2", "ApproximateNumberOfMessagesNotVisible"),
        ])
        guard let visible = attribute("ApproximateNumberOfMessages", in: text),
              let inFlight = attribute("ApproximateNumberOfMessagesNotVisible", in: text)
        else { throw TestSetupError("GetQueueAttributes of \(queueURL) answered without counts: \(text.prefix(300))") }
        return Counts(visible: visible, inFlight: inFlight)
    }

    /// Creates the queue `name` on the emulator (or finds it) and sends each of `bodies` as one message, ten to a
    /// SendMessageBatch call, in order; returns the queue's URL. Tests that need an independent client send with
    /// botocore (`scripts/send-messages.py`) instead; this one spares the others a Python start-up each.
    public static func send(_ bodies: [String], toQueueNamed name: String) async throws -> String {
        let created = try await call("CreateQueue", [("QueueName", name)])
        guard let start = created.range(of: "<QueueUrl>"), let end = created.range(of: "</QueueUrl>"),
              start.upperBound <= end.lowerBound
        else { throw TestSetupError("CreateQueue \(name) answered without a URL: \(created.prefix(300))") }
        let queueURL = String(created[start.upperBound..<end.lowerBound])
        var first = 0
        while first < bodies.count {
            let chunk = bodies[first..<min(first + 10, bodies.count)]
            var parameters = [("QueueUrl", queueURL)]
            for (offset, body) in chunk.enumerated() {
                parameters.append(("SendMessageBatchRequestEntry.\(offset + 1).Id", "m\(offset)"))
                parameters.append(("SendMessageBatchRequestEntry.\(offset + 1).MessageBody", body))
            }
            let answer = try await call("SendMessageBatch", parameters)
            guard !answer.contains("<BatchResultErrorEntry>") else {
                throw TestSetupError("SendMessageBatch to \(name) refused a message: \(answer.prefix(300))")
            }
            first += 10
        }
        return queueURL
    }

    /// `record` as Python's `json.dumps(record, sort_keys=True)` writes it (what `send-messages.py` sends, with its
    /// keys sorted): `", "` and `": "` between items, non-ASCII as `\\uXXXX`.
    public static func pythonJSON(_ value: Any) -> String {
        switch value {
        case let record as [String: Any]:
            return "{" + record.keys.sorted().map { pythonJSON($0) + ": " + pythonJSON(record[$0]!) }
                .joined(separator: ", ") + "}"
        case let array as [Any]:
            return "[" + array.map(pythonJSON).joined(separator: ", ") + "]"
        case let string as String:
            var out = "\""
            for unit in string.utf16 {
                switch unit {
                case 0x22: out += "\\\""
                case 0x5C: out += "\\\\"
                case 0x0A: out += "\\n"
                case 0x0D: out += "\\r"
                case 0x09: out += "\\t"
                case 0x08: out += "\\b"
                case 0x0C: out += "\\f"
                case 0x20..<0x7F: out += String(UnicodeScalar(UInt8(unit)))
                default: out += String(format: "\\u%04x", unit)
                }
            }
            return out + "\""
        case is NSNull:
            return "null"
        case let number as NSNumber:
            // JSONSerialization reads true and false as NSNumbers of a C char.
            if String(cString: number.objCType) == "c" { return number.boolValue ? "true" : "false" }
            return number.stringValue
        default:
            return "\(value)"
        }
    }

    /// One query-protocol call to the emulator; the answer's text, or an error naming the action.
    private static func call(_ action: String, _ parameters: [(String, String)]) async throws -> String {
        guard let endpoint = URL(string: try TestServices.sqsEndpoint()), let host = endpoint.host,
              let port = endpoint.port
        else { throw TestSetupError("PIIVAULT_TEST_SQS_ENDPOINT is not http://HOST:PORT") }
        // Every byte but the unreserved ones percent-encoded (URLComponents would leave `+`, `&` and `=` in values).
        let unreserved = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
        let form = ([("Action", action)] + parameters).map { name, value in
            name + "=" + value.addingPercentEncoding(withAllowedCharacters: unreserved)!
        }.joined(separator: "&")
        // moto checks no signature; it routes the request to SQS by the credential scope in this header.
        let (status, body) = try LoopbackHTTP.post(host: host, port: port, path: "/", headers: [
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            "Content-Type": "application/x-www-form-urlencoded",
        ], body: Array(form.utf8))
        let text = String(decoding: body, as: UTF8.self)
        guard status == 200 else { throw TestSetupError("\(action) failed (HTTP \(status)): \(text.prefix(300))") }
        return text
    }

    private static func attribute(_ name: String, in xml: String) -> Int? {
        guard let range = xml.range(of: "<Name>\(name)</Name><Value>") else { return nil }
        return Int(xml[range.upperBound...].prefix { $0.isNumber })
    }
}
