import Foundation
import NIOConcurrencyHelpers

/// A stop request (SIGTERM, SIGINT, or a caller's own): the run finishes the batch in hand and ends without
/// receiving more. The command line turns signals into ``request()``; the core only reads the flag.
public final class StopSignal: Sendable {
    private let requested = NIOLockedValueBox(false)

    public init() {}

    /// Whether a stop was requested.
    public var isRequested: Bool { requested.withLockedValue { $0 } }

    /// Requests a stop. Returns true when one had already been requested (a second Ctrl-C).
    @discardableResult
    public func request() -> Bool {
        requested.withLockedValue { requested in
            defer { requested = true }
            return requested
        }
    }
}
