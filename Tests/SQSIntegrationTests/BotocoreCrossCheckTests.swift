import Foundation
@testable import SQS
import SigV4
import TestSupport
import XCTest

/// Acceptance 2: the same SQS requests signed here and by botocore's `SigV4Auth` give byte-identical headers.
final class BotocoreCrossCheckTests: XCTestCase {
    func testAuthorizationMatchesBotocore() throws {
        let date = try XCTUnwrap(SigV4.parseAmzDate("20240229T235959Z"))
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/botocore_sign.py")
        var prepared: [(label: String, credentials: SigV4.Credentials, region: String,
                        request: SQSClient.PreparedRequest)] = []
        let endpoints = ["http://127.0.0.1:5123", "https://sqs.eu-west-1.amazonaws.com"]
        for endpoint in endpoints {
            for wireProtocol in [SQSWireProtocol.query, .json] {
                for token in [nil, "FwoGZXIvYXdzEJr//////////wEaDOtoken+/="] {
                    let credentials = SigV4.Credentials(accessKeyId: "AKIDEXAMPLE",
                                                        secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                        sessionToken: token)
                    let configuration = SQSConfiguration(
                        credentials: credentials, region: "eu-west-1", endpoint: URL(string: endpoint)!,
                        wireProtocol: wireProtocol)
                    let client = SQSClient(configuration: configuration, logger: .init(label: "t"))
                    let queue = "\(endpoint)/123456789012/logins"
                    let requests: [(String, [(String, String)], [String: Any])] = [
                        ("ReceiveMessage",
                         [("QueueUrl", queue), ("MaxNumberOfMessages", "10"), ("WaitTimeSeconds", "20"),
                          ("AttributeName.1", "SentTimestamp")],
                         ["QueueUrl": queue, "MaxNumberOfMessages": 10, "AttributeNames": ["SentTimestamp"]]),
                        ("SendMessageBatch",
                         [("QueueUrl", queue), ("SendMessageBatchRequestEntry.1.Id", "m1"),
                          ("SendMessageBatchRequestEntry.1.MessageBody", "{\"ip\": \"10.0.0.1\", \"é\": \"&=+ 😀\"}")],
                         ["QueueUrl": queue, "Entries": [["Id": "m1", "MessageBody": "{\"é\": \"&=+ 😀\"}"]]]),
                    ]
                    for (action, query, json) in requests {
                        let request = try client.prepare(action: action, query: query, json: json, date: date,
                                                         credentials: credentials)
                        prepared.append(("\(action) \(wireProtocol) \(endpoint) token=\(token != nil)", credentials,
                                         configuration.region, request))
                    }
                }
            }
        }
        let input: [String: Any] = [
            "requests": prepared.map { item -> [String: Any] in
                // botocore gets the request as it would be built before signing: the headers we chose to sign.
                let unsigned = item.request.headers.filter {
                    !["authorization", "x-amz-date", "x-amz-security-token", "host"].contains($0.name.lowercased())
                }
                return [
                    "method": "POST", "url": item.request.url.absoluteString,
                    "headers": unsigned.map { [$0.name, $0.value] },
                    "body_base64": Data(item.request.body).base64EncodedString(),
                    "access_key": item.credentials.accessKeyId,
                    "secret_key": item.credentials.secretAccessKey,
                    "session_token": item.credentials.sessionToken as Any,
                    "region": item.region, "service": "sqs", "amz_date": "20240229T235959Z",
                ]
            },
        ]
        let result = try runProcess("python3", [script.path],
                                    input: try JSONSerialization.data(withJSONObject: input))
        if result.status == 3 {
            XCTFail("botocore is missing: install awscli (`pip install awscli`, which brings botocore) to run this cross-check; \(result.stderr)")
            return
        }
        XCTAssertEqual(result.status, 0, "botocore_sign.py failed: \(result.stderr)")
        let output = try XCTUnwrap(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        let results = try XCTUnwrap(output["results"] as? [[String: Any]])
        XCTAssertEqual(results.count, prepared.count)
        for (item, botocore) in zip(prepared, results) {
            let ours = item.request.headers.first { $0.name == "authorization" }?.value
            XCTAssertEqual(ours, botocore["authorization"] as? String,
                           "\(item.label): botocore's canonical request was:\n\(botocore["canonical_request"] ?? "")")
        }
    }
}
