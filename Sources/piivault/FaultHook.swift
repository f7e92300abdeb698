import Foundation

/// `PIIVAULT_FAULT_EXIT_AFTER_COMMITS=N` (tests only): a hook, called with the number of batches committed so far,
/// that exits 75 once it reaches N, as a kill there would (for `etl`, before that batch's messages are deleted). The
/// crash-safety tests of `etl`, `retention`, `rewrap` and `retokenize` run the command again after it. Without the
/// variable the hook does nothing.
func faultExitAfterCommits(_ environment: [String: String]) -> @Sendable (Int) async throws -> Void {
    guard let exitAfter = environment["PIIVAULT_FAULT_EXIT_AFTER_COMMITS"].flatMap(Int.init) else {
        return { _ in }
    }
    return { committed in
        guard committed >= exitAfter else { return }
        FileHandle.standardError.write(
            Data("piivault: exiting after \(committed) committed batches (PIIVAULT_FAULT_EXIT_AFTER_COMMITS)\n".utf8))
        Foundation.exit(75)
    }
}
