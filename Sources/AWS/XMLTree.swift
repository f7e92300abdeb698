#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal XML element tree, enough for the query-protocol answers of SQS and STS. Element names are kept without a namespace
/// prefix; attributes are read and dropped; text has its entities (`&amp;`, `&#233;`, `&#x1F600;` …) decoded.
/// Not `Sendable`: a tree is built and read by one caller.
public final class XMLElementNode {
    /// The element's name without a namespace prefix.
    public let name: String
    /// The element's text (entities decoded) up to its first child element, comments and processing instructions
    /// skipped: ElementTree's `text`, which is what botocore reads for a field. Text after a child element (a `tail`)
    /// is checked and dropped, so `<MessageId>m-1<x/>-extra</MessageId>` reads `m-1`, as botocore reads it.
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

    /// How deep elements may nest: SQS and STS answers are five levels deep, and a limit keeps a hostile answer from
    /// building a chain of nodes whose release would overflow the stack.
    public static let maxDepth = 100

    /// How many elements a document may hold: a ReceiveMessage answer of ten messages with every attribute has a few
    /// hundred, and a limit keeps a hostile 60 MiB answer of `<a/>`s from growing into a gigabyte of nodes.
    public static let maxElements = 10_000

    /// Parses a document; nil when it is not well-formed, not UTF-8, or beyond `maxDepth` or `maxElements`.
    ///
    /// A reader of our own rather than Foundation's `XMLParser`: that one calls back once per entity, so the largest
    /// legal ReceiveMessage answer (ten 1 MiB bodies of `"`, 60 MiB once escaped) took seconds of CPU, and libxml2
    /// under it refuses a document over 10 MB given at once. A document type declaration is refused: SQS and STS never
    /// send one, and without it no entity can expand into more than a few bytes. Lenient only where the tree could not
    /// differ: repeated attributes, control characters and `]]>` in text are let through.
    public static func parse(_ data: [UInt8]) -> XMLElementNode? {
        guard !data.isEmpty else { return nil }
        return data.withUnsafeBufferPointer { bytes in
            // Decoded text is never longer than the text it came from (every reference is longer than what it
            // stands for), so a buffer the size of the document holds any run of text.
            let decoded = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes.count)
            defer { decoded.deallocate() }
            var reader = XMLReader(input: bytes.baseAddress!, count: bytes.count, decoded: decoded)
            return reader.document()
        }
    }
}

/// The reader behind `XMLElementNode.parse`: one pass over the bytes with a stack of open elements. Each run of text
/// (between two tags, comments or CDATA sections) is decoded into a buffer, checked as UTF-8 on its own and added to
/// the innermost element's text. Plain pointers and byte comparisons, so that a debug build too reads 60 MiB in well
/// under a second.
private struct XMLReader {
    /// An element whose end tag is still to come.
    struct OpenElement {
        let node: XMLElementNode
        /// Where its full (prefixed) name stands in the input, to match the end tag against.
        let nameStart: Int
        let nameCount: Int
    }

    let input: UnsafePointer<UInt8>
    let count: Int
    var position = 0
    /// The run of text being read, decoded.
    let decoded: UnsafeMutablePointer<UInt8>
    var decodedCount = 0
    /// Open elements, innermost last.
    var open: [OpenElement] = []
    /// The document element, once its start tag is read.
    var root: XMLElementNode?
    /// Elements read so far.
    var elements = 0

    init(input: UnsafePointer<UInt8>, count: Int, decoded: UnsafeMutablePointer<UInt8>) {
        self.input = input
        self.count = count
        self.decoded = decoded
    }

    mutating func document() -> XMLElementNode? {
        if starts(with: "\u{FEFF}") { position += 3 }  // a byte-order mark
        while position < count {
            let byte = input[position]
            if byte == Byte.lessThan {
                let wellFormed: Bool
                if starts(with: "<?") {
                    position += 2
                    wellFormed = skip(past: "?>")
                } else if starts(with: "<!--") {
                    position += 4
                    wellFormed = skip(past: "-->")
                } else if starts(with: "<![CDATA[") {
                    wellFormed = cdata()
                } else if starts(with: "<!") {
                    wellFormed = false  // a document type declaration, or nonsense
                } else if starts(with: "</") {
                    wellFormed = endTag()
                } else {
                    wellFormed = startTag()
                }
                guard wellFormed else { return nil }
            } else if open.isEmpty {
                // Outside the root only white space may stand.
                guard isSpace(byte) else { return nil }
                position += 1
            } else {
                guard text() else { return nil }
            }
        }
        return open.isEmpty ? root : nil
    }

    // MARK: Tags

    /// Reads `<name attributes>` or `<name attributes/>`; false when the tag is malformed, starts a second root, or
    /// goes beyond the limits.
    mutating func startTag() -> Bool {
        position += 1
        let nameStart = position
        guard name(), let local = localName(from: nameStart) else { return false }
        let nameCount = position - nameStart
        elements += 1
        guard elements <= XMLElementNode.maxElements else { return false }
        let node = XMLElementNode(name: local)
        if open.isEmpty {
            guard root == nil else { return false }
            root = node
        } else {
            open[open.count - 1].node.children.append(node)
        }
        while true {
            let hadSpace = skipSpace()
            guard position < count else { return false }
            if starts(with: "/>") {
                position += 2
                return true
            }
            if input[position] == Byte.greaterThan {
                position += 1
                guard open.count < XMLElementNode.maxDepth else { return false }
                open.append(OpenElement(node: node, nameStart: nameStart, nameCount: nameCount))
                return true
            }
            guard hadSpace, attribute() else { return false }
        }
    }

    /// Reads `</name>`, which must close the innermost open element.
    mutating func endTag() -> Bool {
        position += 2
        let nameStart = position
        guard name(), let element = open.last, position - nameStart == element.nameCount,
              memcmp(input + nameStart, input + element.nameStart, element.nameCount) == 0 else {
            return false
        }
        skipSpace()
        guard position < count, input[position] == Byte.greaterThan else { return false }
        position += 1
        open.removeLast()
        return true
    }

    /// Reads `name = "value"` or `name='value'`; the value (which may not hold `<`) is dropped.
    mutating func attribute() -> Bool {
        guard name() else { return false }
        skipSpace()
        guard position < count, input[position] == Byte.equals else { return false }
        position += 1
        skipSpace()
        guard position < count else { return false }
        let quote = input[position]
        guard quote == Byte.doubleQuote || quote == Byte.singleQuote else { return false }
        position += 1
        while position < count, input[position] != quote {
            if input[position] == Byte.lessThan { return false }
            position += 1
        }
        guard position < count else { return false }
        position += 1
        return true
    }

    /// Reads a name: letters, digits, `_`, `-`, `.`, `:` and any non-ASCII byte, not starting with a digit, `-` or `.`.
    mutating func name() -> Bool {
        let start = position
        while position < count, Self.isNameByte(input[position]) { position += 1 }
        guard position > start else { return false }
        let first = input[start]
        return !(first >= Byte.zero && first <= Byte.nine) && first != Byte.hyphen && first != Byte.period
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= Byte.lowerA && byte <= Byte.lowerZ) || (byte >= Byte.upperA && byte <= Byte.upperZ)
            || (byte >= Byte.zero && byte <= Byte.nine) || byte == Byte.underscore || byte == Byte.hyphen
            || byte == Byte.period || byte == Byte.colon || byte >= 0x80
    }

    /// The name read since `start`, without its prefix (the part up to the last `:`); nil when it is not UTF-8.
    func localName(from start: Int) -> String? {
        var localStart = start
        for index in start..<position where input[index] == Byte.colon { localStart = index + 1 }
        return String(validating: UnsafeBufferPointer(start: input + localStart, count: position - localStart),
                      as: UTF8.self)
    }

    // MARK: Text

    /// Reads text up to the next `<`, decoding references and XML's line ends (`\r\n` and a lone `\r` read as
    /// `\n`) into the innermost element's text; false at a reference that is not well-formed.
    mutating func text() -> Bool {
        decodedCount = 0
        while position < count {
            let byte = input[position]
            if byte == Byte.lessThan { break }
            if byte == Byte.ampersand {
                guard reference() else { return false }
            } else {
                copyByte()
            }
        }
        return appendDecodedText()
    }

    /// Reads `<![CDATA[...]]>` inside an element; its content counts as text as it stands, but for line ends.
    mutating func cdata() -> Bool {
        guard !open.isEmpty else { return false }
        position += 9
        decodedCount = 0
        while position < count, !starts(with: "]]>") { copyByte() }
        guard position < count else { return false }
        position += 3
        return appendDecodedText()
    }

    /// Copies the byte at `position` to the decoded text and moves past it, with XML's line-end rule: `\r\n` and a
    /// lone `\r` read as `\n`.
    mutating func copyByte() {
        if input[position] == Byte.carriageReturn {
            if position + 1 < count, input[position + 1] == Byte.lineFeed { position += 1 }
            decoded[decodedCount] = Byte.lineFeed
        } else {
            decoded[decodedCount] = input[position]
        }
        decodedCount += 1
        position += 1
    }

    /// Adds the decoded run to the innermost element's text while that element has no child element yet (see
    /// `XMLElementNode.text`); false when the run is not UTF-8 on its own (a character may not be split by a comment
    /// or an element).
    mutating func appendDecodedText() -> Bool {
        guard decodedCount > 0 else { return true }
        guard let run = String(validating: UnsafeBufferPointer(start: decoded, count: decodedCount), as: UTF8.self)
        else { return false }
        let node = open[open.count - 1].node
        if node.children.isEmpty { node.text += run }
        return true
    }

    /// Reads one entity (`&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`) or character reference (`&#233;`, `&#xE9;`) at
    /// `&` and writes what it stands for; false for anything else.
    mutating func reference() -> Bool {
        switch position + 1 < count ? input[position + 1] : 0 {
        case Byte.lowerQ: return entity("&quot;", Byte.doubleQuote)
        case Byte.lowerA: return entity("&amp;", Byte.ampersand) || entity("&apos;", Byte.singleQuote)
        case Byte.lowerL: return entity("&lt;", Byte.lessThan)
        case Byte.lowerG: return entity("&gt;", Byte.greaterThan)
        case Byte.hash: return characterReference()
        default: return false
        }
    }

    /// Reads the predefined entity `spelling` if it stands at `position`, and writes `byte`.
    mutating func entity(_ spelling: StaticString, _ byte: UInt8) -> Bool {
        guard starts(with: spelling) else { return false }
        decoded[decodedCount] = byte
        decodedCount += 1
        position += spelling.utf8CodeUnitCount
        return true
    }

    /// Reads `&#` decimal digits `;` or `&#x` hexadecimal digits `;` and writes the character's UTF-8.
    mutating func characterReference() -> Bool {
        position += 2
        let hexadecimal = position < count && input[position] == Byte.lowerX
        if hexadecimal { position += 1 }
        var value: UInt32 = 0
        var digits = 0
        while position < count, input[position] != Byte.semicolon {
            // Leading zeros are allowed; a value past Unicode's last stops the reading before it can overflow.
            guard let digit = Self.digit(input[position], hexadecimal: hexadecimal), value <= 0x10FFFF else {
                return false
            }
            value = value * (hexadecimal ? 16 : 10) + digit
            digits += 1
            position += 1
        }
        guard position < count, digits > 0, Self.isCharacter(value), let scalar = Unicode.Scalar(value) else {
            return false
        }
        position += 1
        for byte in String(Character(scalar)).utf8 {
            decoded[decodedCount] = byte
            decodedCount += 1
        }
        return true
    }

    static func digit(_ byte: UInt8, hexadecimal: Bool) -> UInt32? {
        if byte >= Byte.zero && byte <= Byte.nine { return UInt32(byte - Byte.zero) }
        guard hexadecimal else { return nil }
        if byte >= Byte.lowerA && byte <= Byte.lowerF { return UInt32(byte - Byte.lowerA + 10) }
        if byte >= Byte.upperA && byte <= Byte.upperF { return UInt32(byte - Byte.upperA + 10) }
        return nil
    }

    /// XML 1.0's `Char`: tab, line feed, carriage return and the rest of Unicode but for the other controls,
    /// surrogates and U+FFFE, U+FFFF.
    static func isCharacter(_ value: UInt32) -> Bool {
        switch value {
        case 0x9, 0xA, 0xD, 0x20...0xD7FF, 0xE000...0xFFFD, 0x10000...0x10FFFF: return true
        default: return false
        }
    }

    // MARK: Scanning

    func starts(with literal: StaticString) -> Bool {
        let length = literal.utf8CodeUnitCount
        return count - position >= length && memcmp(input + position, literal.utf8Start, length) == 0
    }

    /// Moves past the next `terminator`; false when there is none.
    mutating func skip(past terminator: StaticString) -> Bool {
        while position < count {
            if starts(with: terminator) {
                position += terminator.utf8CodeUnitCount
                return true
            }
            position += 1
        }
        return false
    }

    /// Moves past spaces, tabs and line ends; true when there was at least one.
    @discardableResult
    mutating func skipSpace() -> Bool {
        let start = position
        while position < count, isSpace(input[position]) { position += 1 }
        return position > start
    }

    func isSpace(_ byte: UInt8) -> Bool {
        byte == Byte.space || byte == Byte.tab || byte == Byte.lineFeed || byte == Byte.carriageReturn
    }
}

/// The ASCII bytes the reader looks for.
private enum Byte {
    static let tab = UInt8(ascii: "\t"), lineFeed = UInt8(ascii: "\n"), carriageReturn = UInt8(ascii: "\r")
    static let space = UInt8(ascii: " "), doubleQuote = UInt8(ascii: "\""), ampersand = UInt8(ascii: "&")
    static let singleQuote = UInt8(ascii: "'"), hyphen = UInt8(ascii: "-"), period = UInt8(ascii: ".")
    static let zero = UInt8(ascii: "0"), nine = UInt8(ascii: "9"), colon = UInt8(ascii: ":")
    static let semicolon = UInt8(ascii: ";"), lessThan = UInt8(ascii: "<"), equals = UInt8(ascii: "=")
    static let greaterThan = UInt8(ascii: ">"), upperA = UInt8(ascii: "A"), upperF = UInt8(ascii: "F")
    static let upperZ = UInt8(ascii: "Z"), underscore = UInt8(ascii: "_"), lowerA = UInt8(ascii: "a")
    static let lowerF = UInt8(ascii: "f"), lowerX = UInt8(ascii: "x"), lowerZ = UInt8(ascii: "z")
    static let lowerQ = UInt8(ascii: "q"), lowerL = UInt8(ascii: "l"), lowerG = UInt8(ascii: "g")
    static let hash = UInt8(ascii: "#")
}
