@testable import AWS
import Foundation
import Logging
import NIOSSL
import SQS
import XCTest

/// Issue 11, TLS: where the CA bundle comes from (`AWS_CA_BUNDLE`, the profile's `ca_bundle`), a bundle that cannot
/// be used, TLS handshake failures sorted apart from other transport failures, and an SQS call that fails TLS
/// verification reported at once (no retry) with what to do.
final class TLSSettingsTests: XCTestCase {
    /// A self-signed certificate (only parsed here, never used to verify anything).
    private static let pem = """
        -----BEGIN CERTIFICATE-----
        MIIBlDCCATugAwIBAgIUIlU15iAJSZai9IaoylPEYMX96vowCgYIKoZIzj0EAwIw
        IDEeMBwGA1UEAwwVcGlpdmF1bHQgdW5pdCB0ZXN0IENBMB4XDTI2MTEyNTA5MTMz
        OVoXDTM2MTEyMjA5MTMzOVowIDEeMBwGA1UEAwwVcGlpdmF1bHQgdW5pdCB0ZXN0
        IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEN5j2MU89zZiigmtHhoffi9T/
        X1zUCjgJqteavEcpMvfGG2yrKK3HfEKNqsjS8Vk0XEc60t2pse+HM4iXJ0hyZqNT
        MFEwHQYDVR0OBBYEFI3M2xAS8vAMCP2n9//BSuIsLIKAMB8GA1UdIwQYMBaAFI3M
        2xAS8vAMCP2n9//BSuIsLIKAMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwID
        RwAwRAIgM4zwr+zQntEHVZtb2veKcAp9GlBIAZyAjiGvl6aBij0CIGWeZyhsu6o7
        Tk+AUThKeikSIrcIUSq+5itWSCvWwaYR
        -----END CERTIFICATE-----

        """

    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-settings-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func file(_ name: String, _ text: String) throws -> String {
        let url = directory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    private func environment(_ variables: [String: String]) -> AWSEnvironment {
        AWSEnvironment(variables: variables, homeDirectory: directory.path)
    }

    func testNoSettingMeansTheSystemTrustStore() throws {
        XCTAssertNil(try AWSCABundle.resolve(environment: environment([:]), profile: nil))
        XCTAssertNil(try AWSCABundle.resolve(environment: environment(["AWS_CA_BUNDLE": " "]),
                                             profile: AWSProfile(name: "default", settings: ["region": "x"])))
    }

    func testEnvironmentWinsOverTheProfile() throws {
        let fromEnvironment = try file("env.pem", Self.pem)
        let fromProfile = try file("profile.pem", Self.pem + Self.pem)
        let profile = AWSProfile(name: "work", settings: ["ca_bundle": fromProfile])
        let bundle = try XCTUnwrap(AWSCABundle.resolve(environment: environment(["AWS_CA_BUNDLE": fromEnvironment]),
                                                       profile: profile))
        XCTAssertEqual(bundle.path, fromEnvironment)
        XCTAssertEqual(bundle.origin, "AWS_CA_BUNDLE")
        XCTAssertEqual(bundle.certificates.count, 1)

        let profiled = try XCTUnwrap(AWSCABundle.resolve(environment: environment([:]), profile: profile))
        XCTAssertEqual(profiled.path, fromProfile)
        XCTAssertEqual(profiled.origin, "ca_bundle in profile work")
        XCTAssertEqual(profiled.certificates.count, 2)
    }

    func testTildeInTheProfileIsTheHomeDirectory() throws {
        _ = try file("home.pem", Self.pem)
        let profile = AWSProfile(name: "default", settings: ["ca_bundle": "~/home.pem"])
        let bundle = try XCTUnwrap(AWSCABundle.resolve(environment: environment([:]), profile: profile))
        XCTAssertEqual(bundle.path, directory.appendingPathComponent("home.pem").path)
    }

    func testMissingBundleIsOneLineNamingTheSetting() throws {
        let missing = directory.appendingPathComponent("absent.pem").path
        XCTAssertThrowsError(try AWSCABundle.resolve(environment: environment(["AWS_CA_BUNDLE": missing]),
                                                     profile: nil)) { error in
            let aws = error as? AWSError
            XCTAssertEqual(aws?.kind, .invalidCABundle)
            XCTAssertEqual(aws?.message,
                           "the CA bundle \(missing) (AWS_CA_BUNDLE) does not exist; set AWS_CA_BUNDLE to a readable PEM file of CA certificates, or unset it to use the system trust store")
        }
    }

    func testBundleWithoutCertificatesIsRefused() throws {
        for (name, text) in [("empty.pem", ""), ("text.pem", "not a certificate\n"),
                             ("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")] {
            let path = try file(name, text)
            let profile = AWSProfile(name: "p", settings: ["ca_bundle": path])
            XCTAssertThrowsError(try AWSCABundle.resolve(environment: environment([:]), profile: profile), name) {
                error in
                let aws = error as? AWSError
                XCTAssertEqual(aws?.kind, .invalidCABundle, name)
                XCTAssertEqual(aws?.message.contains("holds no PEM certificate"), true, name)
                XCTAssertEqual(aws?.message.contains("ca_bundle in profile p"), true, name)
                XCTAssertEqual(aws?.message.contains("\n"), false, name)
            }
        }
    }

    /// The SQS configuration refuses a bad bundle before any request, so the run stops at once.
    func testSQSConfigurationRefusesABadBundle() throws {
        let path = try file("bad.pem", "nothing")
        XCTAssertThrowsError(try SQSConfiguration.resolve(
            environment: ["AWS_CA_BUNDLE": path, "AWS_REGION": "us-east-1"], homeDirectory: directory.path,
            queueURL: "https://localhost:1/000000000000/q")) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .invalidCABundle)
        }
    }

    func testHandshakeFailuresAreTLSFailures() {
        let hostName = AsyncHTTPClientTransport.classify(NIOSSLExtraError.failedToValidateHostname, limit: 1)
        XCTAssertEqual(hostName.kind, .tlsFailed)
        XCTAssertEqual(hostName.detail, "the server's certificate does not name this host")
        XCTAssertFalse(hostName.requestMayHaveArrived)
        XCTAssertTrue(hostName.tlsAdvice.contains("host name"))

        let handshake = AsyncHTTPClientTransport.classify(NIOSSLError.handshakeFailed(.syscallError), limit: 1)
        XCTAssertEqual(handshake.kind, .tlsFailed)
        XCTAssertEqual(handshake.detail, "the TLS handshake failed")
        XCTAssertTrue(handshake.tlsAdvice.contains("AWS_CA_BUNDLE"))

        // A TLS connection cut short after the handshake is not a verification failure.
        let unclean = AsyncHTTPClientTransport.classify(NIOSSLError.uncleanShutdown, limit: 1)
        XCTAssertEqual(unclean.kind, .failed)
    }

    /// A certificate that does not verify is not retried (the same certificate fails again) and says what to do.
    func testSQSCallFailingTLSVerificationIsNotRetried() async throws {
        let transport = FakeTransport { _, _ in
            throw HTTPTransportError(kind: .tlsFailed, detail: "the server's certificate is not signed by a trusted CA")
        }
        let configuration = SQSConfiguration(
            credentialsProvider: CountingProvider(lifetime: nil), region: "us-east-1",
            endpoint: URL(string: "https://localhost:9/")!,
            retry: SQSRetryPolicy(maxAttempts: 5, baseDelay: .milliseconds(1), maxDelay: .milliseconds(2)))
        let client = SQSClient(configuration: configuration, transport: transport, logger: Logger(label: "test"))
        do {
            _ = try await client.getQueueAttributes(queueURL: "https://localhost:9/000000000000/q")
            XCTFail("no error")
        } catch let error as SQSError {
            XCTAssertEqual(error.kind, .tlsVerification)
            XCTAssertFalse(error.isRetryable)
            XCTAssertTrue(error.message.contains("TLS verification of SQS at https://localhost:9/ failed"),
                          error.message)
            XCTAssertTrue(error.message.hasSuffix("set AWS_CA_BUNDLE (or ca_bundle in the profile) to the PEM file of the CA that signed the endpoint's certificate"),
                          error.message)
        }
        XCTAssertEqual(transport.requests.count, 1)
    }
}
