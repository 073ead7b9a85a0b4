import Foundation
import Testing
import TallyPostgres

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

@Suite(.serialized) struct ServeCommandTests {
    @Test func serveStartsTheClusterAnswersHealthAndStopsOnCtrlC() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tally-serve-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let dataDir = folder + "/postgres"
        let port = try LocalCluster.freePort()

        let launched = try TallyProcess.launch(["serve", "--port", String(port), "--data-dir", dataDir])
        let (status, body) = try await getWhenUp("http://127.0.0.1:\(port)/healthz")
        #expect(status == 200)
        #expect(body.contains("\"reachable\":true"))

        // Ctrl-C: the server shuts down gracefully and exits 0.
        kill(launched.pid, SIGINT)
        let result = await TallyProcess.collect(launched)
        #expect(result.status == 0, Comment(rawValue: result.stderr))

        // The cluster keeps running for the next serve, then `db stop` stops it.
        #expect(try LocalCluster(dataDirectory: dataDir).status().running)
        let stop = try await TallyProcess.run(["db", "stop", "--data-dir", dataDir])
        #expect(stop.status == 0)
    }

    private func getWhenUp(_ url: String) async throws -> (Int, String) {
        let deadline = ContinuousClock.now + .seconds(60)
        while true {
            do {
                let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
                return ((response as! HTTPURLResponse).statusCode, String(decoding: data, as: UTF8.self))
            } catch {
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }
}
