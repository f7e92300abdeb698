import FuzzSupport
import PIIVault

/// minisign files: a public key, an unencrypted secret key, and a detached signature checked against a fixed key
/// (the first byte chooses which; the rest is the file). A signature file that verifies must have been made by the
/// key: the fuzzer cannot forge one. The seed corpus holds signatures by `signer` made with minisign itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var input = FuzzInput(data, size)
    switch input.byte() % 3 {
    case 0:
        if let key = try? Minisign.PublicKey(fileText: input.restText, file: "fuzz.pub") {
            // What was read is what is written back.
            let again = try? Minisign.PublicKey(fileText: key.fileText, file: "fuzz.pub")
            fuzzCheck(again?.keyID == key.keyID && again?.bytes == key.bytes, "a public key does not round-trip")
        }
    case 1:
        if let key = try? Minisign.SecretKey(fileBytes: input.rest, file: "fuzz.key") {
            _ = key.publicKey.keyIDText
        }
    default:
        let message = Array("piivault checkpoint".utf8)
        if let comment = try? Minisign.verify(message, signatureFile: input.restText, publicKey: signer,
                                               file: "fuzz.minisig") {
            _ = comment
        }
    }
    return 0
}

/// The public key of a throwaway auditor key (`piivault audit keygen`) that signed the seed signatures
/// (`minisign -S -m msg`, msg holding "piivault checkpoint"; with and without `-l`).
let signer = try! Minisign.PublicKey(fileText: """
    untrusted comment: minisign public key 6F726B3FA710B8EF
    RWTvuBCnP2tyb5LfVAQBTA+vRnFMN9pe173dGVVABPj6hgaN1V8Pu1OS
    """, file: "signer.pub")

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
