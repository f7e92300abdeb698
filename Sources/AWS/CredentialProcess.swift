import Foundation
import NIOConcurrencyHelpers

/// `credential_process`: runs the command (split like a POSIX shell would split it, without a shell) and reads its
/// standard output: `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`. Its standard
/// error is discarded, since it may hold secrets; messages give only the exit status. A process that has not
/// finished after `timeout` is terminated, so that a hung helper cannot hang the run.
enum CredentialProcess {
    static let timeout: TimeInterval = 60

    static func run(_ command: String, profile: String, timeout: TimeInterval = timeout) async throws
        -> AWSCredentials {
        let arguments = try split(command, profile: profile)
        let output: Data
        let status: Int32
        let timedOut: Bool
        do {
            (output, status, timedOut) = try await launch(arguments, timeout: timeout)
        } catch {
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile)\": cannot run credential_process \(arguments[0]); check the path")
        }
        if timedOut {
            throw AWSError(kind: .unavailable,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) did not finish within \(Int(timeout)) s and was stopped; run it by hand to see why")
        }
        guard status == 0 else {
            throw AWSError(kind: .credentialsRefused,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) exited with status \(status); run it by hand to see why")
        }
        guard let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) printed no JSON object")
        }
        guard (object["Version"] as? Int) == 1 else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) answered without \"Version\": 1; only version 1 is understood")
        }
        guard let accessKey = object["AccessKeyId"] as? String, let secretKey = object["SecretAccessKey"] as? String
        else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) answered without AccessKeyId and SecretAccessKey")
        }
        var expiration: Date?
        if let text = object["Expiration"] as? String {
            guard let date = parseISO8601(text) else {
                throw AWSError(kind: .invalidResponse,
                               message: "profile \"\(profile)\": credential_process \(arguments[0]) gave an Expiration that is not ISO 8601")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                              sessionToken: object["SessionToken"] as? String, expiration: expiration,
                              source: "profile \(profile) (credential_process)")
    }

    /// Runs the program off the cooperative pool (it blocks while reading) and returns its output, its status and
    /// whether it was stopped for taking longer than `timeout`.
    private static func launch(_ arguments: [String], timeout: TimeInterval) async throws -> (Data, Int32, Bool) {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let process = Process()
                let program = arguments[0]
                if program.contains("/") {
                    process.executableURL = URL(fileURLWithPath: program)
                    process.arguments = Array(arguments.dropFirst())
                } else {
                    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                    process.arguments = arguments
                }
                let output = Pipe()
                process.standardOutput = output
                process.standardError = FileHandle.nullDevice
                process.standardInput = FileHandle.nullDevice
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                // The watchdog signals the process itself (by pid: it has not been reaped while we wait on it).
                let stopped = StoppedFlag()
                let pid = process.processIdentifier
                let watchdog = DispatchWorkItem {
                    stopped.set()
                    kill(pid, SIGKILL)
                }
                DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                watchdog.cancel()
                continuation.resume(returning: (data, process.terminationStatus, stopped.isSet))
            }
        }
    }

    /// Splits a command line into words: blanks separate, single quotes keep everything, double quotes keep all but
    /// `\"` and `\\`, a backslash outside quotes escapes the next character.
    static func split(_ command: String, profile: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for character in command {
            if escaped {
                current.append(character)
                escaped = false
                continue
            }
            if let open = quote {
                if character == open {
                    quote = nil
                } else if character == "\\" && open == "\"" {
                    escaped = true
                } else {
                    current.append(character)
                }
                continue
            }
            switch character {
            case "'", "\"":
                quote = character
                inWord = true
            case "\\":
                escaped = true
                inWord = true
            case " ", "\t":
                if inWord { words.append(current) }
                current = ""
                inWord = false
            default:
                current.append(character)
                inWord = true
            }
        }
        if quote != nil || escaped {
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile)\": credential_process has an unclosed quote or a trailing backslash; fix it")
        }
        if inWord { words.append(current) }
        guard !words.isEmpty else {
            throw AWSError(kind: .configuration, message: "profile \"\(profile)\": credential_process is empty; fix it")
        }
        return words
    }
}

/// Whether the watchdog stopped the process.
private final class StoppedFlag: Sendable {
    private let value = NIOLockedValueBox(false)
    func set() { value.withLockedValue { $0 = true } }
    var isSet: Bool { value.withLockedValue { $0 } }
}

/// `credential_process` word splitting and running, public for tests.
public enum CredentialProcessSplit {
    /// Runs a command as the profile provider would, with a timeout.
    public static func run(_ command: String, timeout: TimeInterval) async throws -> AWSCredentials {
        try await CredentialProcess.run(command, profile: "test", timeout: timeout)
    }

    /// The words of a command line (see `CredentialProcess.split`).
    public static func split(_ command: String) throws -> [String] {
        try CredentialProcess.split(command, profile: "test")
    }
}
