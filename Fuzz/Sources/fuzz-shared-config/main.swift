import AWS
import FuzzSupport

/// The shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`): the INI parser, then the
/// profile lookup and merge the credentials chain does, and the settings it reads from a profile.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = FuzzInput(data, size).restText
    let sections = AWSSharedConfig.parseINI(text)
    // The same text as either file: a profile is `[profile NAME]` in one and `[NAME]` in the other.
    let config = AWSSharedConfig(credentialsSections: sections, configSections: sections)
    var names = ["default"]
    for name in sections.keys.prefix(8) {
        names.append(name.hasPrefix("profile ") ? String(name.dropFirst("profile ".count)) : name)
    }
    for name in names {
        guard let profile = config.profile(named: name) else { continue }
        for key in ["region", "aws_access_key_id", "role_arn", "source_profile", "credential_process",
                    "endpoint_url", "ca_bundle", "duration_seconds", "web_identity_token_file"] {
            _ = profile[key]
        }
        if let command = profile["credential_process"] { _ = try? CredentialProcessSplit.split(command) }
        let environment = AWSEnvironment(variables: [:], homeDirectory: "/nonexistent")
        _ = AWSResolution.region(environment: environment, profile: profile)
        if let endpoint = try? AWSResolution.explicitEndpoint(serviceVariable: "SQS", environment: environment,
                                                             profile: profile) {
            _ = endpoint.host.map(AWSResolution.awsRegion(inHost:))
            _ = AWSResolution.origin(of: endpoint)
        }
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
