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
        .library(name: "TallyClient", targets: ["TallyClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        // Already built for postgres-nio; the mail client's STARTTLS uses it directly.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Webhook deliveries go out through it (HummingbirdTesting already builds it for the tests).
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        // The ownership manifest (which app owns which tables) is TOML: comments, and the shape apps' configs have.
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        // The portal's pages: logic-less templates (no dependencies of its own), so a page only shows what the
        // library calls the JSON API makes return.
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        // The product's own session tokens (--trust-jwt): JWS verification and JWKS, maintained by Vapor.
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
    ],
    targets: [
        // Connection settings, the embedded local cluster, client helpers.
        .target(
            name: "TallyPostgres",
            dependencies: [
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        // PostgreSQL's parser (libpg_query), from Debian's libpg-query-dev.
        .systemLibrary(
            name: "CPgQuery",
            path: "Sources/CPgQuery",
            providers: [.apt(["libpg-query-dev"])]
        ),
        // Migration folders, history, planner, lint, introspection; knows nothing of credits.
        .target(
            name: "TallyMigrate",
            dependencies: [
                "CPgQuery",
                "TallyPostgres",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings
        ),
        // Tally's schema as a Drizzle migrations folder, bundled so `tally migrate` needs no --dir.
        // (Migrations/ at the top is a link to Sources/TallySchema/Migrations.)
        .target(
            name: "TallySchema",
            resources: [.copy("Migrations")]
        ),
        // The credits domain and its store.
        .target(
            name: "TallyCredits",
            dependencies: [
                "TallyMigrate", "TallyPostgres", "TallySchema",
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        // The HTTP application.
        .target(
            name: "TallyServer",
            dependencies: [
                "TallyCredits",
                "TallyPostgres",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdAuth", package: "hummingbird-auth"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "JWTKit", package: "jwt-kit"),
            ],
            resources: [.copy("Portal/Templates"), .copy("Portal/Assets")],
            swiftSettings: swiftSettings
        ),
        // A client of a running Tally server (the post-deploy smoke test); Foundation only.
        .target(
            name: "TallyClient",
            swiftSettings: swiftSettings
        ),
        // The command line: parses, calls the libraries, prints.
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyServer",
                "TallyClient",
                "TallyCredits",
                "TallyMigrate",
                "TallyPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        // Shared by the test targets: one PostgreSQL cluster per test run, a fresh database per test.
        .target(
            name: "TallyTestSupport",
            dependencies: [
                "TallyPostgres", "TallyCredits",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TallyTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyPostgresTests",
            dependencies: ["TallyPostgres", "TallyTestSupport", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyMigrateTests",
            dependencies: ["TallyMigrate", "TallyPostgres", "TallyTestSupport", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyCreditsTests",
            dependencies: [
                "TallyCredits",
                "TallyPostgres",
                "TallyTestSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyServerTests",
            dependencies: [
                "TallyServer",
                "TallyClient",
                "TallyCredits",
                "TallyPostgres",
                "TallyTestSupport",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "TallyCLITests",
            dependencies: ["tally", "TallyPostgres", "TallyTestSupport", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: swiftSettings
        ),
    ]
)
