import FuzzSupport
import AWS

/// The XML reader every query-protocol answer goes through (ReceiveMessage, error answers, STS), and the lookups the
/// clients make on its tree.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let tree = XMLElementNode.parse(bytes) else { return 0 }
    for name in ["Message", "Code", "Credentials", "Attribute", "BatchResultErrorEntry"] {
        for node in tree.descendants(name) {
            _ = node.childText("MessageId")
            _ = node.childText("ReceiptHandle")
            _ = node.childText("Body")
            _ = node.children("Attribute").map { $0.childText("Name") }
            _ = node.text
        }
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
