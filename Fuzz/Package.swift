// swift-tools-version:6.0
import PackageDescription

// libFuzzer harnesses for every parser that reads bytes from outside (`make fuzz`; scripts/fuzz builds this package
// with `-sanitize=fuzzer -sanitize=address`). A package of its own, so that the root package's builds and tests are
// untouched: one executable per harness, each defining `LLVMFuzzerTestOneInput`.

/// A harness: `Sources/fuzz-<name>/`, depending on the root package's products it needs.
func harness(_ name: String, _ products: [String]) -> Target {
    .executableTarget(name: "fuzz-\(name)",
                      dependencies: ["FuzzSupport"] + products.map { .product(name: $0, package: "piivault") }
                          + [.product(name: "Logging", package: "swift-log")])
}

let package = Package(
    name: "piivault-fuzz",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "piivault", path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Input reading, the async bridge and a canned HTTP transport, shared by the harnesses.
        .target(name: "FuzzSupport", dependencies: ["CLibFuzzer", .product(name: "AWS", package: "piivault")]),
        // libFuzzer's driver, declared for Swift (the library itself comes with -sanitize=fuzzer).
        .target(name: "CLibFuzzer"),
        harness("login-event", ["PIIVault"]),
        harness("key-file", ["PIIVault"]),
        harness("token-canonical", ["PIIVault"]),
        harness("minisign", ["PIIVault"]),
        harness("escaping", ["PIIVault"]),
        harness("xml", ["AWS"]),
        harness("shared-config", ["AWS"]),
        harness("credential-process", ["AWS"]),
        harness("sts-answer", ["AWS"]),
        harness("sqs-answers", ["AWS", "SQS"]),
        harness("kms-answers", ["AWS", "KMS"]),
        harness("sigv4", ["SigV4"]),
        // The self-test of scripts/fuzz: inputs that crash, leak and hang on purpose. Never in the harness list.
        .executableTarget(name: "fuzz-canary", dependencies: ["FuzzSupport"]),
    ],
    // The harnesses are small and call synchronous entry points from C; Swift 6's checks add nothing here.
    swiftLanguageModes: [.v5]
)
