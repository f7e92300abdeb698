import AWS
import CLibFuzzer
import Dispatch
import Foundation

/// The input of one run, read front to back: a harness takes a few bytes to choose what to do, the rest is the
/// document under test. Reading past the end gives zeros, so every input is usable.
public struct FuzzInput {
    public private(set) var bytes: ArraySlice<UInt8>

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = ArraySlice(UnsafeBufferPointer(start: data, count: size))
    }

    /// The next byte (0 past the end).
    public mutating func byte() -> UInt8 {
        guard let first = bytes.first else { return 0 }
        bytes = bytes.dropFirst()
        return first
    }

    /// What is left, as bytes.
    public var rest: [UInt8] { Array(bytes) }

    /// What is left, as text (invalid UTF-8 repaired, as `String(decoding:)` does for every input piivault reads).
    public var restText: String { String(decoding: bytes, as: UTF8.self) }
}

/// Fails the run: libFuzzer records the input as a crash (an invariant of the parser did not hold).
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ what: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() {
        FileHandle.standardError.write(Data("fuzz invariant failed: \(what())\n".utf8))
        fatalError("fuzz invariant failed", file: file, line: line)
    }
}

private final class Completion: @unchecked Sendable {
    let semaphore = DispatchSemaphore(value: 0)
}

/// Runs an async body to its end from the synchronous `LLVMFuzzerTestOneInput`.
public func runBlocking(_ body: @escaping @Sendable () async -> Void) {
    let completion = Completion()
    Task {
        await body()
        completion.semaphore.signal()
    }
    completion.semaphore.wait()
}

/// An HTTP transport that answers every request with one fixed response, as a service (or anything pretending to
/// be one) could. After answering it cancels the calling task, so that a client's retry pause (`Task.sleep`) ends at
/// once: the fuzzer measures parsing, not backoff.
public struct CannedTransport: HTTPTransport {
    public let response: HTTPResponse

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8]) {
        response = HTTPResponse(status: status, headers: headers, body: body)
    }

    public func send(_ request: HTTPRequest, timeout: Duration) async throws -> HTTPResponse {
        withUnsafeCurrentTask { $0?.cancel() }
        return response
    }
}

/// Credentials for signing the requests whose answers are fuzzed (never sent anywhere).
public let fuzzCredentials = AWSCredentials(accessKeyId: "AKIDFUZZ", secretAccessKey: "fuzz-secret",
                                            sessionToken: "fuzz-token", source: "fuzz")

/// The status of a canned answer, chosen by one input byte: mostly success, else an error answer of each kind.
public func fuzzStatus(_ selector: UInt8) -> Int {
    switch selector % 8 {
    case 0, 1, 2, 3: return 200
    case 4: return 400
    case 5: return 403
    case 6: return 500
    default: return 503
    }
}

/// Hands the process to libFuzzer's driver with `testOneInput` (a harness's `LLVMFuzzerTestOneInput`) and exits with
/// its status. The top-level code of each harness's main.swift.
public func runLibFuzzer(_ testOneInput: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
}

/// A valid pointer for an empty input (libFuzzer may pass none).
public let emptyInput = UnsafePointer(UnsafeMutablePointer<UInt8>.allocate(capacity: 1))
