import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A minimal blocking HTTP/1.1 client for the test services on loopback: one request per connection
/// (`Connection: close`), the answer read to the end. Tests use it instead of `URLSession`, whose Linux implementation
/// keeps a thread busy in the kernel for as long as the process lives once it has been used, which on two cores takes
/// time from every other test.
public enum LoopbackHTTP {
    /// Sends a POST to `host:port` (an IPv4 address or `localhost`); returns the status code and the body.
    public static func post(host: String, port: Int, path: String, headers: [String: String], body: [UInt8],
                            timeout: Int = 30) throws -> (status: Int, body: [UInt8]) {
        let socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw TestSetupError("socket: \(String(cString: strerror(errno)))") }
        defer { close(socketFD) }
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(socketFD, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &address.sin_addr) == 1 else {
            throw TestSetupError("\(host) is not an IPv4 address")
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw TestSetupError("cannot connect to \(host):\(port): \(String(cString: strerror(errno)))")
        }
        var head = "POST \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        let request = Array((head + "\r\n").utf8) + body
        var sent = 0
        while sent < request.count {
            let written = request[sent...].withUnsafeBytes { write(socketFD, $0.baseAddress, $0.count) }
            guard written > 0 else { throw TestSetupError("writing to \(host):\(port) failed: \(String(cString: strerror(errno)))") }
            sent += written
        }
        var answer: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(socketFD, $0.baseAddress, $0.count) }
            if count == 0 { break }
            guard count > 0 else { throw TestSetupError("reading from \(host):\(port) failed: \(String(cString: strerror(errno)))") }
            answer += buffer[0..<count]
        }
        return try parse(answer)
    }

    /// The status and body of a whole HTTP/1.1 answer (a Content-Length body or a chunked one).
    static func parse(_ answer: [UInt8]) throws -> (status: Int, body: [UInt8]) {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0...max(0, answer.count - 4)).first(where: { Array(answer[$0..<min($0 + 4, answer.count)]) == separator })
        else { throw TestSetupError("an HTTP answer without headers") }
        let head = String(decoding: answer[0..<end], as: UTF8.self).split(separator: "\r\n")
        let statusParts = head.first?.split(separator: " ") ?? []
        guard statusParts.count >= 2, let status = Int(statusParts[1]) else { throw TestSetupError("a bad HTTP status line") }
        var body = Array(answer[(end + 4)...])
        let chunked = head.dropFirst().contains { $0.lowercased().hasPrefix("transfer-encoding:") && $0.lowercased().contains("chunked") }
        if chunked {
            var decoded: [UInt8] = []
            var index = 0
            while let lineEnd = (index..<max(index, body.count - 1)).first(where: { body[$0] == 13 && body[$0 + 1] == 10 }),
                  let size = Int(String(decoding: body[index..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16),
                  size > 0 {
                decoded += body[(lineEnd + 2)..<min(lineEnd + 2 + size, body.count)]
                index = lineEnd + 2 + size + 2
            }
            body = decoded
        }
        return (status, body)
    }
}
