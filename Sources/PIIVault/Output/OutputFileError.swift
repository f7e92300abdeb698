import Foundation

/// A file piivault was asked to write (a report, an export) could not be written. The message is one line in
/// piivault's voice: the path and the system's reason, never Foundation's `NSCocoaErrorDomain` text.
public struct OutputFileError: PIIVaultReportableError {
    public let path: String
    public let reason: String

    public init(path: String, error: any Error) {
        self.path = path
        self.reason = FileErrorReason.describe(error)
    }

    public var message: String { "cannot write \(path): \(reason); check the path and that its folder exists and is writable" }
    public var exitCode: PIIVaultExitCode { .failure }
}

/// The system's words for a Foundation file error: the underlying POSIX error's text (`No such file or directory`)
/// when there is one, else a plain sentence for the Cocoa code.
public enum FileErrorReason {
    public static func describe(_ error: any Error) -> String {
        if let error = error as? AtomicFileError { return error.reason }
        let nsError = error as NSError
        if nsError.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(nsError.code))) }
        if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        guard nsError.domain == NSCocoaErrorDomain else { return String(describing: error) }
        switch CocoaError.Code(rawValue: nsError.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
        case .fileWriteNoPermission, .fileReadNoPermission: return String(cString: strerror(EACCES))
        case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
        case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
        default: return "a file operation failed (code \(nsError.code))"
        }
    }
}
