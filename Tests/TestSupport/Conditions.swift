import Foundation

/// Polls `condition` until it holds; throws when `timeout` seconds pass first. Tests wait on what they need this way
/// instead of sleeping for a fixed time. The first polls come `interval` apart, later ones up to `maxInterval`: a
/// condition that holds soon is seen soon, and a long wait (a visibility timeout) does not poll the emulator or the
/// database hundreds of times, which on a busy machine takes the CPU the other tests need.
public func waitUntil(
    _ what: @autoclosure () -> String, timeout: Double, interval: Duration = .milliseconds(20),
    maxInterval: Duration = .milliseconds(250), _ condition: () async throws -> Bool
) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    var pause = interval
    while try await !condition() {
        guard Date() < deadline else { throw TestSetupError("timed out after \(timeout) s waiting until \(what())") }
        try await Task.sleep(for: pause)
        pause = min(pause * 2, maxInterval)
    }
}

/// The needles that occur in `haystack`, compared as UTF-8 bytes with `memchr` and `memcmp` (a debug build's
/// `String.contains` takes seconds for a thousand needles in a megabyte).
public func occurrences(of needles: [String], in haystack: String) -> [String] {
    var text = haystack
    return text.withUTF8 { hay in
        needles.filter { needle in
            var needle = needle
            return needle.withUTF8 { n in contains(hay, n) }
        }
    }
}

private func contains(_ hay: UnsafeBufferPointer<UInt8>, _ needle: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let first = needle.first else { return true }
    guard let base = hay.baseAddress, hay.count >= needle.count else { return false }
    var offset = 0
    let last = hay.count - needle.count
    while offset <= last {
        guard let hit = memchr(base + offset, Int32(first), last - offset + 1) else { return false }
        let position = UnsafeRawPointer(hit) - UnsafeRawPointer(base)
        if memcmp(base + position, needle.baseAddress!, needle.count) == 0 { return true }
        offset = position + 1
    }
    return false
}
