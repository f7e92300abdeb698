import Foundation

/// Replacing a file whose path the user gave (metrics, summary, report) so that a reader never sees half of it, and
/// nothing planted beside it can redirect the write.
public enum AtomicFile {
    /// Replaces `path` with `bytes`, with permissions `mode`: a temporary file is created beside it by `mkstemp`
    /// (`O_EXCL` under a random name, so a planted symlink or file is never opened, let alone followed or
    /// truncated), given its mode with `fchmod` on the open descriptor (never through a path), written, then renamed
    /// over `path` (a rename replaces a symlink at `path` itself, never its target). On failure the temporary file is
    /// removed and the reason (`strerror`) thrown.
    public static func replace(_ path: String, with bytes: [UInt8], mode: mode_t) throws(AtomicFileError) {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        var template = Array((folder + "/." + url.lastPathComponent + ".XXXXXX").utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw AtomicFileError(reason: String(cString: strerror(errno))) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        let temporary = String(cString: template)
        var failure: String?
        if fchmod(descriptor, mode) != 0 { failure = String(cString: strerror(errno)) }
        if failure == nil, let code = writeAll(bytes, to: descriptor) { failure = String(cString: strerror(code)) }
        if close(descriptor) != 0, failure == nil { failure = String(cString: strerror(errno)) }
        if failure == nil, rename(temporary, path) != 0 { failure = String(cString: strerror(errno)) }
        if let failure {
            unlink(temporary)
            throw AtomicFileError(reason: failure)
        }
    }
}

/// Why `AtomicFile.replace` failed: the system's words (`Permission denied`, `No such file or directory`); the
/// caller names the file and what to do.
public struct AtomicFileError: Error, Sendable {
    public let reason: String
}
