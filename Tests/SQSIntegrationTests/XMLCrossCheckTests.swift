import AWS
import Foundation
@testable import SQS
import SigV4
import TestSupport
import XCTest

/// The XML reader and Python's expat (through ElementTree) agree on which documents are well-formed and on every
/// element's name and text.
final class XMLCrossCheckTests: XCTestCase {
    /// Documents both readers accept.
    static let wellFormed: [[UInt8]] = [
        """
        <?xml version="1.0" encoding="UTF-8"?>
        <ReceiveMessageResponse xmlns="http://queue.amazonaws.com/doc/2012-11-05/"><ReceiveMessageResult><Message>\
        <MessageId>m1</MessageId><Body>{&quot;ip&quot;: &quot;10.0.0.1&quot;}</Body></Message></ReceiveMessageResult>\
        <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></ReceiveMessageResponse>
        """,
        "<a>&lt;&gt;&amp;&apos;&quot;&#233;&#xE9;&#x1F600;&#10;&#13;&#9;&#0065;</a>",
        "<a>x<![CDATA[<b>&amp;]]]]>y</a>",
        "<!-- c --><a><!-- in -->x<?pi data?>y</a><!-- after -->\n",
        "<a k=\"v\" j='w&amp;' l = \"x>y\"><b/></a>",
        "<p:a xmlns:p=\"urn:x\"><p:b>t</p:b></p:a>",
        "<a>1\r\n2\r3\n<![CDATA[4\r\n5]]></a>",
        "\u{FEFF}<a>x</a>",
        "<a>é 😀 日本</a>",
        "  \n<a> </a>\n ",
        "<a>1<b>2<c>3</c>4</b>5<d/>6</a>",
        "<a>x</a >",
        "<a\n/>",
        "<a><!-->b<c/>--></a>",
        "<a>x<!---->y<?p?>z</a>",
        "<a>&#x000000041;&#0000065;</a>",
        "<Message><MessageId>m-real<x/>-extra</MessageId><ReceiptHandle>rh-A<x/>rh-B</ReceiptHandle></Message>",
        "<a><b>x</b>tail</a>", "<a>x<b>1<c/>2</b>y<d/>z</a>",
    ].map { Array($0.utf8) }

    /// Documents both readers refuse.
    static let malformed: [[UInt8]] = [
        "<a><b></a></b>", "<a>", "<a></a><b></b>", "text<a/>", "<a/>junk", "<a>&unknown;</a>", "<a>a & b</a>",
        "<a>&#0;</a>", "<a>&#xD800;</a>", "<a>&#x110000;</a>", "<a>&#;</a>", "<a>&#xZZ;</a>", "<a>&#X41;</a>",
        "", "<a b></a>", "<a b=\"1\"c=\"2\"></a>", "<1a/>", "<a><![CDATA[x</a>", "<a><!-- x</a>", "<a>x<</a>",
        "<a k=\"<\"/>", "<![CDATA[x]]><a/>", "<a>&amp</a>", "</a>", "<a></A>", "<?><a/>", "<a><!--></a>",
        "<a>&#x110000000041;</a>",
    ].map { Array($0.utf8) } + notUTF8

    /// Bytes that are not UTF-8: alone, cut off, a character split by a comment or an element, in a name.
    static let notUTF8: [[UInt8]] = [
        wrap([0xFF]), wrap([0xC3]), wrap([0xC3] + Array("<!---->".utf8) + [0xA9]),
        wrap([0xC3] + Array("<b>x</b>".utf8) + [0xA9]), Array("<".utf8) + [0xFF] + Array("/>".utf8),
    ]

    static func wrap(_ content: [UInt8]) -> [UInt8] { Array("<a>".utf8) + content + Array("</a>".utf8) }

    func testReaderAgreesWithExpat() throws {
        let documents = Self.wellFormed + Self.malformed
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
        let request = try JSONSerialization.data(withJSONObject: [
            "documents": documents.map { Data($0).base64EncodedString() },
        ])
        let result = try runProcess("python3", [script, "xml"], input: request)
        XCTAssertEqual(result.status, 0, result.stderr)
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        let trees = try XCTUnwrap(answer["trees"] as? [Any])
        XCTAssertEqual(trees.count, documents.count)
        for (index, document) in documents.enumerated() {
            let label = "document \(index): \(String(decoding: document, as: UTF8.self).debugDescription)"
            let expected = (trees[index] as? [[String]])?.map { $0.joined(separator: "=") }
            let ours = XMLElementNode.parse(document).map(Self.flatten)
            XCTAssertEqual(ours, expected, label)
            XCTAssertEqual(ours != nil, index < Self.wellFormed.count, label)
        }
    }

    /// ReceiveMessage answers that SQSClient and botocore's own QueryParser must read alike (issue 24, defect 4: a
    /// field with a child element was read as all its text joined, so the ETL stored `m-real-extra` and deleted with
    /// `rh-Arh-B`, where botocore reads `m-real` and `rh-A`).
    static let receiveAnswers: [String] = [
        "<Message><MessageId>m-1</MessageId><ReceiptHandle>rh-1</ReceiptHandle><Body>{}</Body></Message>",
        "<Message><MessageId>m-real<x/>-extra</MessageId><ReceiptHandle>rh-A<x/>rh-B</ReceiptHandle><Body>b</Body></Message>",
        "<Message><MessageId>m<!-- c -->2</MessageId><ReceiptHandle>r<![CDATA[h&2]]></ReceiptHandle><Body>a&amp;b<i>x</i>c</Body></Message>",
        "<Message><MessageId>m-3</MessageId><ReceiptHandle>rh-3</ReceiptHandle><Body>1</Body></Message>"
            + "<Message><MessageId>m-4</MessageId><ReceiptHandle>rh-4</ReceiptHandle><Body><b>2</b>tail</Body></Message>",
    ].map {
        "<?xml version=\"1.0\"?><ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"
            + "<ReceiveMessageResult>\($0)</ReceiveMessageResult></ReceiveMessageResponse>"
    }

    func testReceiveReadsFieldsAsBotocoreDoes() async throws {
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
        let request = try JSONSerialization.data(withJSONObject: [
            "documents": Self.receiveAnswers.map { Data($0.utf8).base64EncodedString() },
        ])
        let result = try runProcess("python3", [script, "receive"], input: request)
        XCTAssertEqual(result.status, 0, "crosscheck.py receive (needs botocore: pip install awscli): \(result.stderr)")
        let answer = try XCTUnwrap(try JSONSerialization.jsonObject(with: result.stdoutData) as? [String: Any])
        let expected = try XCTUnwrap(answer["answers"] as? [[[String]]])
        XCTAssertEqual(expected.count, Self.receiveAnswers.count)
        XCTAssertEqual(expected[1].first, ["m-real", "rh-A", "b"], "botocore's reading of the issue's example")
        for (index, document) in Self.receiveAnswers.enumerated() {
            let server = try CannedServer(responses: [["status": 200, "body": document]])
            defer { server.stop() }
            let configuration = SQSConfiguration(
                credentials: SigV4.Credentials(accessKeyId: "AK", secretAccessKey: "SK"), region: "us-east-1",
                endpoint: URL(string: "http://127.0.0.1:\(server.port)")!)
            let client = SQSClient(configuration: configuration, logger: SQSTestEnvironment.logger(CapturingLogStore()))
            let messages = try await client.receiveMessages(
                queueURL: "http://127.0.0.1:\(server.port)/000000000000/q",
                options: SQSReceiveOptions(maxMessages: 10, waitTimeSeconds: 0))
            XCTAssertEqual(messages.map { [$0.messageId, $0.receiptHandle, $0.body] }, expected[index], "answer \(index)")
        }
    }

    /// Elements depth first as `name=text`, the order of ElementTree's `iter()`.
    static func flatten(_ node: XMLElementNode) -> [String] {
        ["\(node.name)=\(node.text)"] + node.children.flatMap(flatten)
    }
}
