import Foundation

/// `credential_process`: runs the command (split like a POSIX shell would split it, without a shell) and reads its
/// standard output: `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`. Its standard
/// error is discarded, since it may hold secrets; messages give only the exit status.
enum CredentialProcess {
    static func run(_ command: String, profile: String) async throws -> AWSCredentials {
        let arguments = try split(command, profile: profile)
        let output: Data
        let status: Int32
        do {
            (output, status) = try await launch(arguments)
        } catch {
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile)\": cannot run credential_process \(arguments[0]); check the path")
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

    /// Runs the program off the cooperative pool (it blocks while reading) and returns its output and status.
    private static func launch(_ arguments: [String]) async throws -> (Data, Int32) {
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
                let data = output.fileHandleForReading.readDataToEndOfFile()
                process.waitUntilExit()
                continuation.resume(returning: (data, process.terminationStatus))
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

/// `credential_process` word splitting, public for tests.
public enum CredentialProcessSplit {
    /// The words of a command line (see `CredentialProcess.split`).
    public static func split(_ command: String) throws -> [String] {
        try CredentialProcess.split(command, profile: "test")
    }
}
