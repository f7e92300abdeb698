import Foundation

/// Writes all of `bytes` to `descriptor`, again after a short write or an interrupted call (and after `EAGAIN` too
/// when `retryingWouldBlock`, for a non-blocking descriptor). Returns nil, or the `errno` of the write that failed.
func writeAll(_ bytes: [UInt8], to descriptor: Int32, retryingWouldBlock: Bool = false) -> Int32? {
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR || (retryingWouldBlock && errno == EAGAIN) { continue }
            return errno
        }
        offset += written
    }
    return nil
}
