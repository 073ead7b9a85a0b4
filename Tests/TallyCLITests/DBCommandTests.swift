import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import TallyPostgres
import TallyTestSupport

@Suite(.serialized, .slot) struct DBCommandTests {
    struct StatusJSON: Decodable {
        var running: Bool
        var initialized: Bool
        var port: Int?
        var pid: Int?
    }

    private func temporaryFolder() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-cli-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func twoProcessesStartingAtOnceShareOneCluster() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dataDir = folder + "/postgres"

        let a = try TallyProcess.launch(["db", "start", "--data-dir", dataDir, "--json"])
        let b = try TallyProcess.launch(["db", "start", "--data-dir", dataDir, "--json"])
        let (ra, rb) = (await TallyProcess.collect(a), await TallyProcess.collect(b))
        #expect(ra.status == 0, "\(ra.stderr)")
        #expect(rb.status == 0, "\(rb.stderr)")
        let sa = try JSONDecoder().decode(StatusJSON.self, from: Data(ra.stdout.utf8))
        let sb = try JSONDecoder().decode(StatusJSON.self, from: Data(rb.stdout.utf8))
        #expect(sa.running && sb.running)
        #expect(sa.port == sb.port)
        #expect(sa.pid == sb.pid, "both report the one postmaster")
        #expect((ra.stderr + rb.stderr).contains("waiting for it"), "the second process says it waited")

        // The URL works, and psql through tally reaches the same server.
        let url = try await TallyProcess.run(["db", "url", "--data-dir", dataDir])
        #expect(url.status == 0)
        let settings = try ConnectionSettings(url: url.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(settings.port == sa.port)
        let psql = try await TallyProcess.run(["db", "psql", "--data-dir", dataDir, "--", "-tAc", "select 40 + 2"])
        #expect(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "42", "\(psql.stderr)")

        let stop = try await TallyProcess.run(["db", "stop", "--data-dir", dataDir])
        #expect(stop.status == 0)
        #expect(stop.stdout.contains("Stopped"))
        let status = try await TallyProcess.run(["db", "status", "--data-dir", dataDir])
        #expect(status.status == 3)
        #expect(status.stdout.contains("stopped"))
    }

    /// Whether the tests run as root and `nobody` can run the built binary (not when the clone is under /root).
    static var nobodyCanRunTally: Bool {
        guard geteuid() == 0, let nobody = ServiceUser.named("nobody") else { return false }
        return (try? Command.run("/usr/bin/test", ["-x", TallyProcess.executable], as: nobody).succeeded) ?? false
    }

    /// As root, the same commands run by an ordinary user (`nobody`) manage a cluster of their own.
    @Test(.enabled(if: nobodyCanRunTally, "needs root, and a build that the nobody user can reach"))
    func anOrdinaryUserRunsTheirOwnCluster() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let nobody = try #require(ServiceUser.named("nobody"))
        _ = chown(folder, nobody.uid, nobody.gid)
        let dataDir = folder + "/postgres"

        let start = try await TallyProcess.run(["db", "start", "--data-dir", dataDir, "--json"], as: nobody)
        #expect(start.status == 0, Comment(rawValue: start.stderr))
        let status = try JSONDecoder().decode(StatusJSON.self, from: Data(start.stdout.utf8))
        let pid = try #require(status.pid)
        // The server runs as that user, not as the postgres service user.
        var info = stat()
        #expect(stat("/proc/\(pid)", &info) == 0)
        #expect(info.st_uid == nobody.uid)
        let psql = try await TallyProcess.run(["db", "psql", "--data-dir", dataDir, "--", "-tAc", "select 1"], as: nobody)
        #expect(psql.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "1", Comment(rawValue: psql.stderr))
        #expect(try await TallyProcess.run(["db", "stop", "--data-dir", dataDir], as: nobody).status == 0)
    }

    @Test func statusOfAClusterNeverCreated() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let result = try await TallyProcess.run(["db", "status", "--data-dir", folder + "/none"])
        #expect(result.status == 3)
        #expect(result.stdout.contains("not created"))
    }

    @Test func anEmptyDatabaseURLIsAnErrorNotANewCluster() async throws {
        let folder = try temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for command in [["db", "status"], ["migrate", "status"], ["db", "url"]] {
            let result = try await TallyProcess.run(command + ["--database-url", "", "--data-dir", folder + "/cluster"])
            #expect(result.status != 0, "\(command)")
            #expect(result.stderr.contains("--database-url is empty"), "\(command): \(result.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: folder + "/cluster"), "no cluster was created")
    }

    @Test func serveRefusesDeadlinesAndLimitsThatCannotWork() async throws {
        for (arguments, says) in [
            (["--request-timeout", "2", "--database-wait", "3"], "--request-timeout (2.0 s) must be more than --database-wait (3.0 s)"),
            (["--header-timeout", "0"], "--header-timeout and --idle-timeout must be more than 0 seconds"),
            (["--idle-timeout=-1"], "--header-timeout and --idle-timeout must be more than 0 seconds"),
            (["--max-connections", "0"], "--max-connections must be at least 1"),
        ] {
            let result = try await TallyProcess.run(["serve"] + arguments)
            #expect(result.status == 64, "\(arguments)")
            #expect(result.stderr.contains(says), "\(arguments): \(result.stderr)")
        }
    }

    @Test func badDatabaseURLIsAClearErrorWithoutThePassword() async throws {
        let result = try await TallyProcess.run(["db", "url"], environment: ["DATABASE_URL": "postgres://u:VerySecret1@h:99999/db"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("port must be a number"))
        #expect(!result.stderr.contains("VerySecret1"))
        #expect(!result.stdout.contains("VerySecret1"))
    }

    @Test func unreachableDatabaseURLIsReportedNotHung() async throws {
        let port = try LocalCluster.freePort()
        let result = try await TallyProcess.run(["db", "status", "--database-url", "postgres://u:pw1234@127.0.0.1:\(port)/db"])
        #expect(result.status == 1)
        #expect(result.stdout.contains("reachable: no"))
        #expect(!result.stdout.contains("pw1234"))
    }

    @Test func startRefusesWhenDatabaseURLIsSet() async throws {
        let result = try await TallyProcess.run(["db", "start"], environment: ["DATABASE_URL": "postgres://u@h/db"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("DATABASE_URL"))
    }

    @Test func helpAndVersion() async throws {
        let version = try await TallyProcess.run(["--version"])
        #expect(version.status == 0)
        #expect(version.stdout.hasPrefix("tally "))
        let help = try await TallyProcess.run(["--help"])
        #expect(help.stdout.contains("serve"))
        #expect(help.stdout.contains("db"))
        let dbHelp = try await TallyProcess.run(["db", "--help"])
        for sub in ["start", "stop", "status", "url", "psql"] {
            #expect(dbHelp.stdout.contains(sub))
        }
        let serveHelp = try await TallyProcess.run(["serve", "--help"])
        #expect(serveHelp.stdout.contains("--port"))
        #expect(serveHelp.stdout.contains("--database-url"))
    }
}
