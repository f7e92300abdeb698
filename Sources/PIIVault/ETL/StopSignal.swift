import Foundation

/// A stop request (SIGTERM, SIGINT, or a caller's own): the run finishes the batch in hand and ends without
/// receiving more. The command line turns signals into ``request()``; the core only reads the flag.
public final class StopSignal: @unchecked Sendable {
    // @unchecked: `requested` is only read and written under `lock`.
    private let lock = NSLock()
    private var requested = false

    public init() {}

    /// Whether a stop was requested.
    public var isRequested: Bool { lock.withLock { requested } }

    /// Requests a stop. Returns true when one had already been requested (a second Ctrl-C).
    @discardableResult
    public func request() -> Bool {
        lock.withLock {
            defer { requested = true }
            return requested
        }
    }
}
