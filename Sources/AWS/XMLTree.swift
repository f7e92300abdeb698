import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif

/// A minimal XML element tree, enough for the query-protocol answers of SQS and STS. Element names are kept without a namespace
/// prefix; the parser (Foundation's `XMLParser`, libxml2 underneath) decodes `&amp;`, `&lt;`, `&#...;` and the rest.
/// Not `Sendable`: a tree is built and read by one caller.
public final class XMLElementNode {
    /// The element's name without a namespace prefix.
    public let name: String
    /// The element's text (entities decoded).
    public internal(set) var text = ""
    /// The child elements in document order.
    public internal(set) var children: [XMLElementNode] = []

    init(name: String) { self.name = name }

    /// The first direct child with this name.
    public func child(_ name: String) -> XMLElementNode? { children.first { $0.name == name } }
    /// The text of the first direct child with this name.
    public func childText(_ name: String) -> String? { child(name)?.text }
    /// All direct children with this name.
    public func children(_ name: String) -> [XMLElementNode] { children.filter { $0.name == name } }

    /// Every element with this name in the tree, depth first, this element included.
    public func descendants(_ name: String) -> [XMLElementNode] {
        var found: [XMLElementNode] = []
        if self.name == name { found.append(self) }
        for child in children { found += child.descendants(name) }
        return found
    }

    /// Parses a document; nil when it is not well-formed.
    ///
    /// The document is fed to the parser as a stream: given all at once, libxml2 refuses documents over 10 MB
    /// ("huge input"), and a legal ReceiveMessage answer can be six times that.
    public static func parse(_ data: [UInt8]) -> XMLElementNode? {
        let parser = XMLParser(stream: InputStream(data: Data(data)))
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldResolveExternalEntities = false
        guard parser.parse(), let root = builder.root else { return nil }
        return root
    }

    private final class TreeBuilder: NSObject, XMLParserDelegate {
        var root: XMLElementNode?
        var stack: [XMLElementNode] = []

        func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?, attributes: [String: String] = [:]) {
            let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
            let node = XMLElementNode(name: local)
            if let parent = stack.last { parent.children.append(node) } else { root = node }
            stack.append(node)
        }

        func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
                    qualifiedName: String?) {
            _ = stack.popLast()
        }

        func parser(_ parser: XMLParser, foundCharacters string: String) {
            stack.last?.text += string
        }

        func parser(_ parser: XMLParser, foundCDATA CDATABlock: Data) {
            stack.last?.text += String(decoding: CDATABlock, as: UTF8.self)
        }
    }
}
