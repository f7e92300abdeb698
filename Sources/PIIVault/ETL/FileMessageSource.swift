import Foundation

/// Newline-delimited JSON from a file (backfills, replaying an export, benchmarks), read in chunks so memory stays
/// flat whatever the file's size. Each non-empty line is one message; its id is derived from its line number and
/// content, so loading the same file twice adds nothing.
public actor FileMessageSource: MessageSource {
    public nonisolated let label: String
    public nonisolated var endsWhenEmpty: Bool { true }
    private let handle: FileHandle
    private let sentAt: Date
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var atEnd = false
    private var lineNumber = 0

    /// Opens `path`; the file's modification time stands in for SQS's `SentTimestamp`.
    public init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ETLError.inputFile("cannot open \(path); check that the file exists and is readable")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        self.handle = handle
        self.sentAt = (attributes?[.modificationDate] as? Date) ?? Date()
        self.label = "file:\(path)"
    }

    public func receive(maxMessages: Int) async throws -> [SourceMessage] {
        var messages: [SourceMessage] = []
        messages.reserveCapacity(maxMessages)
        while messages.count < maxMessages, let line = try nextLine() {
            lineNumber += 1
            var body = Array(line)
            if body.last == UInt8(ascii: "\r") { body.removeLast() }
            if body.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let id = "line-\(lineNumber)-" + sha256Hex(body).prefix(24)
            messages.append(SourceMessage(messageID: id, body: body, sentAt: sentAt, receiptHandle: nil))
        }
        return messages
    }

    public func acknowledge(_ messages: [SourceMessage]) async throws -> Int { 0 }

    public func approximateDepth() async -> Int? { nil }

    private func nextLine() throws -> ArraySlice<UInt8>? {
        while true {
            if let newline = buffer[bufferStart...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[bufferStart..<newline]
                bufferStart = newline + 1
                return line
            }
            if atEnd {
                guard bufferStart < buffer.count else { return nil }
                let line = buffer[bufferStart...]
                bufferStart = buffer.count
                return line
            }
            buffer.removeSubrange(0..<bufferStart)
            bufferStart = 0
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
        }
    }
}
