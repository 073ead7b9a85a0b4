import Foundation
import Synchronization

/// The PostgreSQL server programs Tally runs: initdb, pg_ctl and postgres from one directory,
/// plus the client tools (psql, pg_dump, pg_restore) from the same directory when it has them.
public struct PostgresBinaries: Sendable, Equatable {
    /// The directory holding `initdb`, `pg_ctl` and `postgres`.
    public var directory: String
    /// The major version, from `pg_ctl --version` (15 for "pg_ctl (PostgreSQL) 15.8").
    public var majorVersion: Int
    /// The full version string, e.g. "15.8".
    public var version: String

    public func path(_ tool: String) -> String { directory + "/" + tool }

    /// A client tool (psql, pg_dump, …): from the server's directory, else from PATH.
    public func clientTool(_ tool: String) -> String? {
        let own = path(tool)
        if FileManager.default.isExecutableFile(atPath: own) { return own }
        return Self.searchPath(for: tool)
    }

    static let serverTools = ["initdb", "pg_ctl", "postgres"]

    /// Finds the server programs: first on PATH (following symlinks to their real directory),
    /// then the newest `/usr/lib/postgresql/*/bin`.
    public static func locate(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        versionedRoot: String = "/usr/lib/postgresql"
    ) throws(TallyPostgresError) -> PostgresBinaries {
        var candidates: [String] = []
        if let explicit = environment["TALLY_PG_BIN"], !explicit.isEmpty {
            candidates.append(explicit)
        }
        if let pgCtl = searchPath(for: "pg_ctl", environment: environment) {
            let real = URL(fileURLWithPath: pgCtl).resolvingSymlinksInPath()
            candidates.append(real.deletingLastPathComponent().path)
        }
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: versionedRoot)) ?? []
        let newestFirst = versions.compactMap { name in Int(name).map { ($0, name) } }.sorted { $0.0 > $1.0 }
        candidates += newestFirst.map { "\(versionedRoot)/\($0.1)/bin" }

        for directory in candidates where serverTools.allSatisfy({ FileManager.default.isExecutableFile(atPath: directory + "/" + $0) }) {
            guard let version = try version(in: directory) else { continue }
            return PostgresBinaries(directory: directory, majorVersion: version.major, version: version.full)
        }
        throw TallyPostgresError(
            .binariesNotFound,
            """
            PostgreSQL's server programs (initdb, pg_ctl, postgres) were not found on PATH or under \(versionedRoot)/*/bin.
            Install them (Debian/Ubuntu: apt-get install postgresql), or point Tally at an existing server with DATABASE_URL=postgres://user:password@host:5432/database.
            """
        )
    }

    /// `pg_ctl --version` of `directory`, asked once per process: the thread that asks waits for the child.
    private static func version(in directory: String) throws(TallyPostgresError) -> (major: Int, full: String)? {
        if let known = versions.withLock({ $0[directory] }) { return known }
        let result = try Command.run(directory + "/pg_ctl", ["--version"])
        let version = result.succeeded ? parseVersion(result.output) : nil
        versions.withLock { $0[directory] = version }
        return version
    }

    private static let versions = Mutex<[String: (major: Int, full: String)?]>([:])

    /// "pg_ctl (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" → (15, "15.8").
    public static func parseVersion(_ text: String) -> (major: Int, full: String)? {
        guard let range = text.range(of: "(PostgreSQL) ") else { return nil }
        let full = text[range.upperBound...].prefix { $0.isNumber || $0 == "." }
        guard let major = Int(full.split(separator: ".").first ?? "") else { return nil }
        return (major, String(full))
    }

    /// The first executable `tool` on PATH.
    public static func searchPath(
        for tool: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String? {
        for dir in (environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
