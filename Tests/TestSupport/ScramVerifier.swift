import CSodium
import Foundation

/// PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677), for test logins: with few iterations
/// instead of PostgreSQL 15's fixed 4096, which every connection pays for on both ends (10 ms of CPU; PostgreSQL 16
/// makes it the `scram_iterations` setting). `CREATE ROLE ... PASSWORD '<verifier>'` stores it as it is; clients
/// still log in with the plain password, by SCRAM, and a wrong one is refused.
public enum ScramVerifier {
    /// A verifier of `password` with a fresh random salt.
    public static func make(password: String, iterations: Int = 16) -> String {
        precondition(sodium_init() >= 0)
        var salt = [UInt8](repeating: 0, count: 16)
        randombytes_buf(&salt, salt.count)
        return make(password: password, salt: salt, iterations: iterations)
    }

    /// A verifier with a given salt (for checking against another implementation).
    public static func make(password: String, salt: [UInt8], iterations: Int) -> String {
        precondition(sodium_init() >= 0 && iterations >= 1)
        let passwordBytes = Array(password.utf8)
        // PBKDF2-HMAC-SHA-256 with one block: U1 = HMAC(P, salt || 1), Ui = HMAC(P, Ui-1), the result their XOR.
        var block = hmac(key: passwordBytes, message: salt + [0, 0, 0, 1])
        var salted = block
        for _ in 1..<iterations {
            block = hmac(key: passwordBytes, message: block)
            for index in salted.indices { salted[index] ^= block[index] }
        }
        let clientKey = hmac(key: salted, message: Array("Client Key".utf8))
        var storedKey = [UInt8](repeating: 0, count: Int(crypto_hash_sha256_BYTES))
        crypto_hash_sha256(&storedKey, clientKey, UInt64(clientKey.count))
        let serverKey = hmac(key: salted, message: Array("Server Key".utf8))
        return "SCRAM-SHA-256$\(iterations):\(base64(salt))$\(base64(storedKey)):\(base64(serverKey))"
    }

    static func hmac(key: [UInt8], message: [UInt8]) -> [UInt8] {
        var state = crypto_auth_hmacsha256_state()
        var mac = [UInt8](repeating: 0, count: Int(crypto_auth_hmacsha256_BYTES))
        crypto_auth_hmacsha256_init(&state, key, key.count)
        crypto_auth_hmacsha256_update(&state, message, UInt64(message.count))
        crypto_auth_hmacsha256_final(&state, &mac)
        return mac
    }

    static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }
}
