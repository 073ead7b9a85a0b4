import Foundation
import PostgresNIO
import Testing
import TallyTestSupport
@testable import TallyPostgres

/// The embedded cluster, as the machine's user (root in CI, where PostgreSQL runs as `postgres`).
@Suite(.serialized, .slot) struct LocalClusterTests {
    private func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-cluster-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func serverVersion(_ settings: ConnectionSettings) async throws -> String {
        try await withPostgresClient(settings) { client in
            var version = ""
            for try await v in try await client.query("SHOW server_version").decode(String.self) { version = v }
            return version
        }
    }

    @Test func startReuseStopAndStartAgainKeepsData() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cluster = LocalCluster(dataDirectory: folder + "/postgres")

        #expect(try cluster.status().initialized == false)
        let first = try await cluster.start()
        let status = try cluster.status()
        #expect(status.running)
        #expect(status.initialized)
        #expect(status.pid != nil)
        #expect(first.database == "tally")
        #expect(!(try await serverVersion(first)).isEmpty)

        try await withPostgresClient(first) { client in
            _ = try await client.query("CREATE TABLE kept (n int)")
            _ = try await client.query("INSERT INTO kept VALUES (42)")
        }

        // A second start while running reuses the same server.
        let second = try await cluster.start()
        #expect(second == first)
        #expect(try cluster.status().pid == status.pid)

        #expect(try await cluster.stop() == true)
        #expect(try cluster.status().running == false)
        #expect(try await cluster.stop() == false, "stopping a stopped cluster says it was not running")

        // Started again: same port, same data.
        let third = try await cluster.start()
        #expect(third.port == first.port)
        let kept = try await withPostgresClient(third) { client in
            var values: [Int] = []
            for try await n in try await client.query("SELECT n FROM kept").decode(Int.self) { values.append(n) }
            return values
        }
        #expect(kept == [42])
        try await cluster.stop()
    }

    /// As root in a folder the postgres user cannot enter (a clone under /root): the data lives under
    /// /var/lib/tally/clusters, and a new clone at the same path finds it again.
    @Test(.enabled(if: geteuid() == 0)) func rootOnlyFolderIsRelocatedAndFoundAgain() async throws {
        let folder = try temporaryFolder()
        chmod(folder, 0o700)
        let cluster = LocalCluster(dataDirectory: folder + "/.tally/postgres")
        let first = try await cluster.start()
        let storedAt = cluster.storedAt
        #expect(storedAt.hasPrefix("/var/lib/tally/clusters/"))
        defer { try? FileManager.default.removeItem(atPath: storedAt) }
        try await withPostgresClient(first) { client in _ = try await client.query("CREATE TABLE kept (n int)") }
        try await cluster.stop()

        // A fresh clone at the same path: .tally/ is gone, the data is not.
        try FileManager.default.removeItem(atPath: folder)
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let again = try await cluster.start()
        #expect(again == first)
        let tables = try await withPostgresClient(again) { client in
            var names: [String] = []
            for try await n in try await client.query("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'").decode(String.self) { names.append(n) }
            return names
        }
        #expect(tables == ["kept"])
        try await cluster.stop()
    }

    @Test func wrongPasswordIsRefused() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cluster = LocalCluster(dataDirectory: folder + "/pg")
        var settings = try await cluster.start()
        settings.password = "not-the-password"
        await #expect(throws: TallyPostgresError.self) {
            try await withPostgresClient(settings) { _ in }
        }
        try await cluster.stop()
    }

    @Test func staleLockFileFromACrashIsHandled() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let cluster = LocalCluster(dataDirectory: folder + "/pg")
        try await cluster.start()
        let pid = try #require(try cluster.status().pid)

        // Crash: kill the postmaster without letting it clean up.
        kill(pid_t(pid), SIGKILL)
        try await waitUntil { !LocalCluster.isPostgresProcess(pid: pid) }
        #expect(FileManager.default.fileExists(atPath: cluster.storedAt + "/postmaster.pid"))

        // Worse: the stale file names a live process that is not PostgreSQL (a reused PID).
        let pidFile = cluster.storedAt + "/postmaster.pid"
        var lines = try String(contentsOfFile: pidFile, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
        lines[0] = Substring(String(getpid()))
        try lines.joined(separator: "\n").write(toFile: pidFile, atomically: false, encoding: .utf8)
        #expect(try cluster.status().running == false)

        let settings = try await cluster.start()
        #expect(try cluster.status().running)
        #expect(!(try await serverVersion(settings)).isEmpty)
        try await cluster.stop()
    }

    @Test func dataFolderThatIsAnotherClusterIsRefused() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder + "/pg", withIntermediateDirectories: true)
        try "not a cluster".write(toFile: folder + "/pg/notes.txt", atomically: true, encoding: .utf8)
        let cluster = LocalCluster(dataDirectory: folder + "/pg")
        await #expect {
            try await cluster.start()
        } throws: { error in
            (error as? TallyPostgresError)?.message.contains("is not an empty folder") == true
        }
    }

    @Test func missingBinariesSayWhatToInstall() {
        #expect {
            try PostgresBinaries.locate(environment: ["PATH": "/nonexistent"], versionedRoot: "/nonexistent/postgresql")
        } throws: { error in
            let message = (error as? TallyPostgresError)?.message ?? ""
            return message.contains("apt-get install postgresql") && message.contains("DATABASE_URL")
        }
    }

    @Test func findsTheInstalledServer() throws {
        let binaries = try PostgresBinaries.locate()
        #expect(binaries.majorVersion >= 12)
        #expect(FileManager.default.isExecutableFile(atPath: binaries.path("initdb")))
    }

    @Test func parsesVersions() {
        #expect(PostgresBinaries.parseVersion("pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)")! == (15, "15.18"))
        #expect(PostgresBinaries.parseVersion("pg_ctl (PostgreSQL) 17beta1")! == (17, "17"))
        #expect(PostgresBinaries.parseVersion("garbage") == nil)
    }
}

/// Polls `condition` for up to `timeout`.
func waitUntil(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("condition not met within \(timeout)")
            return
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

@Suite struct DefaultDataDirectoryTests {
    @Test func findsTheNearestClusterAboveLikeGitFindsItsFolder() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("tally-find-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root + "/.tally/postgres", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: root + "/examples/fltr-auth", withIntermediateDirectories: true)
        #expect(LocalCluster.defaultDataDirectory(from: root + "/examples/fltr-auth") == root + "/.tally/postgres")
        let elsewhere = FileManager.default.temporaryDirectory.appendingPathComponent("tally-none-\(UUID().uuidString.prefix(8))").path
        #expect(LocalCluster.defaultDataDirectory(from: elsewhere) == elsewhere + "/.tally/postgres")
    }
}
