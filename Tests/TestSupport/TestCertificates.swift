import Foundation

/// A throwaway certificate authority and a server certificate it signed, made with `openssl` in a temporary folder
/// for the TLS tests. The server certificate names only the DNS names given (no IP address), so that a client that
/// connects to `127.0.0.1` must refuse it.
public struct TestCertificates: Sendable {
    /// The folder holding the files.
    public let directory: URL
    /// The CA's certificate (PEM): what a client is told to trust.
    public var caCertificate: URL { directory.appendingPathComponent("ca.crt") }
    /// The server's certificate (PEM).
    public var serverCertificate: URL { directory.appendingPathComponent("server.crt") }
    /// The server's private key (PEM).
    public var serverKey: URL { directory.appendingPathComponent("server.key") }

    /// Makes a CA named `caName` and a server certificate for `dnsNames`.
    public static func make(caName: String = "piivault test CA", dnsNames: [String] = ["localhost"]) throws
        -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        let extensions = directory.appendingPathComponent("server.ext")
        try """
            subjectAltName=\(dnsNames.map { "DNS:\($0)" }.joined(separator: ","))
            basicConstraints=critical,CA:FALSE
            keyUsage=critical,digitalSignature
            extendedKeyUsage=serverAuth

            """.write(to: extensions, atomically: true, encoding: .utf8)
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let caKey = directory.appendingPathComponent("ca.key").path
        let request = directory.appendingPathComponent("server.csr").path
        let steps: [[String]] = [
            ["req", "-x509"] + ec + ["-keyout", caKey, "-out", certificates.caCertificate.path, "-days", "2",
                                     "-subj", "/CN=\(caName)", "-addext", "basicConstraints=critical,CA:TRUE",
                                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-new"] + ec + ["-keyout", certificates.serverKey.path, "-out", request,
                                    "-subj", "/CN=\(dnsNames.first ?? "localhost")"],
            ["x509", "-req", "-in", request, "-CA", certificates.caCertificate.path, "-CAkey", caKey,
             "-set_serial", "2", "-days", "2", "-extfile", extensions.path,
             "-out", certificates.serverCertificate.path],
        ]
        for arguments in steps {
            let result: ProcessResult
            do {
                result = try runProcess("openssl", arguments)
            } catch {
                throw TestSetupError("cannot run openssl (\(error)); run scripts/install-deps")
            }
            guard result.status == 0 else {
                throw TestSetupError("openssl \(arguments[0]) failed: \(result.stderr)")
            }
        }
        return certificates
    }

    /// Deletes the folder.
    public func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}
