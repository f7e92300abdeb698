import Foundation

/// Region and endpoint resolution, the way the AWS CLI and SDKs do it.
public enum AWSResolution {
    /// The region from `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`, else the region in an AWS host
    /// name (`sqs.REGION.amazonaws.com`, `REGION.queue.amazonaws.com`, `sts.REGION.amazonaws.com`); nil when none.
    public static func region(environment: AWSEnvironment, profile: AWSProfile?, urls: [URL?] = []) -> String? {
        environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? profile?["region"]
            ?? urls.lazy.compactMap { $0?.host }.compactMap(awsRegion(inHost:)).first
    }

    /// An endpoint set explicitly for a service: `explicit` (a flag), `AWS_ENDPOINT_URL_<SERVICE>`,
    /// `AWS_ENDPOINT_URL`, else the profile's `endpoint_url`; nil when none is set.
    ///
    /// - Parameter serviceVariable: the service's part of the variable name, e.g. `SQS` or `STS`.
    /// - Throws: ``AWSError`` (`configuration`) when the value is not an http(s) URL with a host.
    public static func explicitEndpoint(serviceVariable: String, explicit: String? = nil, environment: AWSEnvironment,
                                        profile: AWSProfile?) throws -> URL? {
        let variable = "AWS_ENDPOINT_URL_\(serviceVariable)"
        guard let text = explicit.flatMap({ $0.isEmpty ? nil : $0 }) ?? environment[variable]
            ?? environment["AWS_ENDPOINT_URL"] ?? profile?["endpoint_url"]
        else { return nil }
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil
        else {
            throw AWSError(kind: .configuration,
                           message: "invalid \(serviceVariable) endpoint URL \"\(text)\"; give an http:// or https:// URL such as http://127.0.0.1:4566 (\(variable) or AWS_ENDPOINT_URL)")
        }
        return url
    }

    /// The AWS endpoint of `service` (`sqs`, `sts`, `kms`) in `region`: `https://SERVICE.REGION.amazonaws.com`, or
    /// `.amazonaws.com.cn` in the China regions (`cn-north-1`, `cn-northwest-1`), as botocore's endpoint rules have it.
    ///
    /// - Throws: ``AWSError`` (`configuration`) for a region that is not a DNS label (botocore's rule): one from a
    ///   variable or a profile is used as given, and a space or a slash in it would make no host name.
    public static func defaultEndpoint(service: String, region: String) throws -> URL {
        let valid = (1...63).contains(region.utf8.count) && region.utf8.allSatisfy { byte in
            (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39)
                || byte == 0x2D
        } && region.first != "-" && region.last != "-"
        guard valid, let url = URL(string: "https://\(service).\(region).\(region.lowercased().hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com")")
        else {
            throw AWSError(kind: .configuration,
                           message: "invalid AWS region \"\(region)\"; a region is letters, digits and hyphens, such as eu-west-1 (check AWS_REGION, AWS_DEFAULT_REGION and the profile's region)")
        }
        return url
    }

    /// Whether a host is an AWS service host (as opposed to an emulator or a proxy).
    public static func isAWSHost(_ host: String) -> Bool {
        let host = host.lowercased()
        return host.hasSuffix(".amazonaws.com") || host.hasSuffix(".amazonaws.com.cn")
    }

    /// The region in `SERVICE.REGION.amazonaws.com` or `REGION.queue.amazonaws.com`.
    public static func awsRegion(inHost host: String) -> String? {
        let lower = host.lowercased()
        let labels = lower.split(separator: ".")
        guard labels.count >= 4, isAWSHost(lower) else { return nil }
        if labels[1] == "queue" { return String(labels[0]) }
        if ["sqs", "sts"].contains(labels[0]) { return String(labels[1]) }
        return nil
    }

    /// Scheme, host and port of a URL, with the path `/`.
    public static func origin(of url: URL) -> URL? {
        var components = URLComponents()
        components.scheme = url.scheme
        components.host = url.host
        components.port = url.port
        components.path = "/"
        return components.url
    }
}
