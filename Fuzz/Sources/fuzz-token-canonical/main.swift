import FuzzSupport
import PIIVault

/// `Token` parsing (every token a command is given) and the canonical forms of `ip` and `device_id` (one value, one
/// token). Invariants: a parsed token prints as the text it was parsed from; a canonical form is its own canonical
/// form; a canonical IP parses as an IP.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = FuzzInput(data, size).restText
    if let token = Token(parsing: text) {
        fuzzCheck(token.description == text, "a token does not print as the text it was parsed from")
        fuzzCheck(Token(field: token.field, version: token.version, digest: token.digest) == token,
                  "a token's parts do not make the same token")
    }
    if let ip = try? Canonical.ip(text) {
        fuzzCheck((try? Canonical.ip(ip)) == ip, "the canonical form of an IP is not its own canonical form")
    }
    if let device = try? Canonical.deviceID(text) {
        fuzzCheck((try? Canonical.deviceID(device)) == device,
                  "the canonical form of a device id is not its own canonical form")
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
