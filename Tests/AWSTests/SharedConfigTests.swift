import AWS
import Foundation
@testable import SQS
import XCTest

/// Shared files, profiles, region and endpoint resolution (moved here from the SQS tests with their assertions).
final class SharedConfigTests: XCTestCase {
    func testINIParsing() {
        let sections = AWSSharedConfig.parseINI("""
            # comment
            ; another
            [default]
            aws_access_key_id = A ; trailing comment
            Region=eu-west-1
            [profile  work]
            role_arn = arn:aws:iam::123456789012:role/x
            s3 =
              addressing_style = path
            credential_process = /bin/tool --arg "a;b"
            """)
        XCTAssertEqual(sections["default"]?["aws_access_key_id"], "A")
        XCTAssertEqual(sections["default"]?["region"], "eu-west-1")
        XCTAssertEqual(sections["profile work"]?["role_arn"], "arn:aws:iam::123456789012:role/x")
        XCTAssertEqual(sections["profile work"]?["s3"], "")
        XCTAssertNil(sections["profile work"]?["addressing_style"])
        XCTAssertEqual(sections["profile work"]?["credential_process"], "/bin/tool --arg \"a;b\"")
    }

    func testCredentialsFromEnvironment() async throws {
        let configuration = try SQSConfiguration.resolve(
            environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "TK",
                          "AWS_DEFAULT_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true"],
            homeDirectory: "/nonexistent")
        let credentials = try await configuration.credentialsProvider.credentials()
        XCTAssertEqual(credentials.accessKeyId, "AK")
        XCTAssertEqual(credentials.sessionToken, "TK")
        XCTAssertEqual(credentials.source, "environment")
        XCTAssertEqual(configuration.region, "eu-west-1")
        XCTAssertEqual(configuration.endpoint.absoluteString, "https://sqs.eu-west-1.amazonaws.com")
    }

    func testProfileFromSharedFiles() async throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("aws-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home.appendingPathComponent(".aws"),
                                                withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        try """
        [default]
        aws_access_key_id = DEFAULTKEY
        aws_secret_access_key = DEFAULTSECRET

        # a comment
        [work]
        aws_access_key_id = WORKKEY
        aws_secret_access_key = WORKSECRET
        aws_session_token = WORKTOKEN
        """.write(to: home.appendingPathComponent(".aws/credentials"), atomically: true, encoding: .utf8)
        try """
        [default]
        region = us-west-2
        [profile work]
        region = ap-southeast-2
        s3 =
          addressing_style = path
        """.write(to: home.appendingPathComponent(".aws/config"), atomically: true, encoding: .utf8)
        let noIMDS = ["AWS_EC2_METADATA_DISABLED": "true"]

        let defaults = try SQSConfiguration.resolve(environment: noIMDS, homeDirectory: home.path)
        let defaultKeys = try await defaults.credentialsProvider.credentials()
        XCTAssertEqual(defaultKeys.accessKeyId, "DEFAULTKEY")
        XCTAssertEqual(defaults.region, "us-west-2")

        let work = try SQSConfiguration.resolve(
            environment: noIMDS.merging(["AWS_PROFILE": "work"]) { $1 }, homeDirectory: home.path,
            queueURL: "https://sqs.ap-southeast-2.amazonaws.com/123456789012/logins")
        let workKeys = try await work.credentialsProvider.credentials()
        XCTAssertEqual(workKeys.accessKeyId, "WORKKEY")
        XCTAssertEqual(workKeys.sessionToken, "WORKTOKEN")
        XCTAssertEqual(workKeys.source, "profile work")
        XCTAssertEqual(work.region, "ap-southeast-2")
        XCTAssertEqual(work.endpoint.absoluteString, "https://sqs.ap-southeast-2.amazonaws.com/")

        // The file overrides are honoured and the region env var wins over the profile.
        let moved = home.appendingPathComponent("elsewhere")
        try FileManager.default.moveItem(at: home.appendingPathComponent(".aws"), to: moved)
        let overridden = try SQSConfiguration.resolve(
            environment: ["AWS_SHARED_CREDENTIALS_FILE": moved.appendingPathComponent("credentials").path,
                          "AWS_CONFIG_FILE": moved.appendingPathComponent("config").path,
                          "AWS_PROFILE": "work", "AWS_REGION": "eu-central-1", "AWS_EC2_METADATA_DISABLED": "true"],
            homeDirectory: home.path)
        let overriddenKeys = try await overridden.credentialsProvider.credentials()
        XCTAssertEqual(overriddenKeys.accessKeyId, "WORKKEY")
        XCTAssertEqual(overridden.region, "eu-central-1")

        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: ["AWS_PROFILE": "nope"],
                                                          homeDirectory: home.path)) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .configuration)
            XCTAssertTrue("\(error)".contains("\"nope\""), "\(error)")
        }
        // Keys in the environment do not excuse a profile that does not exist (botocore: ProfileNotFound).
        XCTAssertThrowsError(try SQSConfiguration.resolve(
            environment: ["AWS_PROFILE": "nope", "AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "s",
                          "AWS_REGION": "eu-west-1"], homeDirectory: home.path)) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .configuration)
        }
    }

    func testEndpointPrecedence() throws {
        let base = ["AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"]
        let queue = "http://localhost:4566/000000000000/q"
        var env = base
        env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:1111"
        env["AWS_ENDPOINT_URL_SQS"] = "http://127.0.0.1:2222"
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue,
                                                    endpointURL: "http://127.0.0.1:3333").endpoint.port, 3333)
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue)
            .endpoint.port, 2222)
        env["AWS_ENDPOINT_URL_SQS"] = nil
        XCTAssertEqual(try SQSConfiguration.resolve(environment: env, homeDirectory: "/x", queueURL: queue)
            .endpoint.port, 1111)
        // The queue URL's host, with an emulator's default region.
        let fromQueue = try SQSConfiguration.resolve(environment: base, homeDirectory: "/x", queueURL: queue)
        XCTAssertEqual(fromQueue.endpoint.absoluteString, "http://localhost:4566/")
        XCTAssertEqual(fromQueue.region, "us-east-1")
        // Real AWS without a region anywhere is an error.
        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: base, homeDirectory: "/x")) { error in
            XCTAssertTrue("\(error)".contains("AWS_REGION"), "\(error)")
        }
        // A malformed endpoint says which variable to fix.
        XCTAssertThrowsError(try SQSConfiguration.resolve(environment: ["AWS_ENDPOINT_URL_SQS": "localhost:4566"],
                                                          homeDirectory: "/x")) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .configuration)
            XCTAssertTrue("\(error)".contains("AWS_ENDPOINT_URL_SQS"), "\(error)")
        }
    }

    func testRegionResolutionOrder() throws {
        let profile = AWSProfile(name: "p", settings: ["region": "ca-central-1"])
        let queue = URL(string: "https://sqs.sa-east-1.amazonaws.com/1/q")
        func region(_ variables: [String: String], _ profile: AWSProfile?) -> String? {
            AWSResolution.region(environment: AWSEnvironment(variables: variables, homeDirectory: "/x"),
                                 profile: profile, urls: [queue])
        }
        XCTAssertEqual(region(["AWS_REGION": "eu-west-3", "AWS_DEFAULT_REGION": "eu-west-2"], profile), "eu-west-3")
        XCTAssertEqual(region(["AWS_DEFAULT_REGION": "eu-west-2"], profile), "eu-west-2")
        XCTAssertEqual(region([:], profile), "ca-central-1")
        XCTAssertEqual(region([:], nil), "sa-east-1")
        XCTAssertEqual(AWSResolution.awsRegion(inHost: "eu-north-1.queue.amazonaws.com"), "eu-north-1")
        XCTAssertEqual(AWSResolution.awsRegion(inHost: "sts.us-west-1.amazonaws.com"), "us-west-1")
        XCTAssertNil(AWSResolution.awsRegion(inHost: "127.0.0.1"))
    }

    /// No credentials anywhere: the error names the variables to set.
    func testMissingCredentialsNamesTheVariables() async throws {
        let configuration = try SQSConfiguration.resolve(
            environment: ["AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"],
            homeDirectory: "/nonexistent")
        do {
            _ = try await configuration.credentialsProvider.credentials()
            XCTFail("expected an error")
        } catch let error as AWSError {
            XCTAssertEqual(error.kind, .noCredentials)
            for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"] {
                XCTAssertTrue(error.message.contains(name), "\(error) does not name \(name)")
            }
        }
        let half = try SQSConfiguration.resolve(environment: ["AWS_ACCESS_KEY_ID": "AK", "AWS_REGION": "us-east-1"],
                                                homeDirectory: "/nonexistent")
        do {
            _ = try await half.credentialsProvider.credentials()
            XCTFail("expected an error")
        } catch let error as AWSError {
            XCTAssertTrue(error.message.contains("AWS_SECRET_ACCESS_KEY"), error.message)
        }
    }

    /// The default endpoint follows the region's partition (China's hosts end in .com.cn), and a region that is no
    /// host-name label is a configuration error naming where regions come from, never a crash.
    func testDefaultEndpointsFollowThePartitionAndRefuseMalformedRegions() throws {
        XCTAssertEqual(try AWSResolution.defaultEndpoint(service: "sqs", region: "eu-west-1").absoluteString,
                       "https://sqs.eu-west-1.amazonaws.com")
        XCTAssertEqual(try AWSResolution.defaultEndpoint(service: "sts", region: "cn-north-1").absoluteString,
                       "https://sts.cn-north-1.amazonaws.com.cn")
        XCTAssertEqual(try AWSResolution.defaultEndpoint(service: "kms", region: "cn-northwest-1").absoluteString,
                       "https://kms.cn-northwest-1.amazonaws.com.cn")
        for region in ["us east-1", "eu-west-1/x", "", "-eu", "eu-", "eu.west", String(repeating: "a", count: 64)] {
            XCTAssertThrowsError(try AWSResolution.defaultEndpoint(service: "sqs", region: region), region) { error in
                XCTAssertEqual((error as? AWSError)?.kind, .configuration)
                XCTAssertTrue((error as? AWSError)?.message.contains("invalid AWS region") ?? false, "\(error)")
            }
        }
        let noIMDS = ["AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "s"]
        XCTAssertThrowsError(try SQSConfiguration.resolve(
            environment: noIMDS.merging(["AWS_REGION": "us east-1"]) { $1 }, homeDirectory: "/nonexistent")) { error in
            XCTAssertEqual((error as? AWSError)?.kind, .configuration)
        }
        let china = try SQSConfiguration.resolve(environment: noIMDS.merging(["AWS_REGION": "cn-north-1"]) { $1 },
                                                 homeDirectory: "/nonexistent")
        XCTAssertEqual(china.endpoint.absoluteString, "https://sqs.cn-north-1.amazonaws.com.cn")
    }
}
