import Foundation

/// `Tests/crosscheck/aws_front.py`: a loopback stand-in for AWS endpoints (an SQS front that forwards to the
/// emulator, denies credentials or pads an answer; a container credentials endpoint; IMDSv2), alive while this
/// object is. It logs every request it sees as one JSON object per line, which tests read with ``entries()``.
/// `@unchecked Sendable`: every stored property is immutable after `init`.
public final class AWSFront: @unchecked Sendable {
    private let server: ScriptServer
    /// The loopback port.
    public var port: Int { server.port }
    /// The request log.
    public let logFile: URL

    /// `http://127.0.0.1:PORT`.
    public var url: String { "http://127.0.0.1:\(port)" }

    /// Starts the front with the script's settings (see the script's docstring); `log` is added.
    public init(_ settings: [String: Any]) throws {
        logFile = FileManager.default.temporaryDirectory.appendingPathComponent("aws-front-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: logFile.path, contents: nil)
        var settings = settings
        settings["log"] = logFile.path
        server = try ScriptServer(script: "aws_front.py", settings: settings)
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
        server.stop()
        try? FileManager.default.removeItem(at: logFile)
    }
}
