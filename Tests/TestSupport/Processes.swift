import Foundation

/// What a finished child process left behind.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
    public let stdoutData: Data
}

/// Runs a program to completion, feeding it `input` and capturing both outputs.
/// `environment` entries are added to (or, with a nil value, removed from) this process's environment.
@discardableResult
public func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String?] = [:], input: Data? = nil,
    currentDirectory: URL? = nil
) throws -> ProcessResult {
    let process = Process()
    if executable.contains("/") {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
    }
    var env = ProcessInfo.processInfo.environment
    for (key, value) in environment { env[key] = value }
    process.environment = env
    if let currentDirectory { process.currentDirectoryURL = currentDirectory }
    let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
    process.standardOutput = outPipe
    process.standardError = errPipe
    process.standardInput = inPipe
    try process.run()
    // Read both pipes concurrently so that neither can fill up and stall the child.
    let errData = LockedData()
    let errThread = Thread { errData.set(errPipe.fileHandleForReading.readDataToEndOfFile()) }
    errThread.start()
    if let input { inPipe.fileHandleForWriting.write(input) }
    try? inPipe.fileHandleForWriting.close()
    let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let err = errData.wait()
    return ProcessResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: err, as: UTF8.self),
        stdoutData: outData)
}

private final class LockedData: @unchecked Sendable {
    private let condition = NSCondition()
    private var data: Data?
    func set(_ value: Data) {
        condition.lock(); data = value; condition.broadcast(); condition.unlock()
    }
    func wait() -> Data {
        condition.lock(); defer { condition.unlock() }
        while data == nil { condition.wait() }
        return data!
    }
}

/// The `piivault` binary under test: `PIIVAULT_TEST_BINARY` when set (`make test` sets it to the release build, the
/// binary users run), else the one built next to the test bundle (`swift build` before `swift test`).
public func piivaultBinary() throws -> String {
    if let path = ProcessInfo.processInfo.environment["PIIVAULT_TEST_BINARY"], !path.isEmpty {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw TestSetupError("PIIVAULT_TEST_BINARY=\(path) is not an executable; build it or unset the variable")
        }
        return path
    }
    let testBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    var dir = testBinary.deletingLastPathComponent()
    for _ in 0..<4 {
        let candidate = dir.appendingPathComponent("piivault")
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: candidate.path, isDirectory: &isDir), !isDir.boolValue {
            return candidate.path
        }
        dir.deleteLastPathComponent()
    }
    let fallback = TestServices.repositoryRoot.appendingPathComponent(".build/debug/piivault")
    if FileManager.default.isExecutableFile(atPath: fallback.path) { return fallback.path }
    throw TestSetupError("the piivault binary was not found next to the tests; run `swift build` before `swift test`")
}

/// Runs the real `piivault` binary.
@discardableResult
public func runPiivault(
    _ arguments: [String], environment: [String: String?] = [:], input: Data? = nil, currentDirectory: URL? = nil
) throws -> ProcessResult {
    try runProcess(try piivaultBinary(), arguments, environment: environment, input: input,
                   currentDirectory: currentDirectory)
}

/// A child process left running in the background, for tests that act on it mid-run (a signal, a dropped
/// database). Its output goes to temporary files rather than pipes, so it can never stall on a full pipe.
public final class BackgroundProcess: @unchecked Sendable {
    private let process = Process()
    private let stdoutURL: URL
    private let stderrURL: URL

    /// Starts `executable` with `arguments`; `environment` works as for `runProcess`.
    public init(_ executable: String, _ arguments: [String], environment: [String: String?] = [:]) throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("bg-\(UUID().uuidString)")
        stdoutURL = base.appendingPathExtension("out")
        stderrURL = base.appendingPathExtension("err")
        _ = FileManager.default.createFile(atPath: stdoutURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = try FileHandle(forWritingTo: stdoutURL)
        process.standardError = try FileHandle(forWritingTo: stderrURL)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
        try? FileManager.default.removeItem(at: stdoutURL)
        try? FileManager.default.removeItem(at: stderrURL)
    }

    /// Whether the process has not exited yet.
    public var isRunning: Bool { process.isRunning }

    /// Sends `signal` (for example `SIGKILL`) to the process.
    public func send(_ signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits up to `timeout` seconds for the process to exit; returns false when it is still running.
    public func waitForExit(timeout: Double) async throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() >= deadline { return false }
            try await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    /// The exit status, or the signal number when a signal ended it (see `killedBySignal`). Only after exit.
    public var status: Int32 { process.terminationStatus }

    /// True when a signal ended the process. Only after exit.
    public var killedBySignal: Bool { process.terminationReason == .uncaughtSignal }

    /// Everything written to standard output so far.
    public var stdout: String { (try? String(contentsOf: stdoutURL, encoding: .utf8)) ?? "" }

    /// Everything written to standard error so far.
    public var stderr: String { (try? String(contentsOf: stderrURL, encoding: .utf8)) ?? "" }
}
