import Foundation
import PostgresNIO
import TallyMigrate
import TallyPostgres

/// Keeps the server off a database whose schema is not the one this build expects.
public enum SchemaGate {
    public struct NotReady: Error, CustomStringConvertible {
        public var description: String
    }

    /// With `apply`, applies Tally's pending migrations (what the embedded database and `serve --migrate` do);
    /// without, refuses while any are pending. Changed files or unknown history rows always refuse: they
    /// need a person (`tally migrate status`, `tally migrate repair`).
    /// Returns the tags it applied.
    @discardableResult
    public static func prepare(
        _ database: ConnectionSettings, apply: Bool, progress: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> [String] {
        let migrator = Migrator(folder: try MigrationFolder(path: TallyCredits.migrationsFolder), database: database, progress: progress)
        let report = try await migrator.status()
        guard report.isConsistent else {
            throw NotReady(description: "the database's migration history does not match this build of Tally (changed files or unknown history rows); run `tally migrate status` and `tally migrate repair` before serving")
        }
        let pending = report.pending.map(\.tag)
        if pending.isEmpty { return [] }
        guard apply else {
            throw NotReady(description: "the database has \(pending.count) pending migration(s) (\(pending.joined(separator: ", "))); apply them with `tally migrate up`, or start with `tally serve --migrate`")
        }
        return try await migrator.up().applied
    }

    /// Tally's migrations (tag and file hash) this build expects, read once from the bundled folder; an
    /// unreadable folder is an error wherever it is asked for (never an empty list, which would pass as ready).
    private static let bundled: Result<[(tag: String, hash: String)], NotReady> = {
        do {
            return .success(try MigrationFolder(path: TallyCredits.migrationsFolder).migrations.map { ($0.tag, $0.hash) })
        } catch {
            return .failure(NotReady(description: "this build's bundled migrations cannot be read (\(error)); reinstall Tally"))
        }
    }()

    static func expected() throws -> [(tag: String, hash: String)] { try bundled.get() }

    /// This build's migrations (tags and file hashes) in one string: equal for two builds with the same schema.
    public static func fingerprint() throws -> String {
        try expected().map { "\($0.tag) \($0.hash)" }.joined(separator: "\n")
    }

    /// The tags of this build's migrations that the database's history does not record as applied with the
    /// same file contents: empty when the schema is the one this build serves.
    public static func missingMigrations(_ connection: DatabaseConnection) async throws -> [String] {
        var applied: Set<String> = []
        let table = HistoryTable.drizzleDefault
        for try await hash in try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT hash FROM \(table.sql)")
        ).decode(String.self) { applied.insert(hash) }
        return try expected().filter { !applied.contains($0.hash) }.map(\.tag)
    }
}
