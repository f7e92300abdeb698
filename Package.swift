// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "piivault",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "piivault", targets: ["piivault"]),
        .library(name: "PIIVault", targets: ["PIIVault"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // System libraries: a module map and a shim header each, nothing else.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),

        // Pure AWS Signature Version 4 signing; no I/O.
        .target(name: "SigV4", dependencies: ["CSodium"]),
        // Amazon SQS client (query/XML and JSON protocols) over AsyncHTTPClient.
        .target(
            name: "SQS",
            dependencies: [
                "SigV4",
                "CSodium",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Thin, safe libpq wrapper.
        .target(
            name: "Postgres",
            dependencies: ["CLibPQ", .product(name: "Logging", package: "swift-log")]
        ),
        // The core: events, tokens, sealing, key files, vault store, audit, ETL pipeline.
        .target(
            name: "PIIVault",
            dependencies: [
                "CSodium", "Postgres", "SQS",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The command line: parses arguments, prints, bootstraps logging. No behaviour of its own.
        .executableTarget(
            name: "piivault",
            dependencies: [
                "PIIVault",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Benchmarks (`make bench`): measurements, not tests.
        .executableTarget(
            name: "piivault-bench",
            dependencies: ["PIIVault", "Postgres", "SQS", .product(name: "Logging", package: "swift-log")]
        ),

        // Shared helpers for tests: service discovery, scratch databases, running the binary.
        .target(
            name: "TestSupport",
            dependencies: ["Postgres"],
            path: "Tests/TestSupport"
        ),
        // Unit tier (`make test-unit`): no Postgres, no SQS emulator, no Python. They may run the built binary.
        .testTarget(name: "SigV4Tests", dependencies: ["SigV4", "TestSupport"]),
        .testTarget(name: "SQSTests", dependencies: ["SQS", "TestSupport"]),
        .testTarget(name: "PIIVaultTests", dependencies: ["PIIVault", "TestSupport"]),
        // Integration tier (`make test` runs both tiers): real PostgreSQL, moto_server, Python cross-checks.
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"]),
        .testTarget(
            name: "SQSIntegrationTests",
            dependencies: ["SQS", "SigV4", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "PIIVaultCrossCheckTests", dependencies: ["PIIVault", "TestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PIIVault", "Postgres", "SQS", "TestSupport"]),
    ]
)
