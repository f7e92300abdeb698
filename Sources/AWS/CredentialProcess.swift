import Foundation

/// `credential_process`: runs the command (split like a POSIX shell would split it, without a shell) and reads its
/// standard output: `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}`. Its standard
/// error is discarded, since it may hold secrets; messages give only the exit status. A process that has not
/// finished after `timeout`, or prints more than `maxOutput` bytes, is killed with its whole process group, so that a
/// hung or runaway helper can neither hang the run nor take its memory.
enum CredentialProcess {
    static let timeout: TimeInterval = 60

    static func run(_ command: String, profile: String, timeout: TimeInterval = timeout) async throws
        -> AWSCredentials {
        let arguments = try split(command, profile: profile)
        let outcome: Outcome
        do {
            outcome = try await launch(arguments, timeout: timeout)
        } catch {
            throw AWSError(kind: .configuration,
                           message: "profile \"\(profile)\": cannot run credential_process \(arguments[0]); check the path")
        }
        let output: Data
        let status: Int32
        switch outcome {
        case .finished(let bytes, let exitStatus):
            (output, status) = (Data(bytes), exitStatus)
        case .timedOut:
            throw AWSError(kind: .unavailable,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) did not finish within \(Int(timeout)) s and was stopped with its children; run it by hand to see why")
        case .outputTooLarge:
            throw AWSError(kind: .credentialsRefused,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) printed more than \(maxOutput / 1024) KiB and was stopped; it should print one JSON object, run it by hand to see why")
        }
        guard status == 0 else {
            throw AWSError(kind: .credentialsRefused,
                           message: "profile \"\(profile)\": credential_process \(arguments[0]) exited with status \(status); run it by hand to see why")
        }
        return try credentials(fromOutput: output, profile: profile, program: arguments[0])
    }

    /// The credentials in a `credential_process` program's standard output (the JSON object of version 1).
    static func credentials(fromOutput output: Data, profile: String, program: String) throws -> AWSCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(program) printed no JSON object")
        }
        guard (object["Version"] as? Int) == 1 else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(program) answered without \"Version\": 1; only version 1 is understood")
        }
        guard let accessKey = object["AccessKeyId"] as? String, let secretKey = object["SecretAccessKey"] as? String
        else {
            throw AWSError(kind: .invalidResponse,
                           message: "profile \"\(profile)\": credential_process \(program) answered without AccessKeyId and SecretAccessKey")
        }
        var expiration: Date?
        if let text = object["Expiration"] as? String {
            guard let date = parseISO8601(text) else {
                throw AWSError(kind: .invalidResponse,
                               message: "profile \"\(profile)\": credential_process \(program) gave an Expiration that is not ISO 8601")
            }
            expiration = date
        }
        return AWSCredentials(accessKeyId: accessKey, secretAccessKey: secretKey,
                              sessionToken: object["SessionToken"] as? String, expiration: expiration,
                              source: "profile \(profile) (credential_process)")
    }

    /// How a run of the program ended.
    enum Outcome {
        case finished(output: [UInt8], status: Int32)
        case timedOut
        case outputTooLarge
    }

    /// Runs the program off the cooperative pool (it blocks while reading) in a process group of its own, so that at
    /// the time limit the whole group is killed: a shell's children too, which may hold the pipe open after the shell
    /// itself is gone. Reads at most `maxOutput` bytes; standard input and error are /dev/null.
    static func launch(_ arguments: [String], timeout: TimeInterval, maxOutput: Int = maxOutput) async throws
        -> Outcome {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result { try runBlocking(arguments, timeout: timeout, maxOutput: maxOutput) })
            }
        }
    }

    /// The most a credential process may print: its answer is one small JSON object, and an endless one must not
    /// take the run's memory (the SDKs read to the end).
    static let maxOutput = 1 << 20

    private static func runBlocking(_ arguments: [String], timeout: TimeInterval, maxOutput: Int) throws -> Outcome {
        var pipeEnds: [Int32] = [0, 0]
        guard pipe(&pipeEnds) == 0 else { throw SpawnFailure(code: errno) }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        // Neither end may leak into a process started elsewhere; the child gets the write end as its stdout.
        _ = fcntl(readEnd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        let pid: pid_t
        do {
            defer { close(writeEnd) }
            pid = try spawn(arguments, stdout: writeEnd)
        } catch {
            close(readEnd)
            throw error
        }
        defer { close(readEnd) }
        let deadline = Date().addingTimeInterval(timeout)
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        var outcome: Outcome?
        reading: while true {
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { outcome = .timedOut; break }
            var ready = pollfd(fd: readEnd, events: Int16(POLLIN), revents: 0)
            let polled = poll(&ready, 1, Int32(min(remaining * 1000 + 1, 1000)))
            if polled < 0, errno != EINTR { outcome = .timedOut; break }
            guard polled > 0 else { continue }
            let count = read(readEnd, &buffer, buffer.count)
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                break reading
            }
            if count == 0 { break reading }  // every holder of the pipe closed it
            output += buffer[0..<count]
            if output.count > maxOutput { outcome = .outputTooLarge; break }
        }
        if outcome == nil {
            // The output ended; the program may still be running (it closed its standard output early).
            while true {
                if let status = exited(pid) { return .finished(output: output, status: status) }
                if deadline.timeIntervalSinceNow <= 0 { outcome = .timedOut; break }
                usleep(5_000)
            }
        }
        kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return outcome ?? .timedOut
    }

    /// The exit status once the program has ended (128 + the signal's number when a signal ended it), else nil.
    private static func exited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        guard result == pid else { return nil }
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    /// Starts the program (searched on PATH when its name has no slash) in a new process group, with default signal
    /// handling and no blocked signals, standard output on `stdout`.
    private static func spawn(_ arguments: [String], stdout: Int32) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0)
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        posix_spawnattr_setsigmask(&attributes, &noSignals)
        var allSignals = sigset_t()
        sigfillset(&allSignals)
        posix_spawnattr_setsigdefault(&attributes, &allSignals)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = arguments[0].contains("/")
            ? posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
            : posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else { throw SpawnFailure(code: result) }
        return pid
    }

    /// Splits a command line into words as botocore does (Python's `shlex.split`): blanks separate, single quotes keep
    /// everything, double quotes keep all but `\"` and `\\` (a backslash before any other character stays), a
    /// backslash outside quotes escapes the next character.
    static func split(_ command: String, profile: String) throws -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var escaped = false
        for character in command {
            if escaped {
                if quote == "\"" && character != "\"" && character != "\\" { current.append("\\") }
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

/// The program could not be started (an `errno` value); reported as "cannot run credential_process".
struct SpawnFailure: Error {
    let code: Int32
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
