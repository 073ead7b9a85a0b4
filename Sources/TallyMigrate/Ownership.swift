import Foundation
import TOMLKit

/// Who owns which tables of a shared database, in TOML (the machine-readable `SCHEMA_OWNERSHIP.md`):
///
/// ```toml
/// [apps.nextjs]
/// drizzle = "nextjs/migrations"          # its migrations folder: what it declares and runs
/// owns = ["public.users", "public.teams", "public.user_credits"]
///
/// [apps.fastapi]
/// sqlalchemy = "models.credits:SQLModel.metadata"
/// app_dir = "fastapi"
/// reads = ["public.users"]
/// writes = ["public.user_credits"]
/// ```
///
/// An app that owns a table may change its DDL; the others read it (`SELECT`) or write it (`SELECT`, `INSERT`,
/// `UPDATE`, `DELETE`). A table is `schema.table`, a bare name is in `public`, and `schema.*` is every table
/// of a schema (an exact name wins over it). Paths are relative to the manifest's folder.
public struct OwnershipManifest: Sendable {
    public struct TablePattern: Sendable, Equatable, CustomStringConvertible {
        public var schema: String
        /// `*` for every table of the schema.
        public var table: String

        init?(_ text: String) {
            let parts = text.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
            guard (1...2).contains(parts.count), parts.allSatisfy({ !$0.isEmpty }) else { return nil }
            (schema, table) = parts.count == 2 ? (parts[0], parts[1]) : ("public", parts[0])
            guard schema != "*" else { return nil }
        }

        public func matches(_ name: QualifiedName) -> Bool { schema == name.schema && (table == "*" || table == name.name) }
        var exact: Bool { table != "*" }
        public var description: String { "\(schema).\(table)" }
    }

    public struct App: Sendable {
        public var name: String
        public var drizzle: String?
        public var sqlalchemy: String?
        public var appDirectory: String?
        public var python: String?
        public var owns: [TablePattern]
        public var reads: [TablePattern]
        public var writes: [TablePattern]
        /// The database role `tally db roles --owners` makes for it (default `<name>_app`).
        public var role: String

        /// Whether the app uses `table` at all (owns, reads or writes it).
        public func uses(_ table: QualifiedName) -> Bool { (owns + reads + writes).contains { $0.matches(table) } }
    }

    public var path: String
    /// By name.
    public var apps: [App]

    public func app(_ name: String) throws -> App {
        guard let app = apps.first(where: { $0.name == name }) else {
            throw MigrateError(.invalidDeclaration, "\(path) has no app \(name); it has \(apps.map(\.name).joined(separator: ", "))")
        }
        return app
    }

    /// The app that owns `table`: the one naming it exactly, else the one owning its schema; nil when none does.
    public func owner(of table: QualifiedName) -> App? {
        apps.first { $0.owns.contains { $0.exact && $0.matches(table) } } ?? apps.first { $0.owns.contains { $0.matches(table) } }
    }

    /// The other apps that read or write `table`, with how.
    public func users(of table: QualifiedName) -> [(app: App, writes: Bool)] {
        apps.compactMap { app in
            if app.writes.contains(where: { $0.matches(table) }) { return (app, true) }
            if app.reads.contains(where: { $0.matches(table) }) { return (app, false) }
            return nil
        }
    }

    static let keys: Set<String> = ["drizzle", "sqlalchemy", "app_dir", "python", "owns", "reads", "writes", "role"]

    /// Reads and checks the manifest at `path`: TOML errors with their line, unknown keys, tables that are not
    /// `schema.table`, and a table two apps claim to own are refused with what to change.
    public static func load(path: String) throws -> OwnershipManifest {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw MigrateError(.invalidDeclaration, "cannot read the ownership manifest \(path): \(error.localizedDescription)", underlying: error)
        }
        let document: TOMLTable
        do { document = try TOMLTable(string: text) } catch let error as TOMLParseError {
            throw MigrateError(.invalidDeclaration, "\(path):\(error.source.begin.line):\(error.source.begin.column): \(error.description)", underlying: error)
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent().path
        for key in document.keys where key != "apps" {
            throw MigrateError(.invalidDeclaration, "\(path): unknown top-level key \(key); the manifest has [apps.NAME] tables")
        }
        guard let appsTable = document["apps"]?.table, !appsTable.keys.isEmpty else {
            throw MigrateError(.invalidDeclaration, "\(path) names no app: add [apps.NAME] tables with owns, reads and writes")
        }
        var apps: [App] = []
        for name in appsTable.keys.sorted() {
            guard let table = appsTable[name]?.table else { throw MigrateError(.invalidDeclaration, "\(path): apps.\(name) must be a table") }
            for key in table.keys where !keys.contains(key) {
                throw MigrateError(.invalidDeclaration, "\(path): apps.\(name) has an unknown key \(key); keys are \(keys.sorted().joined(separator: ", "))")
            }
            func string(_ key: String) throws -> String? {
                guard let value = table[key] else { return nil }
                guard let text = value.string else { throw MigrateError(.invalidDeclaration, "\(path): apps.\(name).\(key) must be a string") }
                return text
            }
            func patterns(_ key: String) throws -> [TablePattern] {
                guard let value = table[key] else { return [] }
                guard let array = value.array else {
                    throw MigrateError(.invalidDeclaration, "\(path): apps.\(name).\(key) must be a list of tables, such as [\"public.users\"]")
                }
                return try array.map { item in
                    guard let text = item.string, let pattern = TablePattern(text) else {
                        throw MigrateError(.invalidDeclaration, "\(path): apps.\(name).\(key) has \(item), which is not schema.table, a table in public, or schema.*")
                    }
                    return pattern
                }
            }
            func relative(_ value: String?) -> String? { value.map { $0.hasPrefix("/") ? $0 : base + "/" + $0 } }
            apps.append(App(
                name: name, drizzle: relative(try string("drizzle")), sqlalchemy: try string("sqlalchemy"),
                appDirectory: relative(try string("app_dir")), python: try string("python"), owns: try patterns("owns"),
                reads: try patterns("reads"), writes: try patterns("writes"), role: try string("role") ?? "\(name)_app"))
        }
        // One owner per table or schema pattern.
        for (i, a) in apps.enumerated() {
            for b in apps[(i + 1)...] {
                for pattern in a.owns where b.owns.contains(pattern) {
                    throw MigrateError(.invalidDeclaration, "\(path): \(pattern) is owned by both \(a.name) and \(b.name); a table has one owner (the other may read or write it)")
                }
            }
        }
        return OwnershipManifest(path: path, apps: apps)
    }
}
