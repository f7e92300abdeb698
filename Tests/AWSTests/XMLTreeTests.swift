@testable import AWS
import XCTest

/// The XML reader on its own; `SQSIntegrationTests.XMLCrossCheckTests` compares it with Python's expat.
final class XMLTreeTests: XCTestCase {
    func parse(_ text: String) -> XMLElementNode? { XMLElementNode.parse(Array(text.utf8)) }

    func testTreeNamesAndText() throws {
        let tree = try XCTUnwrap(parse("""
            <?xml version="1.0"?><s:Envelope xmlns:s="urn:e" a="1"><s:Body>x<!-- c --><Item>1</Item>y<Item/>\
            <Item>&amp;<![CDATA[&amp;]]></Item>z</s:Body></s:Envelope>
            """))
        XCTAssertEqual(tree.name, "Envelope")
        let body = try XCTUnwrap(tree.child("Body"))
        XCTAssertEqual(body.text, "x", "text after a child element is not the element's text (botocore's reading)")
        XCTAssertEqual(body.children("Item").map(\.text), ["1", "", "&&amp;"])
        XCTAssertEqual(tree.descendants("Item").count, 3)
        XCTAssertNil(tree.child("Item"))
    }

    func testCharacterReferences() throws {
        XCTAssertEqual(parse("<a>&#65;&#x42;&#x0043;&#233;&#x1F600;</a>")?.text, "ABCé😀")
        XCTAssertEqual(parse("<a>&#13;&#10;</a>")?.text, "\r\n", "a referenced carriage return stays")
        XCTAssertEqual(parse("<a>1\r\n2\r3</a>")?.text, "1\n2\n3", "literal line ends read as line feeds")
        XCTAssertEqual(parse("<a>&#x0000000041;&#000000066;</a>")?.text, "AB", "leading zeros")
        for refused in ["&#0;", "&#x1;", "&#xD800;", "&#xFFFE;", "&#x110000;", "&#+65;", "&#x+41;", "&#-1;", "&#;",
                        "&#x;", "&#99999999999999999999;", "&nbsp;", "&", "&amp", "&AMP;"] {
            XCTAssertNil(parse("<a>\(refused)</a>"), refused)
        }
    }

    /// No document type declaration, so no entity can expand (the "billion laughs" stays a refusal).
    func testDocumentTypeDeclarationIsRefused() {
        XCTAssertNil(parse("""
            <?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>\
            <a>&lol2;</a>
            """))
        XCTAssertNil(parse("<!DOCTYPE a><a/>"))
    }

    func testStructureErrors() {
        for refused in ["", " ", "<a>", "<a></b>", "<a><b></a></b>", "<a/><b/>", "x<a/>", "<a/>x", "<a b/>",
                        "<a b=c/>", "<a b=\"c/>", "<a b='1'c='2'/>", "<-a/>", "<a></a", "</a>", "<a><!-- </a>",
                        "<a><?pi </a>", "<a><![CDATA[ </a>"] {
            XCTAssertNil(parse(refused), refused)
        }
        XCTAssertNil(XMLElementNode.parse([UInt8]("<a>".utf8) + [0xC3, 0x28] + [UInt8]("</a>".utf8)))
    }

    /// A field with a child element reads as botocore reads it: the text before the child (issue 24, defect 4: the
    /// reader took `m-real-extra` and deleted with `rh-Arh-B` where botocore reads `m-real` and `rh-A`).
    func testFieldWithAChildElementReadsTheTextBeforeIt() throws {
        let message = try XCTUnwrap(parse(
            "<Message><MessageId>m-real<x/>-extra</MessageId><ReceiptHandle>rh-A<x/>rh-B</ReceiptHandle></Message>"))
        XCTAssertEqual(message.childText("MessageId"), "m-real")
        XCTAssertEqual(message.childText("ReceiptHandle"), "rh-A")
        XCTAssertEqual(parse("<a>x<!-- c -->y<b/>z</a>")?.text, "xy")
        XCTAssertNil(XMLElementNode.parse(Array("<a><b/>".utf8) + [0xFF] + Array("</a>".utf8)), "text after a child is still checked")
    }

    /// Nesting is limited, so a hostile answer of millions of `<a>` cannot build a chain too long to release.
    func testNestingIsLimited() throws {
        func nested(_ depth: Int) -> String {
            String(repeating: "<a>", count: depth) + "x" + String(repeating: "</a>", count: depth)
        }
        var node = try XCTUnwrap(parse(nested(XMLElementNode.maxDepth)))
        for _ in 1..<XMLElementNode.maxDepth { node = try XCTUnwrap(node.children.first) }
        XCTAssertEqual(node.text, "x")
        XCTAssertNil(parse(nested(XMLElementNode.maxDepth + 1)))
        XCTAssertNotNil(parse("<r>" + String(repeating: nested(XMLElementNode.maxDepth - 1), count: 3) + "</r>"))
    }

    /// So is the number of elements, so a hostile 60 MiB answer of `<a/>`s cannot become a gigabyte of nodes.
    func testElementCountIsLimited() {
        func flat(_ count: Int) -> String { "<r>" + String(repeating: "<a/>", count: count - 1) + "</r>" }
        XCTAssertEqual(parse(flat(XMLElementNode.maxElements))?.children.count, XMLElementNode.maxElements - 1)
        XCTAssertNil(parse(flat(XMLElementNode.maxElements + 1)))
    }

    /// A comment's `<!--` is not also its `-->`, and a processing instruction needs its own `?>`.
    func testCommentsAndInstructionsEndAfterTheyStart() {
        XCTAssertEqual(parse("<a><!-->b<c/>--></a>")?.children.count, 0)
        XCTAssertEqual(parse("<a><!-->b<c/>--></a>")?.text, "")
        XCTAssertNil(parse("<a><!--></a>"))
        XCTAssertNil(parse("<?><a/>"))
    }
}
