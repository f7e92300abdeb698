import Foundation
import TestSupport
import XCTest

/// The deployment files pass the tools that check them: hadolint (Dockerfile), kubernetes-validate with its bundled
/// schemas (deploy/kubernetes), a JSON parser (deploy/ecs) and `systemd-analyze verify` (deploy/systemd). The
/// linters are installed by scripts/install-deps; a missing one fails the test rather than skipping it.
final class DeploymentFilesTests: XCTestCase {
    private let root = TestServices.repositoryRoot

    private func files(in folder: String, ending suffix: String) throws -> [String] {
        let directory = root.appendingPathComponent(folder)
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(suffix) }
        XCTAssertFalse(names.isEmpty, "no *\(suffix) in \(folder)")
        return names.sorted().map { directory.appendingPathComponent($0).path }
    }

    /// docker-compose.yaml's LocalStack is the release `make bench-sqs` measures (scripts/install-deps --bench pins
    /// localstack-core): one version, whichever way it is written (2026.03.0 as an image tag, 2026.3.0 on PyPI).
    func testDockerComposeRunsTheLocalStackTheBenchmarkMeasures() throws {
        func version(_ pattern: String, in file: String) throws -> [Int] {
            let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
            let match = try XCTUnwrap(text.firstMatch(of: try Regex(pattern)), "\(file): no \(pattern)")
            return try XCTUnwrap(match.output[1].substring).split(separator: ".").map { Int($0) ?? -1 }
        }
        let image = try version(#"image: localstack/localstack:([0-9.]+)"#, in: "docker-compose.yaml")
        let measured = try version(#"localstack-core\[base-runtime\]==([0-9.]+)"#, in: "scripts/install-deps")
        XCTAssertEqual(image, measured, "docker-compose.yaml's LocalStack differs from the one make bench-sqs installs")
    }

    /// What each way of running the nightly job needs beyond passing its linter: a run that ends under steady traffic
    /// (PIIVAULT_MAX_DURATION below each platform's own limit), no core dumps of the process holding the key, a key
    /// folder a Fargate volume starts owned by the image's user, and the queue the ETL's IAM policy grants.
    func testEachDeploymentBoundsTheRunAndNamesTheGrantedQueue() throws {
        func text(_ file: String) throws -> String {
            try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
        }
        let cronJob = try text("deploy/kubernetes/cronjob.yaml")
        XCTAssertTrue(cronJob.contains("activeDeadlineSeconds: 14400") && cronJob.contains("PIIVAULT_MAX_DURATION"))
        XCTAssertTrue(try text("deploy/ecs/task-definition.json").contains("\"PIIVAULT_MAX_DURATION\""))
        let unit = try text("deploy/systemd/piivault-etl.service")
        XCTAssertTrue(unit.contains("Environment=PIIVAULT_MAX_DURATION=10800") && unit.contains("TimeoutStartSec=4h"))
        XCTAssertTrue(unit.contains("\nLimitCORE=0\n"))
        XCTAssertTrue(try text("Dockerfile").contains(#"VOLUME ["/var/lib/piivault"]"#))
        let granted = try XCTUnwrap(try text("deploy/iam/etl-policy.json")
            .firstMatch(of: #/arn:aws:sqs:[a-z0-9-]+:[0-9]+:([A-Za-z0-9_-]+)/#)?.output.1)
        XCTAssertTrue(cronJob.contains("/123456789012/\(granted)\n"), "the CronJob's queue is the one the policy grants")
        XCTAssertTrue(try text("deploy/ecs/task-definition.json").contains("--queue-name \(granted) "))
    }

    func testDockerfilePassesHadolint() throws {
        let result = try runProcess("hadolint", ["Dockerfile"], currentDirectory: root)
        XCTAssertEqual(result.status, 0, "hadolint Dockerfile: \(result.stdout)\(result.stderr)")
    }

    func testKubernetesManifestsValidate() throws {
        let manifests = try files(in: "deploy/kubernetes", ending: ".yaml")
        let result = try runProcess("kubernetes-validate", ["--strict"] + manifests, currentDirectory: root)
        XCTAssertEqual(result.status, 0, "kubernetes-validate: \(result.stdout)\(result.stderr)")
        let text = try manifests.map { try String(contentsOfFile: $0, encoding: .utf8) }.joined()
        for required in ["concurrencyPolicy: Forbid", "eks.amazonaws.com/role-arn", "defaultMode: 0400",
                         "runAsNonRoot: true", "readOnlyRootFilesystem: true", "PIIVAULT_DATABASE_URL"] {
            XCTAssertTrue(text.contains(required), "deploy/kubernetes lacks \(required)")
        }
    }

    func testECSFilesAreJSON() throws {
        for path in try files(in: "deploy/ecs", ending: ".json") {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            XCTAssertNoThrow(try JSONSerialization.jsonObject(with: data), path)
        }
        let task = try JSONSerialization.jsonObject(
            with: Data(contentsOf: root.appendingPathComponent("deploy/ecs/task-definition.json"))) as? [String: Any]
        XCTAssertNotNil(task?["taskRoleArn"] as? String, "the task definition names a task role")
    }

    /// The IAM policy examples parse, and every `kms:Decrypt` they grant is conditioned on piivault's encryption
    /// context (`kms:EncryptionContext:piivault:key`), so that the grant opens piivault's wrapped keys and nothing else.
    func testIAMPoliciesGrantKMSDecryptOnlyWithTheEncryptionContext() throws {
        let paths = try files(in: "deploy/iam", ending: ".json")
        XCTAssertFalse(paths.isEmpty)
        var decryptGrants = 0
        for path in paths {
            let policy = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
                as? [String: Any], path)
            for statement in policy["Statement"] as? [[String: Any]] ?? [] {
                let actions = (statement["Action"] as? [String]) ?? [(statement["Action"] as? String) ?? ""]
                guard actions.contains(where: { $0.hasPrefix("kms:") }) else { continue }
                XCTAssertFalse(actions.contains { $0.contains("*") }, "\(path): a wildcard KMS action")
                let equals = (statement["Condition"] as? [String: Any])?["StringEquals"] as? [String: Any]
                XCTAssertNotNil(equals?["kms:EncryptionContext:piivault:key"],
                                "\(path): a KMS grant without the piivault:key encryption context condition")
                if actions.contains("kms:Decrypt") { decryptGrants += 1 }
            }
        }
        XCTAssertGreaterThan(decryptGrants, 0)
        let etl = try String(contentsOf: root.appendingPathComponent("deploy/iam/etl-policy.json"), encoding: .utf8)
        XCTAssertFalse(etl.contains("\"vault\""), "the ETL's policy must not open the vault key")
    }

    /// `systemd-analyze verify` checks that ExecStart's program exists, so the check runs on copies whose
    /// /usr/local/bin/piivault is the binary these tests were built with. Unknown keys only warn, so any output fails.
    func testSystemdUnitsVerify() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw TestSetupError("systemd-analyze is not installed (it comes with systemd); run scripts/install-deps")
        }
        let copies = FileManager.default.temporaryDirectory.appendingPathComponent("units-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: copies, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copies) }
        let binary = try piivaultBinary()
        var units: [String] = []
        for path in try files(in: "deploy/systemd", ending: ".service") + files(in: "deploy/systemd", ending: ".timer") {
            let name = URL(fileURLWithPath: path).lastPathComponent
            let text = try String(contentsOfFile: path, encoding: .utf8)
                .replacingOccurrences(of: "/usr/local/bin/piivault", with: binary)
            let copy = copies.appendingPathComponent(name)
            try text.write(to: copy, atomically: true, encoding: .utf8)
            units.append(copy.path)
        }
        let service = try String(contentsOf: copies.appendingPathComponent("piivault-etl.service"), encoding: .utf8)
        for required in ["Type=oneshot", "NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes"] {
            XCTAssertTrue(service.contains(required), "piivault-etl.service lacks \(required)")
        }
        let result = try runProcess("/usr/bin/systemd-analyze", ["verify"] + units)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout + result.stderr, "", "systemd-analyze verify complained")
    }
}
