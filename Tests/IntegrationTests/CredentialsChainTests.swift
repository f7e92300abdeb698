import Foundation
import TestSupport
import XCTest

/// Issue 11, acceptance 1-4: `piivault etl` over the real sample with credentials from each provider of the chain
/// in turn, proved by the request the emulator's STS or the local test server (`aws_front.py`: SQS front, container
/// endpoint, IMDSv2) saw; precedence; refresh during a run; no provider; no secret at trace level.
final class CredentialsChainTests: AWSTestCase {
    private let roleArn = "arn:aws:iam::123456789012:role/piivault-etl"

    /// Sends the sample, runs the ETL through `front` (SQS forwarded to the emulator) at trace level, and checks
    /// that the queue drained, that every SQS request was signed with one of `expectedKeys`, and that no secret
    /// handed out appears in the output.
    @discardableResult
    private func drain(through front: AWSFront, environment: [String: String?], secrets: () -> [String],
                       expectedKeys: () -> Set<String>, extraArguments: [String] = [],
                       file: StaticString = #filePath, line: UInt = #line) async throws -> ProcessResult {
        let queueURL = try await sendSample(queue: "chain-\(ScratchDatabase.randomHex(4))")
        var env = environment
        env["AWS_ENDPOINT_URL_SQS"] = front.url
        env["PIIVAULT_LOG_LEVEL"] = "trace"
        let result = try etl(["--queue-url", front.url + URL(string: queueURL)!.path] + extraArguments,
                             environment: env)
        XCTAssertEqual(result.status, 0, result.stderr.suffix(2000).description, file: file, line: line)
        // moto occasionally hands a message to two concurrent receives; the second copy counts as a duplicate.
        XCTAssertTrue(result.stdout.hasPrefix("completed: received 10") && result.stdout.contains(", loaded 99,"),
                      result.stdout, file: file, line: line)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 99, file: file, line: line)
        let used = Set(front.entries(kind: "sqs").compactMap { $0["key"] as? String })
        XCTAssertFalse(used.isEmpty, file: file, line: line)
        XCTAssertEqual(used.subtracting(expectedKeys()), [], "SQS requests signed with unexpected keys",
                       file: file, line: line)
        for secret in secrets() where !secret.isEmpty {
            XCTAssertFalse((result.stdout + result.stderr).contains(secret), "a secret was printed", file: file,
                           line: line)
        }
        return result
    }

    private func frontSecrets(_ count: Int = 4) -> [String] {
        (1...count).flatMap { ["front-secret-\($0)-never-printed", "front-session-token-\($0)-never-printed"] }
    }

    private func write(_ text: String, to name: String) throws -> URL {
        let url = home.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testWebIdentity() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint()])
        defer { front.stop() }
        let tokenFile = try write("eyJhbGciOiJSUzI1NiJ9.web-identity-test-token.sig\n", to: "token")
        try await drain(
            through: front,
            environment: ["AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path, "AWS_ROLE_ARN": roleArn,
                          "AWS_ROLE_SESSION_NAME": "nightly-etl", "AWS_ENDPOINT_URL_STS": front.url],
            secrets: { front.entries(kind: "sts").flatMap { [$0["issued_secret"], $0["issued_token"]] }
                .compactMap { $0 as? String } + ["web-identity-test-token"] },
            expectedKeys: { Set(front.entries(kind: "sts").compactMap { $0["issued_key"] as? String }) })
        let calls = front.entries(kind: "sts")
        XCTAssertEqual(calls.count, 1)
        let call = try XCTUnwrap(calls.first)
        XCTAssertEqual(call["action"] as? String, "AssumeRoleWithWebIdentity")
        XCTAssertNil(call["key"] as? String, "AssumeRoleWithWebIdentity is sent unsigned")
        let params = try XCTUnwrap(call["params"] as? [String: String])
        XCTAssertEqual(params["RoleArn"], roleArn)
        XCTAssertEqual(params["RoleSessionName"], "nightly-etl")
        XCTAssertEqual(params["WebIdentityToken"], "eyJhbGciOiJSUzI1NiJ9.web-identity-test-token.sig")
        XCTAssertEqual(call["status"] as? Int, 200)
    }

    func testCredentialProcess() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint()])
        defer { front.stop() }
        let marker = home.appendingPathComponent("process-ran")
        let script = try write("""
            import datetime, json, pathlib, sys
            pathlib.Path(sys.argv[1]).write_text("ran")
            expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
            print(json.dumps({"Version": 1, "AccessKeyId": "ASIAPROCESSKEY", "SecretAccessKey": "process-secret-never-printed",
                              "SessionToken": "process-token-never-printed", "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}))
            """, to: "credential_process.py")
        let config = try write("""
            [profile nightly]
            region = us-east-1
            credential_process = python3 "\(script.path)" '\(marker.path)'
            """, to: "config")
        try await drain(
            through: front, environment: ["AWS_CONFIG_FILE": config.path, "AWS_PROFILE": "nightly"],
            secrets: { ["process-secret-never-printed", "process-token-never-printed"] },
            expectedKeys: { ["ASIAPROCESSKEY"] })
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker.path), "the credential process ran")
    }

    func testAssumeRoleWithSourceProfile() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint()])
        defer { front.stop() }
        let credentials = try write("""
            [base]
            aws_access_key_id = AKIASOURCEPROFILE
            aws_secret_access_key = source-secret-never-printed
            """, to: "credentials")
        let config = try write("""
            [profile nightly]
            role_arn = \(roleArn)
            source_profile = base
            external_id = piivault-external-7
            duration_seconds = 900
            role_session_name = etl-session
            """, to: "config")
        try await drain(
            through: front,
            environment: ["AWS_CONFIG_FILE": config.path, "AWS_SHARED_CREDENTIALS_FILE": credentials.path,
                          "AWS_PROFILE": "nightly", "AWS_ENDPOINT_URL_STS": front.url],
            secrets: { ["source-secret-never-printed"] + front.entries(kind: "sts")
                .flatMap { [$0["issued_secret"], $0["issued_token"]] }.compactMap { $0 as? String } },
            expectedKeys: { Set(front.entries(kind: "sts").compactMap { $0["issued_key"] as? String }) })
        let call = try XCTUnwrap(front.entries(kind: "sts").first)
        XCTAssertEqual(call["action"] as? String, "AssumeRole")
        XCTAssertEqual(call["key"] as? String, "AKIASOURCEPROFILE", "signed with the source profile's key")
        let params = try XCTUnwrap(call["params"] as? [String: String])
        XCTAssertEqual(params["RoleArn"], roleArn)
        XCTAssertEqual(params["ExternalId"], "piivault-external-7")
        XCTAssertEqual(params["DurationSeconds"], "900")
        XCTAssertEqual(params["RoleSessionName"], "etl-session")
    }

    func testContainerRelativeURI() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(), "container": ["lifetime": 3600]])
        defer { front.stop() }
        try await drain(
            through: front,
            environment: ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/task-7",
                          "PIIVAULT_AWS_CONTAINER_ENDPOINT": front.url],
            secrets: { frontSecrets() }, expectedKeys: { ["ASIATESTFRONT1"] })
        let requests = front.entries(kind: "container")
        XCTAssertEqual(requests.count, 1)
        XCTAssertEqual(requests.first?["path"] as? String, "/v2/credentials/task-7")
    }

    func testContainerFullURIWithTokenFile() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(),
                                  "container": ["lifetime": 3600, "token": "pod-identity-token-never-printed"]])
        defer { front.stop() }
        let tokenFile = try write("pod-identity-token-never-printed", to: "eks-pod-identity-token")
        try await drain(
            through: front,
            environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(front.url)/v1/credentials",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile.path],
            secrets: { frontSecrets() + ["pod-identity-token-never-printed"] }, expectedKeys: { ["ASIATESTFRONT1"] })
        let requests = front.entries(kind: "container")
        XCTAssertEqual(requests.count, 1)
        XCTAssertEqual(requests.first?["token_ok"] as? Bool, true, "the token file's token was presented")
    }

    func testInstanceMetadataV2() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(),
                                  "imds": ["role": "piivault-instance-role", "lifetime": 3600]])
        defer { front.stop() }
        try await drain(
            through: front,
            environment: ["AWS_EC2_METADATA_DISABLED": String?.none, "AWS_EC2_METADATA_SERVICE_ENDPOINT": front.url],
            secrets: { frontSecrets() }, expectedKeys: { ["ASIATESTFRONT1"] })
        let requests = front.entries(kind: "imds")
        XCTAssertEqual(requests.map { "\($0["method"]!) \($0["path"]!)" }, [
            "PUT /latest/api/token",
            "GET /latest/meta-data/iam/security-credentials/",
            "GET /latest/meta-data/iam/security-credentials/piivault-instance-role",
        ])
        XCTAssertEqual(requests.dropFirst().compactMap { $0["token_ok"] as? Bool }, [true, true],
                       "every GET carried the session token")
    }

    /// Acceptance 2: environment keys beat a container endpoint (never asked); IMDS disabled is never contacted.
    func testPrecedence() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(), "container": ["lifetime": 3600],
                                  "imds": ["role": "r", "lifetime": 3600]])
        defer { front.stop() }
        try await drain(
            through: front,
            environment: ["AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT", "AWS_SECRET_ACCESS_KEY": "env-secret-never-printed",
                          "AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(front.url)/v1/credentials",
                          "AWS_EC2_METADATA_SERVICE_ENDPOINT": front.url],
            secrets: { ["env-secret-never-printed"] }, expectedKeys: { ["AKIAENVIRONMENT"] })
        XCTAssertEqual(front.entries(kind: "container").count, 0, "the container endpoint was asked")

        // Nothing else configured and IMDS disabled: no credentials, and IMDS never contacted.
        let result = try etl(["--queue-url", "\(front.url)/123456789012/unused"],
                             environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": front.url,
                                           "AWS_EC2_METADATA_DISABLED": "true", "PIIVAULT_LOG_LEVEL": "trace"])
        XCTAssertEqual(result.status, 77, result.stderr)
        XCTAssertEqual(front.entries(kind: "imds").count, 0, "IMDS was contacted although disabled")
    }

    /// Acceptance 3: 60-second container credentials, refreshed 58 s before expiry (2 s after issue), during a run
    /// that lasts longer than that: the run completes once, and a second credentials request came before the first
    /// expired.
    func testRefreshDuringARun() async throws {
        let front = try AWSFront(["upstream": try TestServices.sqsEndpoint(), "container": ["lifetime": 60]])
        defer { front.stop() }
        let started = Date()
        try await drain(
            through: front,
            environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "\(front.url)/v1/credentials",
                          "PIIVAULT_AWS_REFRESH_LEAD_SECONDS": "58"],
            secrets: { frontSecrets(10) }, expectedKeys: { Set((1...10).map { "ASIATESTFRONT\($0)" }) },
            extraArguments: ["--idle-exit", "3"])  // outlives the 2 s before the refresh is due
        let elapsed = Date().timeIntervalSince(started)
        let requests = front.entries(kind: "container")
        XCTAssertGreaterThanOrEqual(requests.count, 2, "a second credentials request during the run")
        XCTAssertLessThan(elapsed, 60, "the second request came before the first credentials expired")
        let keys = front.entries(kind: "sqs").compactMap { $0["key"] as? String }
        XCTAssertTrue(keys.contains("ASIATESTFRONT2"), "requests after the refresh use the new keys")
        let outcomes = try await runOutcomes()
        XCTAssertEqual(outcomes, ["completed"])
    }

    /// Acceptance 4: no provider: 77, one line naming each provider and why it had nothing.
    func testNoProvider() async throws {
        let result = try etl(["--queue-url", "\(try TestServices.sqsEndpoint())/123456789012/unused"],
                             environment: ["PIIVAULT_LOG_LEVEL": "error"])
        XCTAssertEqual(result.status, 77, result.stderr)
        let lines = errorLines(result)
        XCTAssertEqual(lines.count, 1, result.stderr)
        for fragment in ["no AWS credentials found", "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY not set",
                         "web identity: AWS_WEB_IDENTITY_TOKEN_FILE not set", "shared files: no profile \"default\"",
                         "container: AWS_CONTAINER_CREDENTIALS_RELATIVE_URI and AWS_CONTAINER_CREDENTIALS_FULL_URI not set",
                         "instance metadata: AWS_EC2_METADATA_DISABLED is true", "set AWS_ACCESS_KEY_ID"] {
            XCTAssertTrue(result.stderr.contains(fragment), "\(result.stderr) lacks \(fragment)")
        }
    }

    /// STS failures through the binary: a refused web identity exchange exits 77, an unreachable STS 69, each one
    /// line naming the role and what to check, without the token.
    func testSTSFailuresExitCodes() async throws {
        let tokenFile = try write("sts-failure-token-never-printed", to: "token")
        let queue = "\(try TestServices.sqsEndpoint())/123456789012/unused"
        let deny = try AWSFront(["deny": "InvalidIdentityToken"])
        defer { deny.stop() }
        let identity: [String: String?] = ["AWS_WEB_IDENTITY_TOKEN_FILE": tokenFile.path, "AWS_ROLE_ARN": roleArn,
                                           "PIIVAULT_LOG_LEVEL": "error"]
        let refused = try etl(["--queue-url", queue],
                              environment: identity.merging(["AWS_ENDPOINT_URL_STS": deny.url]) { $1 })
        XCTAssertEqual(refused.status, 77, refused.stderr)
        XCTAssertEqual(errorLines(refused).count, 1, refused.stderr)
        for fragment in ["AssumeRoleWithWebIdentity for \(roleArn)", "refused with InvalidIdentityToken",
                         "check the role's trust policy"] {
            XCTAssertTrue(refused.stderr.contains(fragment), "\(refused.stderr) lacks \(fragment)")
        }
        XCTAssertFalse(refused.stderr.contains("never-printed"))

        let port = try closedPort()
        let unreachable = try etl(["--queue-url", queue],
                                  environment: identity.merging(["AWS_ENDPOINT_URL_STS": "http://127.0.0.1:\(port)"]) { $1 })
        XCTAssertEqual(unreachable.status, 69, unreachable.stderr)
        XCTAssertEqual(errorLines(unreachable).count, 1, unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("cannot reach STS"), unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("check AWS_ENDPOINT_URL_STS"), unreachable.stderr)
    }

    /// Issue 24, defect 2, through the binary: a credential_process that prints without end is stopped at 1 MiB (the
    /// run exits 77 in one line, without reading 400 MB into memory first).
    func testEndlessCredentialProcessIsStoppedAtItsSizeCap() async throws {
        let config = try write("""
            [profile nightly]
            region = us-east-1
            credential_process = /bin/sh -c "head -c 400000000 /dev/zero"
            """, to: "config")
        let started = Date()
        let result = try etl(["--queue-url", "\(try TestServices.sqsEndpoint())/123456789012/unused"],
                             environment: ["AWS_CONFIG_FILE": config.path, "AWS_PROFILE": "nightly",
                                           "PIIVAULT_LOG_LEVEL": "error"])
        XCTAssertEqual(result.status, 77, result.stderr)
        XCTAssertEqual(errorLines(result).count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("printed more than 1024 KiB and was stopped"), result.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
    }

    /// Issue 24, defect 3: the container endpoint's password and query values never reach the error.
    func testContainerURISecretsAreNotPrinted() throws {
        let port = try closedPort()
        let result = try etl(["--queue-url", "\(try TestServices.sqsEndpoint())/123456789012/unused"],
                             environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://user:s3cretpw@127.0.0.1:\(port)/c?token=qsecret",
                                           "PIIVAULT_LOG_LEVEL": "trace"])
        XCTAssertEqual(result.status, 69, result.stderr)
        XCTAssertTrue(result.stderr.contains("http://user:***@127.0.0.1:\(port)/c?token=***"), result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains("s3cretpw"), result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains("qsecret"), result.stderr)
    }
}
