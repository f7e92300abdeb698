// swift-tools-version:6.0
import PackageDescription

/// The project's own targets: every existential spelled `any`, and every module a file uses imported by that file.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "piivault",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "piivault", targets: ["piivault"]),
        .library(name: "PIIVault", targets: ["PIIVault"]),
        // For the fuzzing harnesses (Fuzz/Package.swift), which reach the parsers of these modules directly.
        .library(name: "SigV4", targets: ["SigV4"]),
        .library(name: "AWS", targets: ["AWS"]),
        .library(name: "SQS", targets: ["SQS"]),
        .library(name: "KMS", targets: ["KMS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.36.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // System libraries: a module map and a shim header each, nothing else.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(name: "CMalloc"),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),

        // Pure AWS Signature Version 4 signing; no I/O.
        .target(name: "SigV4", dependencies: ["CSodium"], swiftSettings: strictSettings),
        // AWS plumbing shared by every AWS client: shared config and credentials files, profiles, region and
        // endpoint resolution, credentials providers (refreshing), STS, and the HTTP transport seam.
        .target(
            name: "AWS",
            dependencies: [
                "SigV4",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),
        // Amazon SQS client (query/XML and JSON protocols) over the AWS module's HTTP transport.
        .target(
            name: "SQS",
            dependencies: ["AWS", "SigV4", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // AWS KMS client (Encrypt, Decrypt; JSON 1.1 protocol) over the AWS module's HTTP transport.
        .target(
            name: "KMS",
            dependencies: ["AWS", "SigV4", "CSodium", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings
        ),
        // Thin, safe libpq wrapper.
        .target(
            name: "Postgres",
            dependencies: ["CLibPQ"],
            swiftSettings: strictSettings
        ),
        // The core: events, tokens, sealing, key files, vault store, audit, ETL pipeline.
        .target(
            name: "PIIVault",
            dependencies: [
                "CSodium", "CLibCrypto", "CMalloc", "Postgres", "AWS", "SQS", "KMS",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        // The command line: parses arguments, prints, bootstraps logging. No behaviour of its own.
        .executableTarget(
            name: "piivault",
            dependencies: [
                "PIIVault",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings
        ),

        // Benchmarks (`make bench`): measurements, not tests.
        .executableTarget(
            name: "piivault-bench",
            dependencies: ["PIIVault", "SQS", .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: strictSettings
        ),

        // Shared helpers for tests: service discovery, scratch databases, running the binary.
        .target(
            name: "TestSupport",
            dependencies: ["Postgres", "CSodium"],
            path: "Tests/TestSupport"
        ),
        // Unit tier (`make test-unit`): no Postgres, no SQS emulator, no Python. They may run the built binary.
        .testTarget(name: "SigV4Tests", dependencies: ["SigV4", "TestSupport"]),
        // Unit tier: the AWS module and the SQS client over a fake transport; no service, no Python.
        .testTarget(name: "AWSTests", dependencies: ["AWS", "SQS", "KMS", "SigV4", .product(name: "Logging", package: "swift-log"),
                                                  .product(name: "NIOSSL", package: "swift-nio-ssl")],
                    swiftSettings: strictSettings),
        // Unit tier: the core, and the ETL's batch logic over fakes of its sessions and source (Postgres: its error type).
        .testTarget(
            name: "PIIVaultTests",
            dependencies: ["PIIVault", "Postgres", "AWS", "TestSupport", "CSodium", .product(name: "Logging", package: "swift-log")]
        ),
        // Unit tier: the command line parsed in process (the executable's commands, imported as a module).
        .testTarget(
            name: "CommandParsingTests",
            dependencies: ["piivault", "PIIVault", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // Integration tier (`make test` runs both tiers): real PostgreSQL, moto_server, Python cross-checks.
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"]),
        .testTarget(
            name: "SQSIntegrationTests",
            dependencies: ["AWS", "SQS", "SigV4", "TestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(name: "PIIVaultCrossCheckTests", dependencies: ["PIIVault", "TestSupport"]),
        .testTarget(name: "IntegrationTests", dependencies: ["PIIVault", "Postgres", "AWS", "SQS", "SigV4", "TestSupport"]),
    ]
)
