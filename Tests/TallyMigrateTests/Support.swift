import Foundation
import Synchronization
import PostgresNIO
import TallyPostgres
import TallyTestSupport
@testable import TallyMigrate

/// Builds a Drizzle migrations folder in a temporary directory.
struct DrizzleFolder {
    let path: String

    init(_ migrations: [(tag: String, when: Int64, sql: String)], breakpoints: Bool = true) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tally-migrations-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path + "/meta", withIntermediateDirectories: true)
        try write(migrations, breakpoints: breakpoints)
    }

    func write(_ migrations: [(tag: String, when: Int64, sql: String)], breakpoints: Bool = true) throws {
        let entries = migrations.enumerated().map { i, m in
            "{\"idx\": \(i), \"version\": \"7\", \"when\": \(m.when), \"tag\": \"\(m.tag)\", \"breakpoints\": \(breakpoints)}"
        }
        try "{\"version\": \"7\", \"dialect\": \"postgresql\", \"entries\": [\(entries.joined(separator: ", "))]}"
            .write(toFile: path + "/meta/_journal.json", atomically: true, encoding: .utf8)
        for m in migrations {
            try m.sql.write(toFile: "\(path)/\(m.tag).sql", atomically: true, encoding: .utf8)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// The Next.js app's Drizzle folder of the seed's database (examples/fltr-auth/migrations).
var nextjsFolder: String {
    TestDatabase.packageRoot.appendingPathComponent("examples/fltr-auth/migrations").path
}

func query<T: PostgresDecodable & Sendable>(_ settings: ConnectionSettings, _ sql: PostgresQuery, as: T.Type) async throws -> [T] {
    try await withPostgresClient(settings) { client in
        var out: [T] = []
        for try await value in try await client.query(sql).decode(T.self) { out.append(value) }
        return out
    }
}

func execute(_ settings: ConnectionSettings, _ sql: String) async throws {
    try await withSingleConnection(settings) { connection in try await connection.run(sql) }
}

func tableExists(_ settings: ConnectionSettings, _ name: String) async throws -> Bool {
    try await query(settings, "SELECT count(*)::int FROM pg_tables WHERE schemaname = 'public' AND tablename = \(name)", as: Int.self) == [1]
}

/// Collects progress lines from a migrator.
final class Lines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
