import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// `etl --metrics-file` and `--metrics-push-url`, checked with the stock `promtool` and a real Pushgateway.
extension ETLTests {
    /// A TCP port nobody listens on now, on loopback.
    private func freePort() throws -> Int {
        let result = try runProcess("python3", ["-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"])
        guard result.status == 0, let port = Int(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw TestSetupError("cannot find a free port: \(result.stderr)")
        }
        return port
    }

    /// The body of an HTTP GET, or nil when nothing answers (Python's urllib: no HTTP client in Foundation here).
    private func httpGet(_ url: String) throws -> String? {
        let result = try runProcess("python3", ["-c", "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())", url])
        return result.status == 0 ? result.stdout : nil
    }

    /// Starts Debian's `prometheus-pushgateway` on loopback (with `webConfig`, its exporter-toolkit web
    /// configuration, if given); waits until it answers.
    private func startPushgateway(webConfig: String? = nil) async throws -> (BackgroundProcess, String) {
        let port = try freePort()
        let binary = ["/usr/bin/prometheus-pushgateway", "/usr/bin/pushgateway"].first { FileManager.default.isExecutableFile(atPath: $0) }
        guard let binary else {
            throw TestSetupError("prometheus-pushgateway is not installed; run scripts/install-deps")
        }
        var arguments = ["--web.listen-address=127.0.0.1:\(port)"]
        if let webConfig {
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("web-\(ScratchDatabase.randomHex(4)).yml")
            try webConfig.write(to: file, atomically: true, encoding: .utf8)
            arguments.append("--web.config.file=\(file.path)")
        }
        let gateway = try BackgroundProcess(binary, arguments)
        let url = "http://127.0.0.1:\(port)"
        let deadline = Date().addingTimeInterval(20)
        while true {
            if webConfig != nil, gateway.stderr.contains("Listening on") || gateway.stderr.contains("listening") { break }
            if let text = try httpGet(url + "/metrics"), text.contains("pushgateway") { break }
            guard gateway.isRunning, Date() < deadline else {
                gateway.send(SIGTERM)
                throw TestSetupError("the Pushgateway did not start: \(gateway.stderr)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return (gateway, url)
    }

    /// The value of the sample `name` (with any labels) in Prometheus text.
    private func sample(_ name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            let parts = line.split(separator: " ")
            guard parts.count >= 2 else { continue }
            let metric = parts[0].split(separator: "{").first.map(String.init)
            if metric == name { return Double(parts[1]) }
        }
        return nil
    }

    func testMetricsFilePassesPromtoolAndReachesAPushgatewayAndAFailureKeepsTheLastSuccess() async throws {
        let (gateway, gatewayURL) = try await startPushgateway()
        defer { gateway.send(SIGTERM) }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("metrics-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let metricsFile = folder.appendingPathComponent("piivault.prom")

        // A run over the real sample through SQS.
        let queueURL = try await send(try TestServices.fixture("fetch-sample-messages.json"), queue: "metrics-\(ScratchDatabase.randomHex(4))")
        let summaryFile = folder.appendingPathComponent("summary.json")
        let result = try etl(["--queue-url", queueURL, "--metrics-file", metricsFile.path, "--metrics-push-url", gatewayURL,
                              "--summary-json", summaryFile.path])
        XCTAssertEqual(result.status, 0, result.stderr)
        // The emulator may hand a message to two concurrent receives (at-least-once): received and duplicates can
        // exceed 100 and 0; the metrics must equal whatever the summary printed.
        XCTAssertTrue(result.stdout.contains("loaded 99,") && result.stdout.contains("quarantined 1, values sealed 198"), result.stdout)
        let summary = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: summaryFile)) as? [String: Any])

        let check = try runProcess("promtool", ["check", "metrics"], input: try Data(contentsOf: metricsFile))
        XCTAssertEqual(check.status, 0, "promtool: \(check.stdout)\(check.stderr)")
        let text = try String(contentsOf: metricsFile, encoding: .utf8)
        for (metric, key) in [("piivault_etl_messages_received_total", "received"), ("piivault_etl_messages_loaded_total", "loaded"),
                              ("piivault_etl_messages_quarantined_total", "quarantined"),
                              ("piivault_etl_messages_duplicate_total", "duplicates"),
                              ("piivault_etl_values_sealed_total", "values_sealed"),
                              ("piivault_etl_delete_failures_total", "delete_failures")] {
            XCTAssertEqual(sample(metric, in: text), (summary[key] as? Int).map(Double.init), metric)
        }
        XCTAssertEqual(sample("piivault_etl_messages_loaded_total", in: text), 99)
        XCTAssertEqual(sample("piivault_etl_run_success", in: text), 1)
        XCTAssertEqual(sample("piivault_etl_queue_depth_start_messages", in: text), 100)
        XCTAssertEqual(sample("piivault_etl_queue_depth_end_messages", in: text), 0)
        XCTAssertGreaterThan(sample("piivault_etl_batch_commit_duration_seconds_count", in: text) ?? 0, 0)
        let lastSuccess = try XCTUnwrap(sample("piivault_etl_last_success_timestamp_seconds", in: text))
        XCTAssertEqual(lastSuccess, Date().timeIntervalSince1970, accuracy: 120)

        var pushed = try XCTUnwrap(try httpGet(gatewayURL + "/metrics"))
        XCTAssertTrue(pushed.contains(#"piivault_etl_messages_loaded_total{instance="",job="piivault_etl"} 99"#), pushed)
        XCTAssertEqual(sample("piivault_etl_last_success_timestamp_seconds", in: pushed), lastSuccess)

        // A failed run: still written and pushed, the failure visible, the last success unchanged.
        let connection = try await database.connect()
        try await connection.execute("ALTER TABLE vault.secrets RENAME TO secrets_elsewhere")
        await connection.close()
        let input = folder.appendingPathComponent("in.ndjson")
        try (#"{"user_id": "u9", "device_type": "ios", "ip": "192.0.2.9", "device_id": "d-9"}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
        let failed = try etl(["--from-file", input.path, "--metrics-file", metricsFile.path, "--metrics-push-url", gatewayURL])
        XCTAssertEqual(failed.status, 1, failed.stderr)
        let afterFailure = try String(contentsOf: metricsFile, encoding: .utf8)
        XCTAssertEqual(try runProcess("promtool", ["check", "metrics"], input: Data(afterFailure.utf8)).status, 0)
        XCTAssertEqual(sample("piivault_etl_run_success", in: afterFailure), 0)
        XCTAssertEqual(sample("piivault_etl_messages_received_total", in: afterFailure), 1)
        XCTAssertEqual(sample("piivault_etl_last_success_timestamp_seconds", in: afterFailure), lastSuccess)
        pushed = try XCTUnwrap(try httpGet(gatewayURL + "/metrics"))
        XCTAssertTrue(pushed.contains(#"piivault_etl_run_success{instance="",job="piivault_etl"} 0"#), pushed)
        XCTAssertEqual(sample("piivault_etl_last_success_timestamp_seconds", in: pushed), lastSuccess)
    }

    /// Issue 24, defect 3: a Pushgateway URL's password and query values never reach the warning.
    /// A Pushgateway behind HTTP Basic authentication (its own web configuration, a bcrypt hash): the user and
    /// password in `--metrics-push-url` are sent as the Authorization header (the HTTP library dropped them, so the
    /// push was refused, 401, a warning only); without them the push is refused and says so.
    func testAPushURLsUserAndPasswordAuthenticateToThePushgateway() async throws {
        // bcrypt of "pushS3cret" (cost 5), made once: Python's crypt module, which could make it, is gone from 3.13.
        let hash = "$2b$05$EvR6rnqMHJvA5V8OEKTIYOAjzenu33Me9V4ByuEDogtALp8GQx8TW"
        let (gateway, gatewayURL) = try await startPushgateway(webConfig: "basic_auth_users:\n  pushuser: '\(hash)'\n")
        defer { gateway.send(SIGTERM) }
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("auth-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        try (#"{"user_id": "u8", "device_type": "ios", "ip": "192.0.2.8", "device_id": "d-8"}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
        let authenticated = gatewayURL.replacingOccurrences(of: "http://", with: "http://pushuser:pushS3cret@")
        let pushed = try etl(["--from-file", input.path, "--metrics-push-url", authenticated])
        XCTAssertEqual(pushed.status, 0, pushed.stderr)
        XCTAssertFalse(pushed.stderr.contains("cannot push metrics"), pushed.stderr)
        XCTAssertFalse((pushed.stdout + pushed.stderr).contains("pushS3cret"))
        let read = try runProcess("python3", ["-c", """
            import base64, sys, urllib.request
            request = urllib.request.Request(sys.argv[1] + "/metrics")
            request.add_header("Authorization", "Basic " + base64.b64encode(b"pushuser:pushS3cret").decode())
            sys.stdout.write(urllib.request.urlopen(request, timeout=5).read().decode())
            """, gatewayURL])
        XCTAssertEqual(read.status, 0, read.stderr)
        XCTAssertTrue(read.stdout.contains("piivault_etl_messages_loaded_total{") && read.stdout.contains("job=\"piivault_etl\""),
                      "the pushed metrics are on the gateway")
        let refused = try etl(["--from-file", input.path, "--metrics-push-url", gatewayURL])
        XCTAssertEqual(refused.status, 0, "a push that fails is a warning: \(refused.stderr)")
        XCTAssertTrue(refused.stderr.contains("HTTP 401"), refused.stderr)
    }

    func testPushURLSecretsAreNotPrinted() throws {
        let input = FileManager.default.temporaryDirectory.appendingPathComponent("push-\(ScratchDatabase.randomHex(4)).ndjson")
        defer { try? FileManager.default.removeItem(at: input) }
        try (#"{"user_id": "u9", "device_type": "ios", "ip": "192.0.2.9", "device_id": "d-9"}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
        let port = try freePort()
        let result = try etl(["--from-file", input.path,
                              "--metrics-push-url", "http://pushuser:pushS3cret@127.0.0.1:\(port)/?api_key=QSECRET"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("cannot push metrics to http://pushuser:***@127.0.0.1:\(port)/?api_key=***"),
                      result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains("pushS3cret"), result.stderr)
        XCTAssertFalse((result.stdout + result.stderr).contains("QSECRET"), result.stderr)
    }

    /// Issue 24, defect 1: a symlink planted where the temporary metrics file used to go (`.etl.prom.<pid>.tmp`, the
    /// pid known in advance through `exec`) is neither followed nor made world-readable, and `etl.prom` ends up a
    /// regular file of mode 0644, not a link to the victim.
    func testMetricsFileIgnoresAPlantedSymlink() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("mdir-\(ScratchDatabase.randomHex(4))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let victim = folder.appendingPathComponent("victim")
        try "secret-key-material".write(to: victim, atomically: true, encoding: .utf8)
        XCTAssertEqual(chmod(victim.path, 0o600), 0)
        let input = folder.appendingPathComponent("in.ndjson")
        try (#"{"user_id": "u9", "device_type": "ios", "ip": "192.0.2.9", "device_id": "d-9"}"# + "\n").write(to: input, atomically: true, encoding: .utf8)
        let metricsFile = folder.appendingPathComponent("etl.prom")
        let invocation = try etlInvocation(["--from-file", input.path, "--metrics-file", metricsFile.path], environment: [:])
        let binary = try piivaultBinary()
        let script = #"ln -s "$1" "$2/.etl.prom.$$.tmp"; shift 2; exec "$@""#
        let result = try runProcess("bash", ["-c", script, "plant", victim.path, folder.path, binary] + invocation.arguments,
                                    environment: invocation.environment)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(try String(contentsOf: victim, encoding: .utf8), "secret-key-material")
        let victimAttributes = try FileManager.default.attributesOfItem(atPath: victim.path)
        XCTAssertEqual((victimAttributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let attributes = try FileManager.default.attributesOfItem(atPath: metricsFile.path)
        XCTAssertEqual(attributes[.type] as? FileAttributeType, .typeRegular)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o644)
        XCTAssertEqual(sample("piivault_etl_run_success", in: try String(contentsOf: metricsFile, encoding: .utf8)), 1)
    }
}
