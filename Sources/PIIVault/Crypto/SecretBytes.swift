import CSodium

/// Secret bytes in libsodium's guarded memory: `sodium_malloc` places them between guard pages, locks them out of
/// swap (`mlock`) and they are wiped by `sodium_free` when the last reference goes. Two values compare in constant
/// time. Descriptions never show the bytes.
///
/// The bytes are written only while the value is being built (by the initialisers in this module); afterwards they
/// are read-only, which is what makes sharing across threads safe.
public final class SecretBytes: @unchecked Sendable {
    /// How many bytes are held.
    public let count: Int
    private let pointer: UnsafeMutableRawPointer

    /// `count` zero bytes in guarded memory; `fill` writes them once (for example straight from a terminal, so that
    /// no other copy exists).
    public init(count: Int, fill: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        Sodium.ensureInitialized()
        precondition(count > 0, "SecretBytes needs at least one byte")
        guard let pointer = sodium_malloc(count) else {
            fatalError("sodium_malloc failed: out of memory or the mlock limit (ulimit -l) is too low")
        }
        self.count = count
        self.pointer = pointer
        sodium_memzero(pointer, count)
        try fill(UnsafeMutableRawBufferPointer(start: pointer, count: count))
    }

    /// A copy of `bytes` in guarded memory. The caller remains responsible for wiping its own copy.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(count: bytes.count) { $0.copyMemory(from: bytes) }
    }

    /// A copy of `bytes` in guarded memory; the array passed in is wiped afterwards, because it is the caller's
    /// only other copy.
    public convenience init(consuming bytes: inout [UInt8]) {
        self.init(count: bytes.count) { dst in bytes.withUnsafeBytes { dst.copyMemory(from: $0) } }
        sodium_memzero(&bytes, bytes.count)
    }

    /// `count` random bytes from the operating system's CSPRNG.
    public static func random(count: Int) -> SecretBytes {
        SecretBytes(count: count) { Sodium.randomBytes($0) }
    }

    deinit {
        sodium_free(pointer)  // wipes before freeing
    }

    /// Read access to the bytes, valid only inside `body`.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: pointer, count: count))
    }

    /// The bytes as `UnsafePointer<UInt8>` for C calls, valid only inside `body`.
    func withUInt8Pointer<R>(_ body: (UnsafePointer<UInt8>) throws -> R) rethrows -> R {
        try body(UnsafePointer(pointer.assumingMemoryBound(to: UInt8.self)))
    }

    /// Constant-time equality (`sodium_memcmp`); different lengths are unequal.
    public func constantTimeEquals(_ other: SecretBytes) -> Bool {
        guard count == other.count else { return false }
        return sodium_memcmp(pointer, other.pointer, count) == 0
    }
}

extension SecretBytes: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { "SecretBytes(\(count) bytes, redacted)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .class) }
}
