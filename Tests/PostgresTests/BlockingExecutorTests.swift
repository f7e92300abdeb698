import Foundation
@testable import Postgres
import XCTest

/// A closed connection's thread has ended, thread-exit handlers and all, by the time `close()` returns: a thread
/// still ending while the process exits raced the exit's clean-up ("double free or corruption" now and then after a
/// command's work was done). The executor under a connection, without a database.
final class BlockingExecutorTests: XCTestCase {
    /// Set by a thread-exit handler (a pthread key's destructor), which runs after the thread's last job.
    final class ExitFlag: @unchecked Sendable {
        private let condition = NSCondition()
        private var set = false
        func raise() { condition.lock(); set = true; condition.unlock() }
        var isSet: Bool { condition.lock(); defer { condition.unlock() }; return set }
    }

    func testShutdownReturnsOnlyAfterTheThreadsExitHandlersRan() async throws {
        var key = pthread_key_t()
        // The destructor takes its time, as OpenSSL's thread-exit handler may: shutdown must wait for it.
        XCTAssertEqual(pthread_key_create(&key) { value in
            usleep(50_000)
            Unmanaged<ExitFlag>.fromOpaque(value!).takeRetainedValue().raise()
        }, 0)
        defer { pthread_key_delete(key) }
        for _ in 0..<3 {
            let executor = try BlockingExecutor()
            let flag = ExitFlag()
            let handle = UInt(bitPattern: Unmanaged.passRetained(flag).toOpaque())
            let usedKey = key
            try await executor.run { _ = pthread_setspecific(usedKey, UnsafeRawPointer(bitPattern: handle)) }
            XCTAssertFalse(flag.isSet, "the thread is still running")
            executor.shutdown()
            XCTAssertTrue(flag.isSet, "shutdown returned before the thread's exit handlers ran")
        }
    }

    func testAfterShutdownJobsAreRefused() async throws {
        let executor = try BlockingExecutor()
        let answer = try await executor.run { 42 }
        XCTAssertEqual(answer, 42)
        executor.shutdown()
        do {
            _ = try await executor.run { 1 }
            XCTFail("a job ran after shutdown")
        } catch let error as PostgresError {
            XCTAssertEqual(error.kind, .closed)
        }
    }
}
