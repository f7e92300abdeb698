@_spi(Fuzzing) import AWS
import FuzzSupport

/// `credential_process`: the JSON object its program prints (read as `CredentialProcess.run` reads it after the
/// program exited 0, `Expiration` included), and the word splitting of the command line from the config file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = FuzzInput(data, size)
    if let credentials = try? AWSFuzzing.credentialProcessOutput(input.rest) {
        _ = "\(credentials)"
        _ = credentials.secrets
    }
    _ = try? CredentialProcessSplit.split(input.restText)
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
