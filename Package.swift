// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "tally",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tally", targets: ["tally"]),
        .library(name: "TallyPostgres", targets: ["TallyPostgres"]),
        .library(name: "TallyMigrate", targets: ["TallyMigrate"]),
        .library(name: "TallyCredits", targets: ["TallyCredits"]),
        .library(name: "TallyServer", targets: ["TallyServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // Connection settings, the embedded local cluster, client helpers.
        .target(
            name: "TallyPostgres",
            dependencies: [
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Migration folders, history, planner, lint, introspection; knows nothing of credits.
        .target(
            name: "TallyMigrate",
            dependencies: ["TallyPostgres"],
            swiftSettings: swiftSettings
        ),
        // The credits domain and its store.
        .target(
            name: "TallyCredits",
            dependencies: ["TallyMigrate", "TallyPostgres"],
            swiftSettings: swiftSettings
        ),
        // The HTTP application.
        .target(
            name: "TallyServer",
            dependencies: [
                "TallyCredits",
                "TallyPostgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // The command line: parses, calls the libraries, prints.
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyServer",
                "TallyPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        // Shared by the test targets: one PostgreSQL cluster per test run, a fresh database per test.
        .target(
            name: "TallyTestSupport",
            dependencies: ["TallyPostgres"],
            path: "Tests/TallyTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyPostgresTests",
            dependencies: ["TallyPostgres", "TallyTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyServerTests",
            dependencies: [
                "TallyServer",
                "TallyTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyCLITests",
            dependencies: ["tally", "TallyTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
