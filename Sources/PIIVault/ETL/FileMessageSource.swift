import Foundation

/// Newline-delimited JSON from a file (backfills, replaying an export, benchmarks), read in chunks so memory stays
/// flat whatever the file's size. Each non-empty line is one message; its id is derived from its content and its
/// occurrence (`file-<SHA-256 prefix>-<n>`, n counting identical lines), never from its position: loading the same
/// file twice, or the same lines in another order, with other lines added, or with blank lines added, adds only
/// the new lines. Counting occurrences keeps about 4 bytes per distinct line (a 48-bit fingerprint, `FingerprintSet`).
public actor FileMessageSource: MessageSource {
    public nonisolated let label: String
    public nonisolated var endsWhenEmpty: Bool { true }
    private let handle: FileHandle
    private let sentAt: Date
    private let path: String
    private var buffer: [UInt8] = []
    private var bufferStart = 0
    private var atEnd = false
    /// Lines read so far, blank ones included (to name a line in an error).
    private var lineNumber = 0
    /// The longest line read: 2 MiB, twice SQS's largest message (1 MiB). A longer one is no login event, and reading
    /// it whole could take all the memory there is (a 600 MB line did).
    public static let maximumLineBytes = 2 << 20
    /// Fingerprints (48 bits of the digest) of the lines seen once, and occurrence counts of those seen more often.
    private var seenOnce: FingerprintSet
    private var seenMore: [UInt64: Int] = [:]

    /// Opens `path`; the file's modification time stands in for SQS's `SentTimestamp`.
    public init(path: String) throws {
        // A directory opens for reading on Linux, and fails only at the first read, once the run has begun.
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ETLError.inputFile("\(path) is a directory; pass a file of newline-delimited JSON")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ETLError.inputFile("cannot open \(path); check that the file exists and is readable")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        self.handle = handle
        self.path = path
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
        var fingerprint: UInt64 = 0
        for index in 0..<6 { fingerprint = fingerprint << 8 | UInt64(digest[index]) }
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
                try checkLength(line)
                bufferStart = newline + 1
                lineNumber += 1
                return line
            }
            try checkLength(buffer[bufferStart...])
            if atEnd {
                guard bufferStart < buffer.count else { return nil }
                let line = buffer[bufferStart...]
                bufferStart = buffer.count
                lineNumber += 1
                return line
            }
            buffer.removeSubrange(0..<bufferStart)
            bufferStart = 0
            let chunk = try handle.read(upToCount: 1 << 20) ?? Data()
            if chunk.isEmpty { atEnd = true } else { buffer.append(contentsOf: chunk) }
        }
    }

    /// `line`: the line's bytes so far (without its newline; with a \r before it, which does not count).
    private func checkLength(_ line: ArraySlice<UInt8>) throws {
        let count = line.last == UInt8(ascii: "\r") ? line.count - 1 : line.count
        guard count > Self.maximumLineBytes else { return }
        throw ETLError.inputFile("line \(lineNumber + 1) of \(path) is longer than \(Self.maximumLineBytes) bytes (2 MiB; SQS's messages are at most 1 MiB), so it is no login event; remove or split it and run again (the lines loaded before it are not loaded twice)")
    }
}

/// A set of 48-bit fingerprints at about 4 bytes each. The top 16 bits choose one of 65,536 buckets, kept one after
/// the other in one array, each holding the low 32 bits of its fingerprints in order; the latest few thousand wait in
/// a hash set that is merged into the array when full. A `Set<UInt64>` keeps its table under three quarters full and
/// doubles it to grow, so a million fingerprints would take 16 MiB, and 24 MiB while doubling; a file run's memory then
/// grew with its length. With 32-bit fingerprints a million distinct lines held about a hundred pairs that shared one
/// (each pair counted as one line's two occurrences, so the later line's id changed with the order of the file); with 48
/// bits such a pair is expected once in about 500 files of a million lines.
struct FingerprintSet {
    /// The low 32 bits of the merged fingerprints, bucket after bucket, each bucket in ascending order.
    private var low: [UInt32] = []
    /// Where each bucket ends in `low` (bucket b is `low[bucketEnd[b - 1]..<bucketEnd[b]]`, bucket 0 starts at 0).
    private var bucketEnd = [UInt32](repeating: 0, count: Self.bucketCount)
    private var recent = Set<UInt64>()
    private static let bucketCount = 1 << 16
    private static let recentLimit = 1 << 14

    init(expectedCount: Int = 0) {
        low.reserveCapacity(expectedCount)
        recent.reserveCapacity(Self.recentLimit)
    }

    var count: Int { low.count + recent.count }

    /// Adds the fingerprint `value` (its low 48 bits; the rest is ignored); true when it was not there yet.
    mutating func insert(_ value: UInt64) -> Bool {
        let value = value & 0xffff_ffff_ffff
        if recent.contains(value) || mergedContains(value) { return false }
        recent.insert(value)
        if recent.count >= Self.recentLimit { mergeRecent() }
        return true
    }

    private func bucketStart(_ bucket: Int) -> Int {
        bucket == 0 ? 0 : Int(bucketEnd[bucket - 1])
    }

    private func mergedContains(_ value: UInt64) -> Bool {
        let bucket = Int(value >> 32), key = UInt32(truncatingIfNeeded: value)
        var lower = bucketStart(bucket), upper = Int(bucketEnd[bucket])
        let end = upper
        while lower < upper {
            let middle = (lower + upper) / 2
            if low[middle] < key { lower = middle + 1 } else { upper = middle }
        }
        return lower < end && low[lower] == key
    }

    /// Merges `recent` into `low` in place, from the back, then moves the bucket ends.
    private mutating func mergeRecent() {
        let added = recent.sorted()
        recent.removeAll(keepingCapacity: true)
        var old = low.count - 1, new = added.count - 1
        var oldBucket = Self.bucketCount - 1  // the bucket of low[old], found from the ends before the merge
        low.append(contentsOf: repeatElement(0, count: added.count))
        var target = low.count - 1
        while new >= 0 {
            if old >= 0 {
                while old < bucketStart(oldBucket) { oldBucket -= 1 }
                let oldValue = UInt64(oldBucket) << 32 | UInt64(low[old])
                if oldValue > added[new] {
                    low[target] = low[old]
                    old -= 1
                    target -= 1
                    continue
                }
            }
            low[target] = UInt32(truncatingIfNeeded: added[new])
            new -= 1
            target -= 1
        }
        // Each bucket now ends later by the number of added fingerprints in it and in the buckets before it.
        var index = 0, addedSoFar: UInt32 = 0
        for bucket in 0..<Self.bucketCount {
            while index < added.count && Int(added[index] >> 32) == bucket {
                addedSoFar += 1
                index += 1
            }
            bucketEnd[bucket] += addedSoFar
        }
    }
}
