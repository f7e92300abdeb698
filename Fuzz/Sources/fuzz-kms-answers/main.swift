import AWS
import Foundation
import FuzzSupport
import KMS
import Logging

/// KMS JSON 1.1 answers as `KMSClient` reads them: `Decrypt` (the plaintext cut out of the bytes before the rest is
/// parsed), `Encrypt`, and error answers. The first byte chooses the call and the HTTP status.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let selector = input.byte()
    let transport = CannedTransport(status: fuzzStatus(selector >> 1), body: input.rest)
    let configuration = KMSConfiguration(
        credentialsProvider: StaticCredentialsProvider(fuzzCredentials), region: "us-east-1",
        endpoint: URL(string: "https://kms.us-east-1.amazonaws.com")!, maxAttempts: 1, transport: transport)
    let client = KMSClient(configuration: configuration, transport: transport,
                           logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
    let key = "arn:aws:kms:us-east-1:123456789012:key/fuzz"
    runBlocking {
        do {
            if selector & 1 == 0 {
                _ = try await client.decrypt(ciphertextBlob: [1, 2, 3], keyID: key, context: ["piivault": "fuzz"])
            } else {
                _ = try await client.encrypt(keyID: key, plaintextBase64: Array("AAAA".utf8),
                                             context: ["piivault": "fuzz"])
            }
        } catch {
            _ = "\(error)"
        }
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
