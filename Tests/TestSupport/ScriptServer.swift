import Foundation

/// A Python helper server under `Tests/crosscheck` (`canned_server.py`, `aws_front.py`): started with its settings as
/// one JSON argument, it prints the loopback port it listens on as its first line and stops when its standard input
/// closes. Alive while this object is.
/// `@unchecked Sendable`: every stored property is immutable after `init` (the process and pipe are used only to stop it).
public final class ScriptServer: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    /// The loopback port.
    public let port: Int

    /// Starts `Tests/crosscheck/<script>` with `settings` and waits for its port.
    public init(script: String, settings: Any) throws {
        let path = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/\(script)")
        let json = String(decoding: try JSONSerialization.data(withJSONObject: settings), as: UTF8.self)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", path.path, json]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.standardError
        try process.run()
        // The first line is the port.
        var line = Data()
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            throw TestSetupError("\(script) did not print its port")
        }
        self.port = port
    }

    /// Closes the server's standard input and waits for it to end.
    public func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
    }

    deinit { if process.isRunning { process.terminate() } }
}
