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
/// The cluster is the embedded-cluster code itself (created once, reused by later runs, stopped when the test
/// process exits if this process started it), on a RAM disk when the machine has one with room
/// (`TestDatabase.clusterDirectory`). `TALLY_TEST_DATABASE_URL` points the tests at another server instead
/// (its user must be able to create databases).
///
/// At most `TestDatabase.width` tests hold a database at once (`TestSlots`): Swift Testing starts every test
/// of the run at the same moment, and a machine with two cores cannot create, migrate, serve and drop 170
/// databases at once without leaving each connection waiting seconds for a CPU.
public enum TestDatabase {
    /// Connection settings for a new database cloned from `template` (by default an empty one), dropped when
    /// `body` returns or throws.
    public static func withFreshDatabase<T: Sendable>(
        from template: DatabaseTemplate = .empty,
        _ body: (ConnectionSettings) async throws -> T
    ) async throws -> T {
        try await withSlot {
            let admin = try await SharedCluster.shared.adminSettings()
            let source = try await SharedCluster.shared.ready(template)
            let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(20)
            try await withSingleConnection(admin, logger: quiet) { connection in
                try await connection.execute(
                    "CREATE DATABASE \(unescaped: quoteIdentifier(String(name))) TEMPLATE \(unescaped: quoteIdentifier(source))")
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
    }

    /// Runs `body` as one of the `width` tests that may load the machine at once (a database, a server, a
    /// cluster or a `tally` process of its own). Taken once per test: a test already holding a slot runs
    /// nested calls in it.
    public static func withSlot<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        if TestSlots.held { return try await body() }
        await TestSlots.shared.acquire()
        do {
            let result = try await TestSlots.$held.withValue(true) { try await body() }
            await TestSlots.shared.release()
            return result
        } catch {
            await TestSlots.shared.release()
            throw error
        }
    }

    /// How many tests hold a database at once: `TALLY_TEST_WIDTH`, else four per core.
    public static let width: Int = {
        if let text = ProcessInfo.processInfo.environment["TALLY_TEST_WIDTH"], let width = Int(text), width > 0 { return width }
        return 4 * max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// A PostgreSQL cluster of the test's own (fsync off, on the RAM disk when there is one), for a test
    /// that stops or restarts its server; stopped and removed when `body` returns or throws. Holds a slot.
    public static func withOwnCluster<T: Sendable>(
        _ body: (LocalCluster, ConnectionSettings) async throws -> T
    ) async throws -> T {
        try await withSlot {
            let parent = ramDisk(minimumFree: 1 << 30) ?? FileManager.default.temporaryDirectory.path
            let directory = "\(parent)/tally-own-cluster-\(UUID().uuidString.prefix(8).lowercased())"
            let cluster = LocalCluster(dataDirectory: directory, tuning: .fastUnsafe)
            func remove() async {
                _ = try? await cluster.stop()
                try? FileManager.default.removeItem(atPath: cluster.storedAt)
                try? FileManager.default.removeItem(atPath: directory)
            }
            do {
                let result = try await body(cluster, try await cluster.start().with(database: "postgres"))
                await remove()
                return result
            } catch {
                await remove()
                throw error
            }
        }
    }

    /// The sessions on `database` other than `connection`'s own, once there are none or `within` has passed.
    public static func sessionsLeft(on database: String, _ connection: DatabaseConnection, within: Duration) async throws -> Int {
        let deadline = ContinuousClock.now + within
        while true {
            var sessions = 0
            for try await n in try await connection.query(
                "SELECT count(*)::int FROM pg_stat_activity WHERE datname = \(database) AND pid <> pg_backend_pid()"
            ).decode(Int.self) { sessions = n }
            if sessions == 0 || ContinuousClock.now > deadline { return sessions }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Settings of the shared test server's maintenance database (`postgres`).
    public static func adminSettings() async throws -> ConnectionSettings {
        try await SharedCluster.shared.adminSettings()
    }

    private static func drop(_ name: String, admin: ConnectionSettings) async throws {
        try await withSingleConnection(admin, logger: quiet) { connection in
            try await connection.execute(
                "DROP DATABASE IF EXISTS \(unescaped: quoteIdentifier(name)) WITH (FORCE)")
        }
    }

    static let quiet = LocalCluster.quietLogger

    /// The package's root folder (where Package.swift is), found from this file's path.
    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// Where the shared test cluster lives: `TALLY_TEST_CLUSTER_DIR`; else on the RAM disk `/dev/shm` when it
    /// is a tmpfs with 2 GiB free, in a folder named for this package's path; else `.tally/test-cluster` in
    /// the package.
    ///
    /// Why a RAM disk: every test's `CREATE DATABASE` writes some 300 files and its `DROP DATABASE` deletes them.
    /// On a disk filesystem that costs kernel time per file, and on ext4 without a journal (this project's CI
    /// machines) allocating an inode skips every inode deleted in the last 30 s, one lookup each: measured on a
    /// 2-core CI machine, `CREATE DATABASE` of the 7 MB template took 36 ms on a quiet disk, 200–400 ms while a
    /// run was dropping databases, 10–15 ms on tmpfs. The cluster runs without fsync and is thrown away anyway.
    public static var clusterDirectory: String {
        let environment = ProcessInfo.processInfo.environment
        if let directory = environment["TALLY_TEST_CLUSTER_DIR"], !directory.isEmpty { return directory }
        if let ramDisk = ramDisk(minimumFree: 2 << 30) {
            return "\(ramDisk)/tally-test-\(sha256Hex(Data(packageRoot.path.utf8)).prefix(12))/cluster"
        }
        return packageRoot.appendingPathComponent(".tally/test-cluster").path
    }

    /// `/dev/shm` when it is a tmpfs with at least `minimumFree` bytes free.
    static func ramDisk(minimumFree: UInt64) -> String? {
        #if os(Linux)
        let path = "/dev/shm"
        let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
        let isTmpfs = mounts.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ")
            return fields.count > 2 && fields[1] == Substring(path) && fields[2] == "tmpfs"
        }
        var info = statvfs()
        guard isTmpfs, statvfs(path, &info) == 0 else { return nil }
        let free = UInt64(info.f_bavail) * UInt64(info.f_frsize)
        return free >= minimumFree ? path : nil
        #else
        return nil
        #endif
    }
}

/// A database new test databases are cloned from: empty, or with a schema built once per run (and kept by the
/// cluster for later runs while `version` stays the same).
public struct DatabaseTemplate: Sendable {
    /// The database's name on the cluster.
    public let name: String
    let build: (@Sendable (ConnectionSettings) async throws -> Void)?

    /// An empty database.
    public static let empty = DatabaseTemplate(name: "tally_test_template", build: nil)

    /// A database that `build` fills. `version` names what `build` makes (the migration files' hashes): a
    /// template built from other files is never reused.
    public init(name: String, version: String, build: @escaping @Sendable (ConnectionSettings) async throws -> Void) {
        self.name = "tally_test_\(name)_\(sha256Hex(Data(version.utf8)).prefix(12))"
        self.build = build
    }

    private init(name: String, build: (@Sendable (ConnectionSettings) async throws -> Void)?) {
        self.name = name
        self.build = build
    }
}

/// At most `TestDatabase.width` tests at a time, the rest waiting in the order they asked.
actor TestSlots {
    static let shared = TestSlots(width: TestDatabase.width)
    @TaskLocal static var held = false

    private var free: Int
    private var waiting: [CheckedContinuation<Void, Never>] = []

    init(width: Int) { free = width }

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func release() {
        if waiting.isEmpty {
            free += 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

/// Starts the shared test cluster once per process, whichever test asks first, and builds each template once.
actor SharedCluster {
    static let shared = SharedCluster()

    private var ready: Task<ConnectionSettings, any Error>?
    private var templates: [String: Task<String, any Error>] = [:]

    func adminSettings() async throws -> ConnectionSettings {
        if let ready { return try await ready.value }
        let task = Task { try await Self.prepare() }
        ready = task
        return try await task.value
    }

    /// The name of `template`'s database, built first if this run has not yet.
    func ready(_ template: DatabaseTemplate) async throws -> String {
        if let task = templates[template.name] { return try await task.value }
        let admin = try await adminSettings()
        let task = Task { try await Self.build(template, admin: admin) }
        templates[template.name] = task
        return try await task.value
    }

    private static func prepare() async throws -> ConnectionSettings {
        let admin: ConnectionSettings
        if let url = ProcessInfo.processInfo.environment["TALLY_TEST_DATABASE_URL"], !url.isEmpty {
            admin = try ConnectionSettings(url: url)
        } else {
            let directory = TestDatabase.clusterDirectory
            let cluster = LocalCluster(dataDirectory: directory, tuning: .fastUnsafe)
            let wasRunning = (try? cluster.status().running) ?? false
            admin = try await cluster.start().with(database: "postgres")
            if !wasRunning, ProcessInfo.processInfo.environment["TALLY_TEST_KEEP_CLUSTER"] == nil {
                stopAtExit(directory)
            }
        }
        _ = try await build(.empty, admin: admin)
        return admin
    }

    /// Makes `template`'s database unless the cluster has it: built under a name of its own and renamed
    /// when complete, so a run that stops halfway, or another test process building the same template, never
    /// leaves a half-built one under the template's name. Templates of other versions are dropped.
    private static func build(_ template: DatabaseTemplate, admin: ConnectionSettings) async throws -> String {
        let exists = try await withSingleConnection(admin, logger: TestDatabase.quiet) { connection in
            var found = false
            for try await _ in try await connection.query("SELECT 1 FROM pg_database WHERE datname = \(template.name)") { found = true }
            return found
        }
        if exists { return template.name }
        guard let build = template.build else {
            try await withSingleConnection(admin, logger: TestDatabase.quiet) { connection in
                do {
                    try await connection.execute("CREATE DATABASE \(unescaped: quoteIdentifier(template.name))")
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42P04" {
                    // Another test process created it first.
                }
            }
            return template.name
        }
        let source = try await SharedCluster.shared.ready(.empty)
        let building = "tally_test_building_\(UUID().uuidString.prefix(8).lowercased())"
        try await withSingleConnection(admin, logger: TestDatabase.quiet) { connection in
            try await connection.execute(
                "CREATE DATABASE \(unescaped: quoteIdentifier(building)) TEMPLATE \(unescaped: quoteIdentifier(source))")
        }
        do {
            try await build(admin.with(database: building))
            try await withSingleConnection(admin, logger: TestDatabase.quiet) { connection in
                // The build's connections may still be closing on the server's side; a rename needs none.
                try await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \(building) AND pid <> pg_backend_pid()")
                try await connection.execute(
                    "ALTER DATABASE \(unescaped: quoteIdentifier(building)) WITH ALLOW_CONNECTIONS false")
                let left = try await TestDatabase.sessionsLeft(on: building, connection, within: .seconds(30))
                if left > 0 { throw TestSupportError("\(left) session(s) stayed on the template database \(building) for 30 s") }
                do {
                    try await connection.execute(
                        "ALTER DATABASE \(unescaped: quoteIdentifier(building)) RENAME TO \(unescaped: quoteIdentifier(template.name))")
                } catch let error as PSQLError where error.serverInfo?[.sqlState] == "42P04" {
                    try await connection.execute("DROP DATABASE \(unescaped: quoteIdentifier(building))")
                }
                try await dropOtherVersions(of: template, connection)
            }
        } catch {
            try? await withSingleConnection(admin, logger: TestDatabase.quiet) { connection in
                try await connection.execute("DROP DATABASE IF EXISTS \(unescaped: quoteIdentifier(building)) WITH (FORCE)")
            }
            throw error
        }
        return template.name
    }

    /// Templates an earlier run built from other migration files: nothing will clone them again.
    private static func dropOtherVersions(of template: DatabaseTemplate, _ connection: DatabaseConnection) async throws {
        let prefix = String(template.name.dropLast(12))
        var stale: [String] = []
        for try await name in try await connection.query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, \(prefix)) AND datname <> \(template.name)"
        ).decode(String.self) { stale.append(name) }
        for name in stale {
            // Another process may be cloning it this moment; it goes with a later run then.
            try? await connection.execute("DROP DATABASE IF EXISTS \(unescaped: quoteIdentifier(name))")
        }
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

/// A trait that hands each test a new database on the shared test cluster (`TestDatabase.current`), cloned
/// from a template (empty unless told), dropped when the test ends. On a suite it applies to each of the
/// suite's tests.
public struct FreshDatabaseTrait: TestTrait, SuiteTrait, TestScoping {
    let template: DatabaseTemplate
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: () async throws -> Void) async throws {
        // A suite's own scope needs no database; each of its tests gets one.
        guard !test.isSuite else { return try await function() }
        try await TestDatabase.withFreshDatabase(from: template) { database in
            try await TestDatabase.$handed.withValue(database) { try await function() }
        }
    }
}

extension Trait where Self == FreshDatabaseTrait {
    /// Each test its own new, empty database (`TestDatabase.current`), dropped when it ends.
    public static var freshDatabase: Self { FreshDatabaseTrait(template: .empty) }

    /// Each test its own new database cloned from `template` (`TestDatabase.current`), dropped when it ends.
    public static func freshDatabase(from template: DatabaseTemplate) -> Self { FreshDatabaseTrait(template: template) }
}

/// A trait for a test that loads the machine without a database of the shared cluster (a cluster of its own,
/// `tally` processes): it runs as one of the `TestDatabase.width` tests at a time.
public struct SlotTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: () async throws -> Void) async throws {
        guard !test.isSuite else { return try await function() }
        try await TestDatabase.withSlot { try await function() }
    }
}

extension Trait where Self == SlotTrait {
    /// Runs each test as one of the `TestDatabase.width` that may load the machine at once.
    public static var slot: Self { SlotTrait() }
}
