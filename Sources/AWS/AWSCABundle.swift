import Foundation
import NIOSSL

/// The certificate authorities HTTPS endpoints are verified against when the system trust store is not the one to
/// use: the PEM file named by `AWS_CA_BUNDLE`, else by `ca_bundle` in the selected profile, as the AWS CLI and SDKs
/// read them. Like theirs, the bundle replaces the system trust store (it does not add to it).
public struct AWSCABundle: Sendable {
    /// The bundle's path, as given.
    public let path: String
    /// Where the path came from: `AWS_CA_BUNDLE` or `ca_bundle in profile NAME`.
    public let origin: String
    /// The certificates in the file (at least one).
    public let certificates: [NIOSSLCertificate]

    /// Reads the bundle the settings name; nil when none does (the system trust store applies).
    ///
    /// - Throws: ``AWSError`` (`invalidCABundle`) when the named file cannot be read or holds no PEM certificate.
    public static func resolve(environment: AWSEnvironment, profile: AWSProfile?) throws -> AWSCABundle? {
        if let path = environment["AWS_CA_BUNDLE"] {
            return try load(path: environment.expandingTilde(path), origin: "AWS_CA_BUNDLE")
        }
        if let profile, let path = profile["ca_bundle"] {
            return try load(path: environment.expandingTilde(path), origin: "ca_bundle in profile \(profile.name)")
        }
        return nil
    }

    /// Reads a PEM bundle.
    ///
    /// - Throws: ``AWSError`` (`invalidCABundle`) when the file cannot be read or holds no PEM certificate.
    public static func load(path: String, origin: String) throws -> AWSCABundle {
        let fix = "set \(origin) to a readable PEM file of CA certificates, or unset it to use the system trust store"
        guard let data = FileManager.default.contents(atPath: path) else {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw AWSError(kind: .invalidCABundle, message: "the CA bundle \(path) (\(origin)) \(reason); \(fix)")
        }
        // NIOSSL accepts a file with no certificate at all as an empty list; that would trust nothing.
        let certificates = (try? NIOSSLCertificate.fromPEMBytes(Array(data))) ?? []
        guard !certificates.isEmpty else {
            throw AWSError(kind: .invalidCABundle,
                           message: "the CA bundle \(path) (\(origin)) holds no PEM certificate; \(fix)")
        }
        return AWSCABundle(path: path, origin: origin, certificates: certificates)
    }
}
