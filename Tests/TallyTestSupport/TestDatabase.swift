import Foundation
import Logging
import PostgresNIO
import TallyPostgres
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// One PostgreSQL cluster per test run, and a fresh database for each test.
///
/// The cluster is the embedded-cluster code itself, under `.tally/test-cluster` in the package (created
/// once, reused by later runs, stopped when the test process exits if this process started it).
/// `TALLY_TEST_DATABASE_URL` points the tests at another server instead (its user must be able to create databases).
public enum TestDatabase {
    /// Connection settings for a new, empty database, dropped when `body` returns or throws.
    public static func withFreshDatabase<T: Sendable>(
        _ body: (ConnectionSettings) async throws -> T
    ) async throws -> T {
        let admin = try await SharedCluster.shared.adminSettings()
        let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
        try await withSingleConnection(admin) { connection in
            try await connection.execute(
                "CREATE DATABASE \(unescaped: quoteIdentifier(String(name))) TEMPLATE \(unescaped: quoteIdentifier(SharedCluster.templateName))")
        }
        do {
            let result = try await body(admin.with(database: String(name)))
            try await drop(String(name), admin: admin)
            return result
        } catch {
            try? await drop(String(name), admin: admin)
            throw error
        }
    }

    /// Settings of the shared test server's maintenance database (`postgres`).
    public static func adminSettings() async throws -> ConnectionSettings {
        try await SharedCluster.shared.adminSettings()
    }

    private static func drop(_ name: String, admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin) { connection in
            try await connection.execute(
                "DROP DATABASE IF EXISTS \(unescaped: quoteIdentifier(name)) WITH (FORCE)")
        }
    }

    /// The package's root folder (where Package.swift is), found from this file's path.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
}

/// Starts the shared test cluster once per process, whichever test asks first.
actor SharedCluster {
    static let shared = SharedCluster()
    static let templateName = "tally_test_template"

    private var ready: Task<ConnectionSettings, any Error>?

    func adminSettings() async throws -> ConnectionSettings {
        if let ready { return try await ready.value }
        let task = Task { try await Self.prepare() }
        ready = task
        return try await task.value
    }

    private static func prepare() async throws -> ConnectionSettings {
        let admin: ConnectionSettings
        if let url = ProcessInfo.processInfo.environment["TALLY_TEST_DATABASE_URL"], !url.isEmpty {
            admin = try ConnectionSettings(url: url)
        } else {
            let directory = TestDatabase.packageRoot.appendingPathComponent(".tally/test-cluster").path
            let cluster = LocalCluster(dataDirectory: directory, tuning: .fastUnsafe)
            let wasRunning = (try? cluster.status().running) ?? false
            admin = try await cluster.start().with(database: "postgres")
            if !wasRunning, ProcessInfo.processInfo.environment["TALLY_TEST_KEEP_CLUSTER"] == nil {
                stopAtExit(directory)
            }
        }
        try await withSingleConnection(admin) { connection in
            let rows = try await connection.query(
                "SELECT 1 FROM pg_database WHERE datname = \(templateName)")
            var exists = false
            for try await _ in rows { exists = true }
            if !exists {
                _ = try? await connection.query(
                    "CREATE DATABASE \(unescaped: quoteIdentifier(templateName))")
            }
        }
        return admin
    }
}

nonisolated(unsafe) private var clusterToStop: String?

private func stopAtExit(_ directory: String) {
    clusterToStop = directory
    atexit {
        if let directory = clusterToStop {
            _ = try? LocalCluster(dataDirectory: directory).stopBlocking()
        }
    }
}

extension TestDatabase {
    /// The database the running test was handed by `.freshDatabase`.
    @TaskLocal public static var handed: ConnectionSettings?

    /// The running test's own database; a test without the `.freshDatabase` trait fails here.
    public static var current: ConnectionSettings {
        get throws {
            guard let handed else { throw TestSupportError("this test has no database of its own: add the .freshDatabase trait (@Test(.freshDatabase))") }
            return handed
        }
    }
}

struct TestSupportError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A trait that hands each test a new, empty database on the shared test cluster (`TestDatabase.current`),
/// dropped when the test ends. On a suite it applies to each of the suite's tests.
public struct FreshDatabaseTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: () async throws -> Void) async throws {
        // A suite's own scope needs no database; each of its tests gets one.
        guard !test.isSuite else { return try await function() }
        try await TestDatabase.withFreshDatabase { database in
            try await TestDatabase.$handed.withValue(database) { try await function() }
        }
    }
}

extension Trait where Self == FreshDatabaseTrait {
    /// Each test its own new, empty database (`TestDatabase.current`), dropped when it ends.
    public static var freshDatabase: Self { FreshDatabaseTrait() }
}
