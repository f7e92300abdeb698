import Foundation

/// A dedicated thread that runs blocking work (libpq calls) one job at a time, so that it never occupies
/// Swift's cooperative thread pool (two threads on a two-core machine).
///
/// A plain POSIX thread, which `shutdown()` waits for: when a connection's `close()` returns, its thread has ended,
/// thread-exit handlers and all. A thread still ending while the process exits ran OpenSSL's (libpq's TLS) and
/// Foundation's thread-exit code against memory the exit was freeing: now and then a finished process died with
/// "double free or corruption" or SIGSEGV after its work was done.
final class BlockingExecutor: @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var stopping = false
    /// The thread, until it is joined or detached (exactly once, under `condition`).
    private var thread: pthread_t?

    /// Starts the thread; throws when the system refuses one (out of memory or of threads).
    init() throws {
        let context = Unmanaged.passRetained(self).toOpaque()
        #if canImport(Darwin)
        var created: pthread_t?
        let status = pthread_create(&created, nil, { context in
            BlockingExecutor.threadMain(context)
            return nil
        }, context)
        #else
        var created = pthread_t()
        let status = pthread_create(&created, nil, { context in
            BlockingExecutor.threadMain(context!)
            return nil
        }, context)
        #endif
        guard status == 0 else {
            Unmanaged<BlockingExecutor>.fromOpaque(context).release()
            throw PostgresError(kind: .connectionFailed,
                                message: "cannot start a thread for the database connection (error \(status))")
        }
        thread = created
    }

    /// The thread's body: the executor was retained for it by `init`.
    private static func threadMain(_ context: UnsafeMutableRawPointer) {
        Unmanaged<BlockingExecutor>.fromOpaque(context).takeRetainedValue().loop()
    }

    /// Runs `body` on the executor's thread and returns its result to the caller's task.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            let accepted = enqueue {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
            if !accepted { continuation.resume(throwing: PostgresError.closed) }
        }
    }

    /// Lets queued jobs finish, then ends the thread and waits until it has ended. Called on the thread itself (a
    /// connection released by its last job, never closed), it cannot wait for itself: the thread ends on its own.
    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        let toEnd = thread
        thread = nil
        condition.unlock()
        guard let toEnd else { return }
        if pthread_equal(toEnd, pthread_self()) != 0 {
            pthread_detach(toEnd)
        } else {
            pthread_join(toEnd, nil)
        }
    }

    private func enqueue(_ job: @escaping () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if stopping { return false }
        jobs.append(job)
        condition.signal()
        return true
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
