import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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
        let endpoint = try TestServices.sqsEndpoint()
        var request = URLRequest(url: URL(string: endpoint)!)
        request.httpMethod = "POST"
        // moto checks no signature; it routes the request to SQS by the credential scope in this header.
        request.setValue(
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
            forHTTPHeaderField: "Authorization")
        request.setValue("application/x-www-form-urlencoded", forHTTPHeaderField: "Content-Type")
        var form = URLComponents()
        form.queryItems = [
            URLQueryItem(name: "Action", value: "GetQueueAttributes"), URLQueryItem(name: "QueueUrl", value: queueURL),
            URLQueryItem(name: "AttributeName.1", value: "ApproximateNumberOfMessages"),
            URLQueryItem(name: "AttributeName.2", value: "ApproximateNumberOfMessagesNotVisible"),
        ]
        request.httpBody = Data((form.percentEncodedQuery ?? "").replacingOccurrences(of: "+", with: "%2B").utf8)
        let (data, response) = try await URLSession.shared.data(for: request)
        let text = String(decoding: data, as: UTF8.self)
        guard (response as? HTTPURLResponse)?.statusCode == 200,
              let visible = attribute("ApproximateNumberOfMessages", in: text),
              let inFlight = attribute("ApproximateNumberOfMessagesNotVisible", in: text)
        else { throw TestSetupError("GetQueueAttributes of \(queueURL) failed: \(text.prefix(300))") }
        return Counts(visible: visible, inFlight: inFlight)
    }

    private static func attribute(_ name: String, in xml: String) -> Int? {
        guard let range = xml.range(of: "<Name>\(name)</Name><Value>") else { return nil }
        return Int(xml[range.upperBound...].prefix { $0.isNumber })
    }
}
