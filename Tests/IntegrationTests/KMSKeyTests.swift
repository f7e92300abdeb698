import Foundation
import PIIVault
import Postgres
import TestSupport
import XCTest

/// Key files wrapped by AWS KMS (issue 23), against moto_server's KMS behind the strict SigV4 front
/// (`Tests/crosscheck/aws_front.py` with `verify_sigv4`: every request's signature recomputed by botocore), with the
/// real binary. boto3 (`Tests/crosscheck/kms_tool.py`) opens the wrapped files independently, with the documented
/// encryption context; `Tests/crosscheck/crosscheck.py` computes tokens independently.
final class KMSKeyTests: AWSTestCase {
    /// The KMS key (an alias) on the emulator, made fresh for each test.
    var kmsAlias: String!
    var kmsKeyARN: String!
    let accessKey = "AKIDKMSFRONTTEST"
    let secretKey = "kms-front-secret-never-printed"

    override func setUp() async throws {
        try await super.setUp()
        kmsAlias = "alias/piivault-\(ScratchDatabase.randomHex(4))"
        let created = try kmsTool("create-key", ["alias": kmsAlias!])
        kmsKeyARN = try XCTUnwrap(created["arn"] as? String)
    }

    // MARK: Helpers

    private func kmsTool(_ command: String, _ request: [String: Any]) throws -> [String: Any] {
        var request = request
        request["endpoint"] = try TestServices.sqsEndpoint()
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/kms_tool.py").path
        let result = try runProcess("python3", [script, command], input: try JSONSerialization.data(withJSONObject: request))
        guard result.status == 0 else { throw TestSetupError("kms_tool.py \(command) failed: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: result.stdoutData) as! [String: Any]
    }

    private func crosscheck(_ command: String, _ request: [String: Any]) throws -> [String: Any] {
        let script = TestServices.repositoryRoot.appendingPathComponent("Tests/crosscheck/crosscheck.py").path
        let result = try runProcess("python3", [script, command], input: try JSONSerialization.data(withJSONObject: request))
        guard result.status == 0 else { throw TestSetupError("crosscheck.py \(command) failed: \(result.stderr)") }
        return try JSONSerialization.jsonObject(with: result.stdoutData) as! [String: Any]
    }

    /// The strict front: forwards to the emulator what botocore agrees is signed with our test key.
    private func strictFront(_ extra: [String: Any] = [:]) throws -> AWSFront {
        var settings: [String: Any] = ["upstream": try TestServices.sqsEndpoint(), "verify_sigv4": [accessKey: secretKey]]
        for (key, value) in extra { settings[key] = value }
        return try AWSFront(settings)
    }

    /// The clean AWS environment with the test key and KMS (and, unless told otherwise, SQS) behind `front`.
    private func environment(kms: String, sqs: String? = nil) -> [String: String?] {
        var env = cleanAWSEnvironment
        env["AWS_ACCESS_KEY_ID"] = accessKey
        env["AWS_SECRET_ACCESS_KEY"] = secretKey
        env["AWS_ENDPOINT_URL_KMS"] = kms
        if let sqs { env["AWS_ENDPOINT_URL_SQS"] = sqs }
        env["PIIVAULT_VAULT_KEY"] = .some(nil)
        env["PIIVAULT_TOKEN_KEY"] = .some(nil)
        env["PIIVAULT_PASSPHRASE_FILE"] = .some(nil)
        env["USER"] = "officer-on-duty"
        return env
    }

    /// Every KMS request the front saw was signed as botocore signs it, in the JSON 1.1 protocol; their actions.
    @discardableResult
    private func assertSignedKMSCalls(_ front: AWSFront, file: StaticString = #filePath, line: UInt = #line) -> [String] {
        let calls = front.entries(kind: "kms")
        XCTAssertFalse(calls.isEmpty, "no KMS call reached the front", file: file, line: line)
        for call in calls {
            XCTAssertEqual(call["signature_ok"] as? Bool, true, "a KMS request botocore does not sign alike: \(call)",
                           file: file, line: line)
            XCTAssertEqual(call["content_type"] as? String, "application/x-amz-json-1.1", file: file, line: line)
            XCTAssertEqual(call["key"] as? String, accessKey, file: file, line: line)
        }
        return calls.compactMap { $0["target"] as? String }
    }

    /// `keygen --kms-key-id` into a new folder; the folder.
    private func wrappedKeygen(_ extra: [String] = [], through front: AWSFront, name: String = "kms") throws -> URL {
        let dir = keys.appendingPathComponent(name)
        let result = try runPiivault(["keygen", "--kms-key-id", kmsAlias, "--dir", dir.path] + extra,
                                     environment: environment(kms: front.url))
        XCTAssertEqual(result.status, 0, result.stderr)
        // The key line names the key ARN KMS encrypted with, so that re-pointing the alias given later (a manual
        // rotation) cannot stop the file opening; the alias stays in the comments.
        for name in ["token.key", "vault.key"] {
            let path = dir.appendingPathComponent(name).path
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            let line = text.split(separator: "\n").first { !$0.hasPrefix("#") } ?? ""
            XCTAssertEqual(line.split(separator: " ").dropFirst().first.map(String.init), kmsKeyARN, path)
            XCTAssertTrue(text.contains("# kms key: \(kmsAlias!)\n"), text)
        }
        return dir
    }

    /// The label of a key file's key line.
    private func label(_ path: String) throws -> String {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let line = text.split(separator: "\n").first { !$0.hasPrefix("#") } ?? ""
        return String(line.split(separator: " ").first ?? "")
    }

    private func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int) ?? -1
    }

    private func hex(_ bytes: SecretBytes) -> String { bytes.withUnsafeBytes { $0.map { String(format: "%02x", $0) }.joined() } }

    private func sampleRecords() throws -> [[String: Any]] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: try TestServices.fixture("fetch-sample-messages.json")))
            as! [[String: Any]]
    }

    /// Loads the sample from a file with the plaintext keys of `setUp`.
    private func loadSampleFromFile(tokenKey: String? = nil) throws {
        let lines = try sampleRecords().map { String(decoding: try JSONSerialization.data(withJSONObject: $0), as: UTF8.self) }
        let input = home.appendingPathComponent("sample.ndjson")
        try (lines.joined(separator: "\n") + "\n").write(to: input, atomically: true, encoding: .utf8)
        let etl = try runPiivault(["etl", "--from-file", input.path, "--database-url", database.url,
                                   "--token-key", tokenKey ?? keys.appendingPathComponent("token.key").path,
                                   "--vault-public-key", keys.appendingPathComponent("vault.pub").path])
        XCTAssertEqual(etl.status, 0, etl.stderr)
    }

    // MARK: Acceptance 1: keygen --kms-key-id, the ETL with the wrapped token key, boto3, unmask

    func testWrappedKeysDrainTheSampleOpenWithBoto3AndUnmask() async throws {
        let front = try strictFront()
        defer { front.stop() }
        let dir = try wrappedKeygen(through: front)
        let tokenPath = dir.appendingPathComponent("token.key").path
        let vaultPath = dir.appendingPathComponent("vault.key").path
        XCTAssertEqual(try label(tokenPath), "PIIVAULT-TOKEN-KEY-KMS-1")
        XCTAssertEqual(try label(vaultPath), "PIIVAULT-VAULT-SECRET-KEY-KMS-1")
        XCTAssertEqual(try label(dir.appendingPathComponent("vault.pub").path), "PIIVAULT-VAULT-PUBLIC-KEY-1")
        XCTAssertEqual(try mode(tokenPath), 0o600)
        XCTAssertEqual(try mode(vaultPath), 0o600)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir.path)), ["token.key", "vault.pub", "vault.key"])
        XCTAssertEqual(assertSignedKMSCalls(front), ["TrentService.Encrypt", "TrentService.Encrypt"])
        let contexts = front.entries(kind: "kms").compactMap { $0["encryption_context"] as? [String: String] }
        XCTAssertEqual(contexts.map { $0["piivault:key"] ?? "" }, ["token", "vault"])

        // boto3 opens the token key with the documented context; its key id is the one in the key line.
        let opened = try kmsTool("decrypt", ["file": tokenPath])
        let master = try XCTUnwrap(opened["plaintext_hex"] as? String)
        XCTAssertEqual(master.count, 64, "the payload of a PIIVAULT-TOKEN-KEY-1 file: 32 bytes")
        XCTAssertEqual(opened["key_arn"] as? String, kmsKeyARN)
        XCTAssertEqual(contexts.first?["piivault:key-id"], opened["key_id"] as? String)
        let vaultOpened = try kmsTool("decrypt", ["file": vaultPath])
        XCTAssertEqual((vaultOpened["plaintext_hex"] as? String)?.count, 64)
        XCTAssertEqual(contexts.last?["piivault:key-id"], vaultOpened["key_id"] as? String)

        // The ETL drains the real sample from SQS with the wrapped token key, KMS and SQS both behind the front.
        let queueURL = try await sendSample(queue: "kms-\(ScratchDatabase.randomHex(4))")
        var env = environment(kms: front.url, sqs: front.url)
        env["PIIVAULT_LOG_LEVEL"] = "trace"
        let run = try runPiivault(
            ["etl", "--database-url", database.url, "--token-key", tokenPath,
             "--vault-public-key", dir.appendingPathComponent("vault.pub").path,
             "--queue-url", front.url + URL(string: queueURL)!.path, "--idle-exit", "1", "--wait-time", "1"],
            environment: env)
        XCTAssertEqual(run.status, 0, run.stderr.suffix(2000).description)
        XCTAssertTrue(run.stdout.contains(", loaded 99,"), run.stdout)
        let loaded = try await loadedRows()
        XCTAssertEqual(loaded, 99)
        XCTAssertFalse((run.stdout + run.stderr).contains(master), "the key was printed")
        XCTAssertEqual(assertSignedKMSCalls(front).last, "TrentService.Decrypt")
        XCTAssertFalse(front.entries(kind: "sqs").isEmpty)
        XCTAssertTrue(front.entries(kind: "sqs").allSatisfy { $0["signature_ok"] as? Bool == true })

        // Python's tokens under boto3's key equal the tokens in user_logins.
        let records = try sampleRecords()
        let ips = Array(Set(records.compactMap { $0["ip"] as? String }))
        let canonical = try crosscheck("canonical", ["values": ips])["ip"] as! [Any]
        let valid = canonical.compactMap { $0 as? String }
        let answer = try crosscheck("tokens", ["master": master, "version": 1,
                                               "values": valid.map { ["field": "ip", "canonical": $0] }])
        XCTAssertEqual(answer["key_id"] as? String, opened["key_id"] as? String)
        let pythonTokens = Set(answer["tokens"] as! [String])
        let stored = try await query("SELECT DISTINCT masked_ip FROM public.user_logins WHERE masked_ip IS NOT NULL")
            .map { try $0["masked_ip"].string() ?? "" }
        XCTAssertGreaterThan(stored.count, 50)
        XCTAssertEqual(Set(stored).subtracting(pythonTokens), [], "tokens in user_logins that Python does not make with the key boto3 opened")

        // unmask --user-id with the wrapped vault key prints the originals.
        let compliance = try await database.createLogin(memberOf: "piivault_compliance")
        let user = try XCTUnwrap(records.first { $0["ip"] as? String != nil })
        let userID = try XCTUnwrap(user["user_id"] as? String)
        let expected = Set(records.filter { $0["user_id"] as? String == userID }.compactMap { $0["ip"] as? String })
        let unmask = try runPiivault(["unmask", "--database-url", compliance, "--key-file", vaultPath,
                                      "--token-key", tokenPath, "--reason", "SAR-KMS-1", "--user-id", userID,
                                      "--format", "json"], environment: environment(kms: front.url))
        XCTAssertEqual(unmask.status, 0, unmask.stderr)
        let logins = try XCTUnwrap(try JSONSerialization.jsonObject(with: unmask.stdoutData) as? [[String: Any]])
        XCTAssertEqual(Set(logins.compactMap { $0["ip"] as? String }), expected)
        XCTAssertFalse(logins.isEmpty)
        let decrypts = assertSignedKMSCalls(front).filter { $0 == "TrentService.Decrypt" }.count
        XCTAssertEqual(decrypts, 3, "one Decrypt for the ETL's token key, two for unmask's vault and token keys")

        // lookup with the wrapped token key finds the user by an original value.
        let ip = try XCTUnwrap(user["ip"] as? String)
        let lookup = try runPiivault(["lookup", "--database-url", compliance, "--token-key", tokenPath, "--reason",
                                      "SAR-KMS-2", "--ip", ip, "--format", "json"], environment: environment(kms: front.url))
        XCTAssertEqual(lookup.status, 0, lookup.stderr)
        XCTAssertTrue(lookup.stdout.contains(userID), "lookup did not find the user by their ip")

        // forget (dry run) with the wrapped token key: counts the user's rows, deletes nothing.
        let forget = try runPiivault(["forget", "--database-url", compliance, "--token-key", tokenPath, "--reason",
                                      "ERASE-KMS-1", "--user-id", userID, "--dry-run"], environment: environment(kms: front.url))
        XCTAssertEqual(forget.status, 0, forget.stderr)
        let stillLoaded = try await loadedRows()
        XCTAssertEqual(stillLoaded, 99)
        XCTAssertEqual(assertSignedKMSCalls(front).filter { $0 == "TrentService.Decrypt" }.count, 5,
                       "lookup and forget each opened the wrapped token key with KMS")
    }

    // MARK: Acceptance 2: keys wrap / keys unwrap round trips, nothing else written

    /// The entries of `/tmp` now.
    private func tmpEntries() throws -> Set<String> { Set(try FileManager.default.contentsOfDirectory(atPath: "/tmp")) }

    /// Runs `keys wrap` or `keys unwrap` and checks that the only new file in its folder is `out`, that the private
    /// TMPDIR stays empty, and that nothing new in `/tmp` holds a piivault key file.
    private func keysCommand(_ arguments: [String], out: URL, front: AWSFront, extra: [String: String?] = [:],
                             file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let folder = out.deletingLastPathComponent()
        let privateTmp = home.appendingPathComponent("tmp-\(ScratchDatabase.randomHex(3))")
        try FileManager.default.createDirectory(at: privateTmp, withIntermediateDirectories: true)
        let before = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
        let tmpBefore = try tmpEntries()
        var env = environment(kms: front.url)
        env["TMPDIR"] = privateTmp.path
        for (key, value) in extra { env[key] = value }
        let result = try runPiivault(["keys"] + arguments, environment: env)
        XCTAssertEqual(result.status, 0, result.stderr, file: file, line: line)
        let after = Set(try FileManager.default.contentsOfDirectory(atPath: folder.path))
        XCTAssertEqual(after.subtracting(before), [out.lastPathComponent], file: file, line: line)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: privateTmp.path), [], file: file, line: line)
        for name in try tmpEntries().subtracting(tmpBefore) {
            let text = (try? String(contentsOfFile: "/tmp/" + name, encoding: .utf8)) ?? ""
            XCTAssertFalse(text.contains("PIIVAULT-"), "a key file appeared in /tmp: \(name)", file: file, line: line)
        }
        XCTAssertEqual(try mode(out.path), 0o600, file: file, line: line)
        return result
    }

    func testWrapAndUnwrapRoundTripPlainAndPassphraseKeys() throws {
        let front = try strictFront()
        defer { front.stop() }
        let work = keys.appendingPathComponent("round")
        // A plaintext token key and a passphrase-protected vault key.
        let passphrase = home.appendingPathComponent("passphrase")
        try "correct horse battery staple\n".write(to: passphrase, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: passphrase.path)
        let keygen = try runPiivault(["keygen", "--dir", work.path, "--passphrase"],
                                     environment: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(keygen.status, 0, keygen.stderr)
        let token = work.appendingPathComponent("token.key"), vault = work.appendingPathComponent("vault.key")
        XCTAssertEqual(try label(vault.path), "PIIVAULT-VAULT-ENCRYPTED-KEY-1")
        let tokenKey = try KeyLoading.loadTokenKey(path: token.path)

        let tokenWrapped = work.appendingPathComponent("token.kms.key")
        let wrap = try keysCommand(["wrap", token.path, "--kms-key-id", kmsKeyARN, "--out", tokenWrapped.path],
                                   out: tokenWrapped, front: front)
        XCTAssertTrue(wrap.stdout.contains("token key id \(tokenKey.keyID)"), wrap.stdout)
        XCTAssertEqual(try label(tokenWrapped.path), "PIIVAULT-TOKEN-KEY-KMS-1")
        XCTAssertEqual(try kmsTool("decrypt", ["file": tokenWrapped.path])["plaintext_hex"] as? String, hex(tokenKey.bytes),
                       "the blob is KMS Encrypt of exactly the PIIVAULT-TOKEN-KEY-1 payload")
        let tokenBack = work.appendingPathComponent("token.back.key")
        _ = try keysCommand(["unwrap", tokenWrapped.path, "--out", tokenBack.path], out: tokenBack, front: front)
        XCTAssertEqual(try label(tokenBack.path), "PIIVAULT-TOKEN-KEY-1")
        XCTAssertEqual(try KeyLoading.loadTokenKey(path: tokenBack.path).keyID, tokenKey.keyID)

        let vaultKey = try KeyLoading.loadVaultSecretKey(path: vault.path) {
            SecretBytes(copying: UnsafeRawBufferPointer(start: "correct horse battery staple", count: 28))
        }
        let vaultWrapped = work.appendingPathComponent("vault.kms.key")
        _ = try keysCommand(["wrap", vault.path, "--kms-key-id", kmsAlias, "--out", vaultWrapped.path], out: vaultWrapped,
                            front: front, extra: ["PIIVAULT_PASSPHRASE_FILE": passphrase.path])
        XCTAssertEqual(try label(vaultWrapped.path), "PIIVAULT-VAULT-SECRET-KEY-KMS-1")
        XCTAssertEqual(try kmsTool("decrypt", ["file": vaultWrapped.path])["key_id"] as? String, vaultKey.keyID.hex)
        let vaultBack = work.appendingPathComponent("vault.back.key")
        _ = try keysCommand(["unwrap", vaultWrapped.path, "--out", vaultBack.path], out: vaultBack, front: front)
        XCTAssertEqual(try label(vaultBack.path), "PIIVAULT-VAULT-SECRET-KEY-1")
        let back = try KeyLoading.loadVaultSecretKey(path: vaultBack.path) { throw KeyFileError.emptyPassphrase }
        XCTAssertEqual(back.keyID, vaultKey.keyID)
        XCTAssertTrue(back.bytes.constantTimeEquals(vaultKey.bytes))

        // Never over an existing file, and never wrapping twice.
        let again = try runPiivault(["keys", "unwrap", tokenWrapped.path, "--out", tokenBack.path],
                                    environment: environment(kms: front.url))
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("already exists"), again.stderr)
        let twice = try runPiivault(["keys", "wrap", tokenWrapped.path, "--kms-key-id", kmsAlias, "--out",
                                     work.appendingPathComponent("twice").path], environment: environment(kms: front.url))
        XCTAssertEqual(twice.status, 64, twice.stderr)
        XCTAssertTrue(twice.stderr.contains("already wrapped"), twice.stderr)
        assertSignedKMSCalls(front)
    }

    // MARK: Acceptance 3: refusals and failures

    func testRefusedUnreachableWrongContextAndExposedFiles() throws {
        let front = try strictFront()
        defer { front.stop() }
        let dir = try wrappedKeygen(through: front)
        let tokenPath = dir.appendingPathComponent("token.key").path
        let input = home.appendingPathComponent("empty.ndjson")
        try "".write(to: input, atomically: true, encoding: .utf8)
        func etl(kms: String, tokenKey: String = tokenPath) throws -> ProcessResult {
            try runPiivault(["etl", "--from-file", input.path, "--database-url", database.url, "--token-key", tokenKey,
                             "--vault-public-key", dir.appendingPathComponent("vault.pub").path],
                            environment: environment(kms: kms))
        }
        let works = try etl(kms: front.url)
        XCTAssertEqual(works.status, 0, works.stderr)

        // KMS refuses (AccessDeniedException): 77, one line naming the KMS key and the file, not retried.
        let denying = try strictFront(["deny": "AccessDeniedException"])
        defer { denying.stop() }
        let denied = try etl(kms: denying.url)
        XCTAssertEqual(denied.status, 77, denied.stderr)
        let lines = denied.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, denied.stderr)
        XCTAssertTrue(lines.first?.hasPrefix("piivault: error: KMS key \(kmsKeyARN!) refused to open \(tokenPath)") ?? false,
                      denied.stderr)
        XCTAssertTrue(denied.stderr.contains("AccessDeniedException"), denied.stderr)
        XCTAssertEqual(denying.entries(kind: "kms").count, 1, "a refusal is not retried")
        // keygen refused by KMS writes nothing, not even its folder.
        let refusedDir = keys.appendingPathComponent("refused")
        let keygen = try runPiivault(["keygen", "--kms-key-id", kmsAlias, "--dir", refusedDir.path],
                                     environment: environment(kms: denying.url))
        XCTAssertEqual(keygen.status, 77, keygen.stderr)
        XCTAssertTrue(keygen.stderr.contains("KMS key \(kmsAlias!) refused to wrap the key for"), keygen.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: refusedDir.path))

        // KMS unreachable: 69.
        let closed = try closedPort()
        let unreachable = try etl(kms: "http://127.0.0.1:\(closed)")
        XCTAssertEqual(unreachable.status, 69, unreachable.stderr)
        XCTAssertTrue(unreachable.stderr.contains("cannot reach KMS at http://127.0.0.1:\(closed)"), unreachable.stderr)

        // The key line names another key id, so the context differs from the one the blob was made under: 77.
        let text = try String(contentsOfFile: tokenPath, encoding: .utf8)
        let keyLine = try XCTUnwrap(text.split(separator: "\n").first { !$0.hasPrefix("#") })
        var fields = keyLine.split(separator: " ").map(String.init)
        fields[2] = fields[2] == "0123456789abcdef" ? "fedcba9876543210" : "0123456789abcdef"
        let otherContext = home.appendingPathComponent("other-context.key")
        try (fields.joined(separator: " ") + "\n").write(to: otherContext, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: otherContext.path)
        let mismatch = try etl(kms: front.url, tokenKey: otherContext.path)
        XCTAssertEqual(mismatch.status, 77, mismatch.stderr)
        XCTAssertTrue(mismatch.stderr.contains("InvalidCiphertextException"), mismatch.stderr)
        XCTAssertEqual(front.entries(kind: "kms").last?["encryption_context"] as? [String: String],
                       ["piivault:key": "token", "piivault:key-id": fields[2]])

        // Mode 0644: 77 before KMS is asked.
        let callsBefore = front.entries(kind: "kms").count
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: tokenPath)
        let exposed = try etl(kms: front.url)
        XCTAssertEqual(exposed.status, 77, exposed.stderr)
        XCTAssertTrue(exposed.stderr.contains("chmod 600"), exposed.stderr)
        XCTAssertEqual(front.entries(kind: "kms").count, callsBefore, "KMS asked for an exposed file")
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokenPath)

        // A disabled or pending-deletion KMS key: 77 (moto does not refuse them itself, so a front answers as KMS does).
        for code in ["DisabledException", "KMSInvalidStateException", "IncorrectKeyException"] {
            let refusing = try strictFront(["deny": code])
            defer { refusing.stop() }
            let refused = try etl(kms: refusing.url)
            XCTAssertEqual(refused.status, 77, refused.stderr)
            XCTAssertTrue(refused.stderr.contains(code) && refused.stderr.contains(kmsKeyARN), refused.stderr)
            XCTAssertEqual(refusing.entries(kind: "kms").count, 1, "\(code) is not retried")
        }
        assertSignedKMSCalls(front)
    }

    // MARK: The AWS settings KMS shares with SQS: the profile's endpoint_url, TLS and AWS_CA_BUNDLE

    func testKMSOverTLSWithTheCABundleAndTheProfileEndpoint() throws {
        let plainFront = try strictFront()
        defer { plainFront.stop() }
        let dir = try wrappedKeygen(through: plainFront)
        let tokenPath = dir.appendingPathComponent("token.key").path
        let certificates = try TestCertificates.make()
        defer { certificates.remove() }
        let tlsFront = try strictFront(["tls": ["cert": certificates.serverCertificate.path,
                                                "key": certificates.serverKey.path]])
        defer { tlsFront.stop() }
        // The endpoint from the profile's endpoint_url (no AWS_ENDPOINT_URL_KMS), verified against AWS_CA_BUNDLE.
        let config = home.appendingPathComponent("config")
        try "[default]\nregion = us-east-1\nendpoint_url = https://localhost:\(tlsFront.port)\n"
            .write(to: config, atomically: true, encoding: .utf8)
        var env = environment(kms: "")
        env["AWS_ENDPOINT_URL_KMS"] = .some(nil)
        env["AWS_CONFIG_FILE"] = config.path
        env["AWS_CA_BUNDLE"] = certificates.caCertificate.path
        let out = home.appendingPathComponent("unwrapped.key")
        let unwrapped = try runPiivault(["keys", "unwrap", tokenPath, "--out", out.path], environment: env)
        XCTAssertEqual(unwrapped.status, 0, unwrapped.stderr)
        XCTAssertEqual(assertSignedKMSCalls(tlsFront), ["TrentService.Decrypt"])

        // Without the bundle, the test CA is not trusted: 69, one line, nothing sent.
        env["AWS_CA_BUNDLE"] = .some(nil)
        let refused = try runPiivault(["keys", "unwrap", tokenPath, "--out", home.appendingPathComponent("x").path],
                                      environment: env)
        XCTAssertEqual(refused.status, 69, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("TLS verification of KMS at https://localhost:\(tlsFront.port)"), refused.stderr)
        XCTAssertEqual(errorLines(refused).count, 1, refused.stderr)
        XCTAssertEqual(tlsFront.entries(kind: "kms").count, 1, "no request got through the refused handshake")
        XCTAssertFalse(FileManager.default.fileExists(atPath: home.appendingPathComponent("x").path))
    }

    // MARK: Acceptance 4: rewrap to and from a KMS-wrapped vault key; retokenize with a wrapped token key

    func testRewrapToAndFromAKMSWrappedVaultKey() async throws {
        let front = try strictFront()
        defer { front.stop() }
        try loadSampleFromFile()
        let compliance = try await database.createLogin(memberOf: "piivault_compliance")
        let wrapped = try wrappedKeygen(["--vault-key-only"], through: front)
        XCTAssertFalse(FileManager.default.fileExists(atPath: wrapped.appendingPathComponent("token.key").path))
        let plain2 = keys.appendingPathComponent("plain2")
        XCTAssertEqual(try runPiivault(["keygen", "--vault-key-only", "--dir", plain2.path]).status, 0)
        let tokenPath = keys.appendingPathComponent("token.key").path
        func unmaskCount(_ keyFile: String) throws -> Int {
            let result = try runPiivault(["unmask", "--database-url", compliance, "--key-file", keyFile, "--token-key",
                                          tokenPath, "--reason", "check", "--user-id",
                                          try sampleRecords()[0]["user_id"] as! String, "--format", "json"],
                                         environment: environment(kms: front.url))
            XCTAssertEqual(result.status, 0, result.stderr)
            return ((try? JSONSerialization.jsonObject(with: result.stdoutData)) as? [Any])?.count ?? -1
        }
        let expected = try unmaskCount(keys.appendingPathComponent("vault.key").path)
        XCTAssertGreaterThan(expected, 0)

        let toKMS = try runPiivault(["rewrap", "--database-url", compliance, "--key-file",
                                     keys.appendingPathComponent("vault.key").path,
                                     "--to", wrapped.appendingPathComponent("vault.pub").path, "--reason", "ROT-KMS"],
                                    environment: environment(kms: front.url))
        XCTAssertEqual(toKMS.status, 0, toKMS.stderr)
        XCTAssertEqual(try unmaskCount(wrapped.appendingPathComponent("vault.key").path), expected)

        let fromKMS = try runPiivault(["rewrap", "--database-url", compliance, "--key-file",
                                       wrapped.appendingPathComponent("vault.key").path,
                                       "--to", plain2.appendingPathComponent("vault.pub").path, "--reason", "ROT-BACK"],
                                      environment: environment(kms: front.url))
        XCTAssertEqual(fromKMS.status, 0, fromKMS.stderr)
        XCTAssertEqual(try unmaskCount(plain2.appendingPathComponent("vault.key").path), expected)
        XCTAssertTrue(assertSignedKMSCalls(front).contains("TrentService.Decrypt"))
    }

    func testRetokenizeWithAWrappedTokenKey() async throws {
        let front = try strictFront()
        defer { front.stop() }
        try loadSampleFromFile()
        let compliance = try await database.createLogin(memberOf: "piivault_compliance")
        let v2 = try wrappedKeygen(["--token-key-version", "2", "--previous-token-key",
                                    keys.appendingPathComponent("token.key").path], through: front, name: "v2")
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: v2.path)), ["token.key"])
        let newKey = v2.appendingPathComponent("token.key").path
        XCTAssertEqual(try label(newKey), "PIIVAULT-TOKEN-KEY-KMS-1")
        XCTAssertEqual((try kmsTool("decrypt", ["file": newKey])["plaintext_hex"] as? String)?.count, 136,
                       "the payload of a PIIVAULT-TOKEN-KEY-2 file: 68 bytes")
        let run = try runPiivault(["retokenize", "--database-url", compliance, "--key-file",
                                   keys.appendingPathComponent("vault.key").path, "--token-key", newKey,
                                   "--reason", "ROT-TOKEN-KMS"], environment: environment(kms: front.url))
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("to v2"), run.stdout)
        let v1Left = try await query("SELECT count(*) FROM vault.secrets WHERE token LIKE '%.v1.%'").first![0].requiredInt()
        XCTAssertEqual(v1Left, 0)

        // The next rotation names the wrapped key as --previous-token-key: its tombstone key is carried forward.
        let v3 = try wrappedKeygen(["--token-key-version", "3", "--previous-token-key", newKey], through: front, name: "v3")
        let v2Payload = try XCTUnwrap(try kmsTool("decrypt", ["file": newKey])["plaintext_hex"] as? String)
        let v3Payload = try XCTUnwrap(try kmsTool("decrypt", ["file": v3.appendingPathComponent("token.key").path])["plaintext_hex"] as? String)
        XCTAssertEqual(v3Payload.prefix(8), "03000000", "version 3, little-endian")
        XCTAssertEqual(v3Payload.suffix(64), v2Payload.suffix(64), "the tombstone key carried forward from the wrapped v2 key")
        assertSignedKMSCalls(front)
    }
}
