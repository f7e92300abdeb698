/// Strings that are and are not tokens, with the verdict the token rule gives each. `TokenTests` checks the Swift
/// `Token` parser against the verdicts; `TokenShapeTests` feeds the same list to the SQL check `audit.is_token` and
/// asserts that both agree.
public enum TokenSamples {
    static let hex = String(repeating: "0123456789abcdef", count: 4)

    /// (string, is it a token?)
    public static let all: [(String, Bool)] = [
        ("ip.v1." + hex, true),
        ("dev.v1." + hex, true),
        ("ip.v2." + hex, true),
        ("dev.v10." + hex, true),
        ("ip.v999999999." + hex, true),
        ("ip.v1." + String(repeating: "f", count: 64), true),
        ("ip.v0." + hex, false),                       // versions start at 1
        ("ip.v01." + hex, false),                      // no leading zeros
        ("ip.v1000000000." + hex, false),              // ten digits
        ("ip.v." + hex, false),
        ("ip.1." + hex, false),
        ("ip.V1." + hex, false),
        ("IP.v1." + hex, false),
        ("device.v1." + hex, false),
        ("device_id.v1." + hex, false),
        ("ip.v1." + hex.uppercased(), false),          // lowercase hex only
        ("ip.v1." + String(hex.dropLast()), false),    // 63 digits
        ("ip.v1." + hex + "0", false),                 // 65 digits
        ("ip.v1." + String(hex.dropLast()) + "g", false),
        ("ip.v1." + hex + "\n", false),
        (" ip.v1." + hex, false),
        ("ip.v1." + hex + " ", false),
        ("ip.v1.." + hex, false),
        ("ip.v1." + hex + ".", false),
        ("ip.v-1." + hex, false),
        ("ip.v+1." + hex, false),
        ("ip.v١." + hex, false),                      // an Arabic-Indic digit
        ("ip.v1." + String(repeating: "٠", count: 64), false),
        ("ip.v1.00", false),
        ("192.0.2.1", false),
        ("", false),
        ("ip", false),
        ("ip.v1", false),
    ]
}
