import Foundation
import PIIVault

/// `piivault-bench crypto [--count N]`: tokens/s and values sealed/s on one core, with synthetic values.
enum CryptoBench {
    static func run(_ arguments: [String]) throws {
        var count = 1_000_000
        if let i = arguments.firstIndex(of: "--count"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
            count = n
        }
        let tokenizer = Tokenizer(key: TokenKey.generate())
        // Synthetic documentation addresses and device ids, prepared up front so only the crypto is timed.
        let ips = (0..<count).map { i in "10.\((i >> 16) & 255).\((i >> 8) & 255).\(i & 255)" }
        let devices = (0..<count).map { i in "device-\(i)-0000-synthetic" }

        var sink = 0
        var start = DispatchTime.now()
        for ip in ips { sink &+= try tokenizer.tokenize(ip, as: .ip).token.utf8.count }
        report("ip tokens (canonicalise + HMAC)", count, since: start)

        start = DispatchTime.now()
        for device in devices { sink &+= try tokenizer.tokenize(device, as: .deviceID).token.utf8.count }
        report("device_id tokens", count, since: start)

        let v6 = (0..<count / 10).map { i in "2001:DB8:0:0:0:0:\(String(i >> 16, radix: 16)):\(String(i & 0xffff, radix: 16))" }
        start = DispatchTime.now()
        for ip in v6 { sink &+= try tokenizer.tokenize(ip, as: .ip).token.utf8.count }
        report("ipv6 tokens (non-canonical input)", v6.count, since: start)

        let vault = VaultSecretKey.generate()
        let sealer = try DataKeySealer(vaultPublicKey: vault.publicKey)
        let token = tokenizer.token(forCanonical: ips[0], field: .ip)
        var sealed: [[UInt8]] = []
        sealed.reserveCapacity(count)
        start = DispatchTime.now()
        for ip in ips { sealed.append(try sealer.seal(ip, token: token)) }
        report("values sealed (XChaCha20-Poly1305)", count, since: start)

        let opener = try DataKeyOpener(sealedDataKey: sealer.sealedDataKey, secretKey: vault)
        start = DispatchTime.now()
        for s in sealed { sink &+= try opener.open(s, token: token).count }
        report("values opened", count, since: start)

        let boxes = 5_000
        start = DispatchTime.now()
        for _ in 0..<boxes { sink &+= try DataKeySealer(vaultPublicKey: vault.publicKey).sealedDataKey.sealed.count }
        report("data keys made and sealed (crypto_box_seal)", boxes, since: start)
        if sink == 42 { print("") }  // keeps the work observable
    }

    static func report(_ what: String, _ n: Int, since start: DispatchTime) {
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let rate = Double(n) / seconds
        let label = what.padding(toLength: 46, withPad: " ", startingAt: 0)
        print(label + String(format: " %10d in %7.3f s  %12.0f /s", n, seconds, rate))
    }
}
