import Foundation
import PostgresNIO
import TallyPostgres

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Runs the built `tally` executable, as a user would from a shell.
struct TallyProcess {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    struct Launched {
        var child: Command.Child
        var stdout: String
        var stderr: String
        var pid: pid_t { child.pid }
    }

    /// `.build/<config>/tally`, next to the test bundle.
    static var executable: String {
        var dir = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("tally").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return "tally"
    }

    /// Starts `tally` with `arguments`; `in` a working directory other than the test's.
    static func launch(
        _ arguments: [String], environment: [String: String] = [:], as user: ServiceUser? = nil, in directory: String? = nil
    ) throws -> Launched {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("tally-run-\(UUID().uuidString)").path
        var env = environment
        // An inherited DATABASE_URL would change what the command under test does.
        if env["DATABASE_URL"] == nil { env["DATABASE_URL"] = "" }
        let child: Command.Child
        if let directory {
            let quoted = ([executable] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            child = try Command.spawn(
                "/bin/sh", ["-c", "cd '\(directory)' && exec \(quoted)"], environment: env, as: user, stdout: base + ".out", stderr: base + ".err")
        } else {
            child = try Command.spawn(executable, arguments, environment: env, as: user, stdout: base + ".out", stderr: base + ".err")
        }
        return Launched(child: child, stdout: base + ".out", stderr: base + ".err")
    }

    static func collect(_ launched: Launched) async -> Result {
        let status = await launched.child.waitAsync()
        defer {
            try? FileManager.default.removeItem(atPath: launched.stdout)
            try? FileManager.default.removeItem(atPath: launched.stderr)
        }
        return Result(
            status: status,
            stdout: (try? String(contentsOfFile: launched.stdout, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: launched.stderr, encoding: .utf8)) ?? "")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:], as user: ServiceUser? = nil) async throws -> Result {
        await collect(try launch(arguments, environment: environment, as: user))
    }
}

/// GETs `url` until something answers (a server still starting refuses connections), for up to a minute.
func getWhenUp(_ url: String) async throws -> (Int, String) {
    let deadline = ContinuousClock.now + .seconds(60)
    while true {
        do {
            let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
        } catch {
            if ContinuousClock.now > deadline { throw error }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}

/// The one integer `sql` answers on `db` (-1 when it answers no row).
func scalar(_ db: ConnectionSettings, _ sql: PostgresQuery) async throws -> Int {
    try await withPostgresClient(db) { client in
        for try await value in try await client.query(sql).decode(Int.self) { return value }
        return -1
    }
}
