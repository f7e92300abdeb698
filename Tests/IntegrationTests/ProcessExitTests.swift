import Foundation
import TestSupport
import XCTest

/// `ETLTests.testNoCommandRunsOpenSSLsExitCleanup`: the real binary must never run OpenSSL's exit-time clean-up. It
/// frees OpenSSL's list of threads while a connection's thread may still be ending, and a process now and then crashed
/// after its work was done ("double free or corruption"). `piivault` asks OpenSSL for no clean-up before anything starts it; any OpenSSL call that starts the
/// library first (OpenSSL 3's one-shot `SHA256()` did, in `migrate`'s checksums) brings the clean-up back. Each command
/// runs under gdb with a breakpoint on `OPENSSL_cleanup`, which it must never reach.
extension ETLTests {
    private func runUnderGDB(_ arguments: [String], environment: [String: String?] = [:]) throws -> String {
        let gdb = "/usr/bin/gdb"
        guard FileManager.default.isExecutableFile(atPath: gdb) else {
            throw TestSetupError("gdb is not installed; run scripts/install-deps")
        }
        // A child of the test process inherits the signal mask of the thread that started it, which blocks
        // SIGCHLD: gdb would never hear that its inferior stopped. Python clears the mask, sets an alarm that ends
        // gdb after 120 s whatever happens (an alarm outlives exec), then becomes gdb. `info breakpoints` at the end
        // shows the breakpoint's address, or <PENDING> if gdb never found OPENSSL_cleanup to watch.
        let unblockThenExec = """
            import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); signal.alarm(120); \
            os.execv(sys.argv[1], sys.argv[1:])
            """
        let result = try runProcess("/usr/bin/python3", ["-c", unblockThenExec, gdb, "-batch", "-nx",
                                                         "-ex", "set breakpoint pending on", "-ex", "break OPENSSL_cleanup",
                                                         "-ex", "run", "-ex", "backtrace 8", "-ex", "info breakpoints",
                                                         "--args", try piivaultBinary()] + arguments,
                                    environment: environment)
        return result.stdout + result.stderr
    }

    func testNoCommandRunsOpenSSLsExitCleanup() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("exit-\(ScratchDatabase.randomHex(4)).ndjson")
        try #"{"user_id": "u1", "device_type": "ios", "ip": "192.0.2.1", "device_id": "d-1"}"#
            .appending("\n").write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let migrations = TestServices.repositoryRoot.appendingPathComponent("migrations").path
        let etl = try etlInvocation(["--from-file", file.path])
        let commands: [(name: String, arguments: [String], environment: [String: String?])] = [
            ("migrate", ["migrate", "--database-url", database.url, "--migrations-dir", migrations], [:]),
            ("etl --from-file", etl.arguments, etl.environment),
            ("runs", ["runs", "--database-url", database.url], [:]),
        ]
        for command in commands {
            let output = try runUnderGDB(command.arguments, environment: command.environment)
            XCTAssertFalse(output.contains("Breakpoint 1, "),
                           "\(command.name) ran OPENSSL_cleanup at exit:\n\(output.suffix(2_000))")
            XCTAssertTrue(output.contains("exited normally"), "\(command.name) did not exit 0:\n\(output.suffix(2_000))")
            XCTAssertTrue(output.contains("<OPENSSL_cleanup"),
                          "gdb did not find OPENSSL_cleanup to watch in \(command.name):\n\(output.suffix(2_000))")
        }
    }
}
