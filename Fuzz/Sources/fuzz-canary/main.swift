import FuzzSupport
#if canImport(Glibc)
import Glibc
#endif

/// Not a parser: the self-test of `scripts/fuzz` (run before the harnesses by `make fuzz`, or alone with
/// `scripts/fuzz --self-test`). Each input names a defect the run must catch and report as a failure: `CRASH` reads
/// past a heap buffer (AddressSanitizer), `TRAP` fails a Swift precondition, `LEAK` loses an allocation
/// (LeakSanitizer), `HANG` never returns (libFuzzer's `-timeout`). Anything else does nothing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    switch text {
    case "CRASH":
        readPastTheEnd()
    case "TRAP":
        precondition(size == 0, "the self-test's deliberate failure")
    case "LEAK":
        loseAnAllocation()
    case "HANG":
        while true { sleep(1) }
    default:
        break
    }
    return 0
}

// Unoptimised, so that neither the read nor the allocation is removed as dead code.

@_optimize(none)
func readPastTheEnd() {
    let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 4)
    defer { buffer.deallocate() }
    buffer.initialize(repeating: 0, count: 4)
    canaryByte = (buffer + 4).pointee
}

@_optimize(none)
func loseAnAllocation() {
    let lost = malloc(64)
    memset(lost!, 1, 64)
}

nonisolated(unsafe) var canaryByte: UInt8 = 0

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
