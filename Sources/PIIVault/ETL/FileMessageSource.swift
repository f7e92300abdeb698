import Foundation

/// Newline-delimited JSON from a file (backfills, replaying an export, benchmarks), read in chunks so memory stays
/// flat whatever the file's size. Each non-empty line is one message; its id is derived from its content and its
/// occurrence (`file-<SHA-256 prefix>-<n>`, n counting identical lines), never from its position: loading the same
/// file twice, or the same lines in another order, with other lines added, or with blank lines added, adds only
/// the new lines. Counting occurrences keeps 4 bytes per distinct line (a 32-bit fingerprint).
public actor FileMessageSource: MessageSource {
    public nonisolated let label: String
    public nonisolated var endsWhenEmpty: Bool { true }
    private let handle: FileHandle
    private let sentAt: Date
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var atEnd = false
    /// Fingerprints of the lines seen once, and occurrence counts of those seen more often. A fingerprint that two
    /// different lines share only numbers the second one's occurrence higher: its id still differs by its content.
    private var seenOnce: FingerprintSet
    private var seenMore: [UInt32: Int] = [:]

    /// Opens `path`; the file's modification time stands in for SQS's `SentTimestamp`.
    public init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ETLError.inputFile("cannot open \(path); check that the file exists and is readable")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        self.handle = handle
        self.sentAt = (attributes?[.modificationDate] as? Date) ?? Date()
        self.label = "file:\(path)"
        // Sized for the file's lines up front (a login line is rarely under 128 bytes), so it rarely grows.
        let size = (attributes?[.size] as? NSNumber)?.intValue ?? 0
        self.seenOnce = FingerprintSet(expectedCount: min(size / 128, 1 << 24))
    }

    public func receive(maxMessages: Int) async throws -> [SourceMessage] {
        var messages: [SourceMessage] = []
        messages.reserveCapacity(maxMessages)
        while messages.count < maxMessages, let line = try nextLine() {
            var body = Array(line)
            if body.last == UInt8(ascii: "\r") { body.removeLast() }
            if body.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            let digest = sha256(body)
            let id = Self.messageID(digest: digest, occurrence: occurrence(of: digest))
            messages.append(SourceMessage(messageID: id, body: body, sentAt: sentAt, receiptHandle: nil))
        }
        return messages
    }

    /// The message id of the `occurrence`-th line (1, 2, ...) of a file whose bytes are `body` (without the newline).
    public static func messageID(body: [UInt8], occurrence: Int = 1) -> String {
        messageID(digest: sha256(body), occurrence: occurrence)
    }

    private static func messageID(digest: [UInt8], occurrence: Int) -> String {
        // `file-`, 24 hex digits, `-`, the occurrence: written in place, one allocation (one id a line).
        let number = String(occurrence).utf8
        return String(unsafeUninitializedCapacity: 30 + number.count) { out in
            for (index, byte) in "file-".utf8.enumerated() { out[index] = byte }
            for index in 0..<12 {
                out[5 + 2 * index] = lowercaseHexDigit(digest[index] >> 4)
                out[6 + 2 * index] = lowercaseHexDigit(digest[index] & 0x0f)
            }
            out[29] = UInt8(ascii: "-")
            for (index, byte) in number.enumerated() { out[30 + index] = byte }
            return 30 + number.count
        }
    }

    /// 1 for the first line with this digest, 2 for the second, and so on.
    private func occurrence(of digest: [UInt8]) -> Int {
        let fingerprint = UInt32(digest[0]) << 24 | UInt32(digest[1]) << 16 | UInt32(digest[2]) << 8 | UInt32(digest[3])
        if seenOnce.insert(fingerprint) { return 1 }
        let count = (seenMore[fingerprint] ?? 1) + 1
        seenMore[fingerprint] = count
        return count
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

/// A set of 32-bit fingerprints at about 4 bytes each: a sorted array, and the latest few thousand in a hash set that is
/// merged into it when full. A `Set<UInt32>` keeps its table under three quarters full and doubles it to grow, so a
/// million fingerprints took 8 MiB, and 12 MiB while doubling; a file run's memory then grew with its length.
struct FingerprintSet {
    private var sorted: [UInt32] = []
    private var recent = Set<UInt32>()
    private static let recentLimit = 1 << 14

    init(expectedCount: Int = 0) {
        sorted.reserveCapacity(expectedCount)
        recent.reserveCapacity(Self.recentLimit)
    }

    var count: Int { sorted.count + recent.count }

    /// Adds `value`; true when it was not there yet.
    mutating func insert(_ value: UInt32) -> Bool {
        if recent.contains(value) || sortedContains(value) { return false }
        recent.insert(value)
        if recent.count >= Self.recentLimit { mergeRecent() }
        return true
    }

    private func sortedContains(_ value: UInt32) -> Bool {
        var low = 0, high = sorted.count
        while low < high {
            let middle = (low + high) / 2
            if sorted[middle] < value { low = middle + 1 } else { high = middle }
        }
        return low < sorted.count && sorted[low] == value
    }

    /// Merges `recent` into `sorted` in place, from the back.
    private mutating func mergeRecent() {
        let added = recent.sorted()
        recent.removeAll(keepingCapacity: true)
        var old = sorted.count - 1, new = added.count - 1
        sorted.append(contentsOf: repeatElement(0, count: added.count))
        var target = sorted.count - 1
        while new >= 0 {
            if old >= 0 && sorted[old] > added[new] {
                sorted[target] = sorted[old]
                old -= 1
            } else {
                sorted[target] = added[new]
                new -= 1
            }
            target -= 1
        }
    }
}
