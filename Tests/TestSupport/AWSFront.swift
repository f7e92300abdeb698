import Foundation

/// `Tests/crosscheck/aws_front.py`: a loopback stand-in for AWS endpoints (an SQS front that forwards to the
/// emulator, denies credentials or pads an answer; a container credentials endpoint; IMDSv2), alive while this
/// object is. It logs every request it sees as one JSON object per line, which tests read with ``entries()``.
/// `@unchecked Sendable`: every stored property is immutable after `init` (the process and pipes are used only to
/// stop it).
public final class AWSFront: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe()
    /// The loopback port.
    public let port: Int
    /// The request log.
    public let logFile: URL

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(port)" }

    /// Starts the front with the script's settings (see the script's docstring); `log` is added.
    public init(_ settings: [String: Any]) throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("aws-front-\(UUID().uuidString).log")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        var settings = settings
        settings["log"] = logFile.path
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/aws_front.py")
        let json = String(decoding: try JSONSerialization.data(withJSONObject: settings), as: UTF8.self)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, json]
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = input
        process.standardError = FileHandle.standardError
        try process.run()
        var line = Data()
        while true {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        guard let port = Int(String(decoding: line, as: UTF8.self)) else {
            throw TestSetupError("aws_front.py did not print its port")
        }
        self.port = port
    }

    /// Every request logged so far, in order.
    public func entries() -> [[String: Any]] {
        guard let text = try? String(contentsOf: logFile, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// The logged requests of one kind (`sqs`, `container`, `imds`, `oversized`).
    public func entries(kind: String) -> [[String: Any]] { entries().filter { $0["kind"] as? String == kind } }

    /// Stops the server and removes its log.
    public func stop() {
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: logFile)
    }

    deinit { if process.isRunning { process.terminate() } }
}
