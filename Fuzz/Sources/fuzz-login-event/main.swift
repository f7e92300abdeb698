import FuzzSupport
import PIIVault

/// The message body the ETL receives from the queue: the strict JSON parser, then the message rules, then the
/// canonical forms of the PII fields of an accepted event (as the ETL tokenizes them).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? StrictJSONParser.parse(body)
    if let event = try? LoginEvent.parse(body: body) {
        _ = try? Canonical.ip(event.ip)
        _ = try? Canonical.deviceID(event.deviceID)
        if let version = event.appVersionText { _ = LoginEvent.appVersionNumber(version) }
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
