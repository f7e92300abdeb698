import FuzzSupport
@_spi(Fuzzing) import PIIVault

/// Key files, every label: token keys (`PIIVAULT-TOKEN-KEY-1`, `-2`), the vault public and secret keys (plain and
/// passphrase-protected, up to the prompt), KMS-wrapped key files, and the label check between them.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    PIIVaultFuzzing.readKeyFileText(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}

runLibFuzzer { data, size in fuzz(data ?? emptyInput, size) }
