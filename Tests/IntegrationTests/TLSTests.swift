import Foundation
import Postgres
import TestSupport
import XCTest

/// Issue 11, acceptance 5 (AWS half): `piivault etl` reaches the emulator through a local TLS front (`aws_front.py`
/// with a certificate for `localhost` signed by a test CA made with openssl) when `AWS_CA_BUNDLE` names that CA, for
/// SQS and STS alike; it refuses, with exit 69 and one line, a certificate its trust store does not vouch for or one
/// that names another host, and loads nothing; an unusable bundle is exit 65.
final class AWSTLSTests: AWSTestCase {
    private var certificates: TestCertificates!
    private var front: AWSFront!
    private let roleArn = "arn:aws:iam::123456789012:role/piivault-etl"

    override func setUp() async throws {
        try await super.setUp()
        certificates = try TestCertificates.make()
        front = try AWSFront([
            "upstream": try TestServices.sqsEndpoint(),
            "tls": ["cert": certificates.serverCertificate.path, "key": certificates.serverKey.path],
        ])
    }

    override func tearDown() async throws {
        front?.stop()
        certificates?.remove()
        try await super.tearDown()
    }

    /// Runs the ETL over the sample's queue through the front at `https://HOST:PORT`, with `environment` on top.
    private func runThroughFront(host: String, environment: [String: String?]) async throws -> ProcessResult {
        let queueURL = try await sendSample(queue: "tls-\(ScratchDatabase.randomHex(4))")
        let endpoint = "https://\(host):\(front.port)"
        var env = environment
        env["AWS_ENDPOINT_URL_SQS"] = endpoint
        return try etl(["--queue-url", endpoint + URL(string: queueURL)!.path], environment: env)
    }

    private func assertRefused(_ result: ProcessResult, saying reason: String,
                               file: StaticString = #filePath, line: UInt = #line) async throws {
        XCTAssertEqual(result.status, 69, result.stderr, file: file, line: line)
        let lines = errorLines(result)
        XCTAssertEqual(lines.count, 1, result.stderr, file: file, line: line)
        let message = lines.first ?? ""
        XCTAssertTrue(message.hasPrefix("piivault: error: "), message, file: file, line: line)
        XCTAssertTrue(message.contains("TLS verification of SQS at https://"), message, file: file, line: line)
        XCTAssertTrue(message.contains(reason), message, file: file, line: line)
        for libraryText in ["NIOSSL", "BoringSSL", "handshakeFailed", "OPENSSL_internal"] {
            XCTAssertFalse(result.stderr.contains(libraryText), message, file: file, line: line)
        }
        XCTAssertEqual(front.entries(kind: "sqs").count, 0, "no SQS request got through", file: file, line: line)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 0, file: file, line: line)
        // The front saw the client break off the handshake.
        try await waitUntil("the front logs the refused handshake", timeout: 10) {
            !self.front.entries(kind: "tls_refused").isEmpty
        }
    }

    /// With the test CA as `AWS_CA_BUNDLE`, the run drains the queue over HTTPS, and the web identity exchange with
    /// STS goes through the same TLS front: every AWS request honours the bundle.
    func testDrainsTheQueueThroughTLSWithTheTestCA() async throws {
        let tokenFile = home.appendingPathComponent("token")
        try "eyJhbGciOiJSUzI1NiJ9.tls-test-token.sig\n".write(to: tokenFile, atomically: true, encoding: .utf8)
        let result = try await runThroughFront(host: "localhost", environment: [
            "AWS_CA_BUNDLE": certificates.caCertificate.path,
            "AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path, "AWS_ROLE_ARN": roleArn,
            "AWS_ENDPOINT_URL_STS": "https://localhost:\(front.port)",
        ])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 10") && result.stdout.contains(", loaded 99,"),
                      result.stdout)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 99)
        let sts = front.entries(kind: "sts")
        XCTAssertEqual(sts.map { $0["action"] as? String }, ["AssumeRoleWithWebIdentity"])
        let issued = try XCTUnwrap(sts.first?["issued_key"] as? String)
        let sqsKeys = Set(front.entries(kind: "sqs").compactMap { $0["key"] as? String })
        XCTAssertEqual(sqsKeys, [issued], "SQS requests went through the front signed with the role's keys")
        XCTAssertEqual(front.entries(kind: "tls_refused").count, 0)
    }

    /// A CA bundle that does not hold the test CA (the machine's own bundle, or another CA) and the system trust
    /// store (no `AWS_CA_BUNDLE`) both refuse the front's certificate.
    func testUntrustedCAIsRefused() async throws {
        let other = try TestCertificates.make(caName: "some other CA")
        defer { other.remove() }
        var bundles: [String?] = [other.caCertificate.path, nil]
        let system = "/etc/ssl/certs/ca-certificates.crt"
        if FileManager.default.fileExists(atPath: system) { bundles.append(system) }
        for bundle in bundles {
            let result = try await runThroughFront(host: "localhost", environment: [
                "AWS_CA_BUNDLE": bundle, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            ])
            try await assertRefused(result, saying: "the server's certificate is not signed by a trusted CA")
            XCTAssertTrue(result.stderr.contains("set AWS_CA_BUNDLE"), result.stderr)
        }
    }

    /// The certificate names `localhost` only: reaching the same front as `127.0.0.1` is refused even though the CA
    /// is trusted.
    func testWrongHostNameIsRefused() async throws {
        let result = try await runThroughFront(host: "127.0.0.1", environment: [
            "AWS_CA_BUNDLE": certificates.caCertificate.path, "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        ])
        try await assertRefused(result, saying: "the server's certificate does not name this host")
    }

    /// A bundle that is missing or holds no certificate stops the run before any request: exit 65, one line.
    func testUnusableBundleIsExit65() async throws {
        let notPEM = home.appendingPathComponent("bundle.pem")
        try "not a certificate\n".write(to: notPEM, atomically: true, encoding: .utf8)
        for (path, reason) in [(notPEM.path, "holds no PEM certificate"),
                               (home.appendingPathComponent("absent.pem").path, "does not exist")] {
            let result = try await runThroughFront(host: "localhost", environment: [
                "AWS_CA_BUNDLE": path, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
            ])
            XCTAssertEqual(result.status, 65, result.stderr)
            XCTAssertEqual(errorLines(result),
                           ["piivault: error: the CA bundle \(path) (AWS_CA_BUNDLE) \(reason); set AWS_CA_BUNDLE to a readable PEM file of CA certificates, or unset it to use the system trust store"])
        }
        XCTAssertEqual(front.entries().count, 0)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 0)
    }
}

/// Issue 11, acceptance 5 (Postgres half): the throwaway cluster serves TLS with a certificate for `localhost` signed
/// by the CA in `PIIVAULT_TEST_PG_CA` (scripts/services). `--database-url ...?sslmode=verify-full&sslrootcert=CA`
/// works for `migrate` and `runs`; the same URL with host `127.0.0.1` (not named by the certificate) or with another
/// CA is refused: exit 69, one line, no password.
final class PostgresTLSTests: XCTestCase {
    private var database: ScratchDatabase!
    private var ca: String!

    override func setUp() async throws {
        ca = try TestServices.postgresCA()
        database = try await ScratchDatabase.create(prefix: "tls")
    }

    override func tearDown() async throws {
        await database?.drop()
    }

    /// The scratch database's URL with `host` and `sslmode=verify-full&sslrootcert=ROOT`.
    private func verifyFullURL(host: String, root: String) throws -> String {
        var components = try XCTUnwrap(URLComponents(string: database.url))
        components.host = host
        components.queryItems = [URLQueryItem(name: "sslmode", value: "verify-full"),
                                 URLQueryItem(name: "sslrootcert", value: root)]
        return try XCTUnwrap(components.string)
    }

    private var password: String {
        URLComponents(string: database.url)?.password ?? ""
    }

    func testVerifyFullWorksForTheHostTheCertificateNames() async throws {
        let url = try verifyFullURL(host: "localhost", root: ca)
        let migrate = try runPiivault(["migrate", "--database-url", url, "--migrations-dir",
                                       TestServices.repositoryRoot.appendingPathComponent("migrations").path])
        XCTAssertEqual(migrate.status, 0, migrate.stderr)
        let runs = try runPiivault(["runs", "--database-url", url])
        XCTAssertEqual(runs.status, 0, runs.stderr)
        // The same URL really is TLS: the server says so for a connection made with it.
        let connection = try await PostgresConnection.connect(url)
        let rows = try await connection.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await connection.close()
        XCTAssertEqual(try rows.first?[0].string(), "t")
    }

    func testWrongHostNameIsRefused() async throws {
        let result = try runPiivault(["runs", "--database-url", try verifyFullURL(host: "127.0.0.1", root: ca)])
        XCTAssertEqual(result.status, 69, result.stderr)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, result.stderr)
        XCTAssertTrue(result.stderr.hasPrefix("piivault: error: cannot connect to the database"), result.stderr)
        XCTAssertTrue(result.stderr.contains("does not match host name \"127.0.0.1\""), result.stderr)
        XCTAssertTrue(result.stderr.contains("check sslrootcert"), result.stderr)
        XCTAssertFalse(password.isEmpty)
        XCTAssertFalse((result.stdout + result.stderr).contains(password), "the password was printed")
    }

    func testUntrustedCAIsRefused() async throws {
        let other = try TestCertificates.make(caName: "some other CA")
        defer { other.remove() }
        let result = try runPiivault(["runs", "--database-url",
                                      try verifyFullURL(host: "localhost", root: other.caCertificate.path)])
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("certificate verify failed"), result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains(password), "the password was printed")
    }
}
