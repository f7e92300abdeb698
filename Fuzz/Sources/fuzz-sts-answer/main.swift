import AWS
import Foundation
import FuzzSupport
import Logging

/// STS answers (`AssumeRole`, `AssumeRoleWithWebIdentity`) as `STSClient` reads them: the credentials and their
/// `Expiration` from a success, the code from an error. The first byte chooses the call and the HTTP status.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    let selector = input.byte()
    let transport = CannedTransport(status: fuzzStatus(selector >> 1), body: input.rest)
    let client = STSClient(endpoint: URL(string: "https://sts.us-east-1.amazonaws.com")!, region: "us-east-1",
                           transport: transport, logger: Logger(label: "fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
    runBlocking {
        do {
            if selector & 1 == 0 {
                _ = try await client.assumeRole(roleArn: "arn:aws:iam::123456789012:role/fuzz", sessionName: "fuzz",
                                                externalID: nil, durationSeconds: nil,
                                                sourceCredentials: fuzzCredentials, source: "fuzz")
            } else {
                _ = try await client.assumeRoleWithWebIdentity(roleArn: "arn:aws:iam::123456789012:role/fuzz",
                                                               sessionName: "fuzz", webIdentityToken: "token",
                                                               source: "fuzz")
            }
        } catch {
            _ = "\(error)"
        }
    }
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
