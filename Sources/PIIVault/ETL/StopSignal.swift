import Foundation
import NIOConcurrencyHelpers

/// A stop request (SIGTERM, SIGINT, or a caller's own): the run finishes the batch in hand and ends without
/// receiving more. The command line turns signals into ``request()``; the core only reads the flag.
public final class StopSignal: Sendable {
    private let requested = NIOLockedValueBox(false)
    /// A signal whose stop is this one's too (the run's, for a part of the run that may also stop on its own).
    private let parent: StopSignal?

    public init(parent: StopSignal? = nil) {
        self.parent = parent
    }

    /// Whether a stop was requested, of this signal or its parent.
    public var isRequested: Bool { requested.withLockedValue { $0 } || (parent?.isRequested ?? false) }

    /// Requests a stop. Returns true when one had already been requested (a second Ctrl-C).
    @discardableResult
    public func request() -> Bool {
        requested.withLockedValue { requested in
            defer { requested = true }
            return requested
        }
    }
}
