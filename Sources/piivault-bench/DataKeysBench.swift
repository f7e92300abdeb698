import Foundation
import PIIVault

/// `piivault-bench data-keys N VAULT_PUB`: writes N fresh data keys sealed to VAULT_PUB as COPY text rows
/// (`key_id<TAB>\\x<hex>`) for `vault.data_keys (key_id, sealed_key)`, so that `scripts/bench-rewrap` can time
/// `piivault rewrap` over them. The data keys themselves are thrown away.
enum DataKeysBench {
    static func run(_ arguments: [String]) throws {
        guard arguments.count == 2, let count = Int(arguments[0]), count > 0 else {
            throw BenchUsage("usage: piivault-bench data-keys N VAULT_PUB")
        }
        let publicKey = try KeyLoading.loadVaultPublicKey(path: arguments[1])
        var out = ""
        for _ in 0..<count {
            let sealed = try DataKeySealer(vaultPublicKey: publicKey).sealedDataKey
            out += sealed.keyID.hex + "\t\\\\x" + sealed.sealed.map { String(format: "%02x", $0) }.joined() + "\n"
        }
        FileHandle.standardOutput.write(Data(out.utf8))
    }
}
