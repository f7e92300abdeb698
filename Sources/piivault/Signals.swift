import Dispatch
import Foundation
import PIIVault

/// Turns SIGINT and SIGTERM into a stop request; a second signal ends the process at once (exit 130).
enum SignalHandlers {
    /// Kept alive for the life of the process: a released dispatch source stops delivering.
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []

    /// Installs the handlers; call once, before the run starts. `firstSignal` runs at the first signal (to say
    /// that the run stops after the batch in hand).
    static func install(stop: StopSignal, firstSignal: @escaping @Sendable () -> Void = {}) {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                if stop.request() { exit(130) }
                firstSignal()
            }
            source.resume()
            sources.append(source)
        }
    }
}
