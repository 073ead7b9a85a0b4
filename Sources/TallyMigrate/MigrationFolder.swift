import Crypto
import Foundation

/// One migration file, as Drizzle's migrator sees it.
public struct Migration: Sendable, Equatable {
    /// Position in the folder (the journal's `idx`, or the file's rank in a plain folder).
    public var index: Int
    /// The file name without `.sql`, e.g. `0002_flashy_nova`.
    public var tag: String
    /// The journal's `when` (ms since 1970), written to the history as `created_at`.
    /// For a plain folder, the file name's numeric prefix.
    public var createdAt: Int64
    /// Lowercase hex SHA-256 of the file's bytes: Drizzle's `hash`.
    public var hash: String
    /// The whole file text.
    public var sql: String
    /// Drizzle's chunks: the file split on `--> statement-breakpoint`, or the whole file when the journal
    /// says `breakpoints: false`.
    public var chunks: [String]
    /// The SQL of `TAG.down.sql`, when there is one.
    public var downSQL: String?

    /// Every statement, numbered in file order (chunks split further at top-level semicolons).
    public var statements: [SQLStatement] {
        var line = 1
        var out: [SQLStatement] = []
        for chunk in chunks {
            out += SQLStatements.split(chunk, startLine: line)
            line += chunk.reduce(0) { $1 == "\n" ? $0 + 1 : $0 }
        }
        return out
    }

    /// Statements PostgreSQL refuses inside a transaction block.
    public var requiresNoTransaction: Bool {
        statements.contains { Self.cannotRunInTransaction($0.text) }
    }

    static func cannotRunInTransaction(_ statement: String) -> Bool {
        let words = statement.uppercased().split(whereSeparator: { $0.isWhitespace || $0 == "(" }).prefix(6).map(String.init)
        func starts(_ prefix: [String]) -> Bool { words.starts(with: prefix) }
        if (starts(["CREATE", "INDEX"]) || starts(["CREATE", "UNIQUE", "INDEX"]) || starts(["DROP", "INDEX"])
            || starts(["REINDEX"])), words.contains("CONCURRENTLY") { return true }
        return starts(["VACUUM"]) || starts(["CREATE", "DATABASE"]) || starts(["DROP", "DATABASE"])
            || starts(["ALTER", "SYSTEM"]) || starts(["CREATE", "TABLESPACE"]) || starts(["DROP", "TABLESPACE"])
    }
}

/// A folder of migrations: Drizzle's (`meta/_journal.json` and `TAG.sql`) or plain (`NNNN_name.sql`).
///
/// Reading checks the whole folder before anything touches a database: a journal entry with no file, a
/// file with no entry, a duplicate tag or idx, invalid JSON or a file that is not UTF-8 is an error naming
/// the file.
public struct MigrationFolder: Sendable {
    public enum Kind: String, Sendable, Codable { case drizzle, plain }

    public var path: String
    public var kind: Kind
    public var migrations: [Migration]

    public init(path: String) throws(MigrateError) {
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MigrateError(.invalidFolder, "\(path) is not a folder; give --dir the folder that holds meta/_journal.json or NNNN_name.sql files")
        }
        let journalPath = path + "/meta/_journal.json"
        if fm.fileExists(atPath: journalPath) {
            kind = .drizzle
            migrations = try Self.readDrizzle(folder: path, journalPath: journalPath)
        } else {
            kind = .plain
            migrations = try Self.readPlain(folder: path)
        }
    }

    public func migration(tag: String) throws(MigrateError) -> Migration {
        guard let found = migrations.first(where: { $0.tag == tag || $0.tag.hasPrefix(tag + "_") && tag.allSatisfy(\.isNumber) }) else {
            let known = migrations.map(\.tag).joined(separator: ", ")
            throw MigrateError(.unknownMigration, "no migration \"\(tag)\" in \(path); known: \(known.isEmpty ? "(none)" : known)")
        }
        return found
    }

    // MARK: - Drizzle

    struct Journal: Decodable {
        struct Entry: Decodable {
            var idx: Int
            var when: Int64
            var tag: String
            var breakpoints: Bool?
        }
        var entries: [Entry]
    }

    static func readDrizzle(folder: String, journalPath: String) throws(MigrateError) -> [Migration] {
        guard let data = FileManager.default.contents(atPath: journalPath) else {
            throw MigrateError(.invalidFolder, "\(journalPath) cannot be read; check its permissions")
        }
        let journal: Journal
        do {
            journal = try JSONDecoder().decode(Journal.self, from: data)
        } catch {
            throw MigrateError(.invalidFolder, "\(journalPath) is not a valid Drizzle journal: \(describeDecoding(error)). Regenerate it with drizzle-kit or fix the JSON.")
        }

        var problems: [String] = []
        var seenTags: Set<String> = []
        var seenIdx: Set<Int> = []
        for entry in journal.entries {
            if !seenTags.insert(entry.tag).inserted { problems.append("\(journalPath): tag \"\(entry.tag)\" appears twice") }
            if !seenIdx.insert(entry.idx).inserted { problems.append("\(journalPath): idx \(entry.idx) appears twice") }
            if entry.tag.contains("/") || entry.tag.hasPrefix(".") { problems.append("\(journalPath): tag \"\(entry.tag)\" is not a file name") }
        }
        let files = sqlFiles(in: folder)
        for entry in journal.entries where !files.contains(entry.tag + ".sql") {
            problems.append("\(journalPath): entry \(entry.idx) (\(entry.tag)) has no file \(folder)/\(entry.tag).sql")
        }
        for file in files.sorted() where !file.hasSuffix(".down.sql") && !seenTags.contains(String(file.dropLast(4))) {
            problems.append("\(folder)/\(file) has no entry in meta/_journal.json; add it (drizzle-kit generate does) or move the file out of the folder")
        }
        guard problems.isEmpty else { throw MigrateError(.invalidFolder, problems.joined(separator: "\n")) }

        var migrations: [Migration] = []
        for entry in journal.entries.sorted(by: { $0.idx < $1.idx }) {
            let (sql, hash) = try readSQL(folder + "/" + entry.tag + ".sql")
            let chunks = entry.breakpoints == false ? [sql] : sql.components(separatedBy: "--> statement-breakpoint")
            migrations.append(Migration(
                index: entry.idx, tag: entry.tag, createdAt: entry.when, hash: hash, sql: sql, chunks: chunks,
                downSQL: try readDown(folder: folder, tag: entry.tag)))
        }
        return migrations
    }

    // MARK: - Plain

    static func readPlain(folder: String) throws(MigrateError) -> [Migration] {
        let files = sqlFiles(in: folder).filter { !$0.hasSuffix(".down.sql") }.sorted()
        var migrations: [Migration] = []
        for (rank, file) in files.enumerated() {
            let tag = String(file.dropLast(4))
            let (sql, hash) = try readSQL(folder + "/" + file)
            let prefix = Int64(tag.prefix(while: \.isNumber)) ?? 0
            migrations.append(Migration(
                index: rank, tag: tag, createdAt: prefix, hash: hash, sql: sql,
                chunks: sql.components(separatedBy: "--> statement-breakpoint"),
                downSQL: try readDown(folder: folder, tag: tag)))
        }
        return migrations
    }

    // MARK: - Files

    static func sqlFiles(in folder: String) -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".sql") })
    }

    static func readSQL(_ path: String) throws(MigrateError) -> (String, String) {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw MigrateError(.invalidFolder, "\(path) cannot be read; check its permissions")
        }
        guard let text = String(validating: data, as: UTF8.self) else {
            let offset = firstInvalidUTF8Offset(data)
            throw MigrateError(.invalidFolder, "\(path) is not valid UTF-8 (first bad byte at offset \(offset)); save it as UTF-8")
        }
        return (text, sha256Hex(data))
    }

    static func readDown(folder: String, tag: String) throws(MigrateError) -> String? {
        let path = folder + "/" + tag + ".down.sql"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return try readSQL(path).0
    }

    static func firstInvalidUTF8Offset(_ data: Data) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = data.makeIterator()
        var offset = 0
        while case .valid(let scalar) = parser.parseScalar(from: &iterator) { offset += scalar.count }
        return offset
    }
}

/// Lowercase hex SHA-256, as Drizzle's `crypto.createHash('sha256').update(text).digest('hex')`.
public func sha256Hex(_ data: Data) -> String {
    SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
}

func describeDecoding(_ error: any Error) -> String {
    switch error {
    case DecodingError.dataCorrupted(let context): return context.debugDescription + (context.underlyingError.map { " (\($0))" } ?? "")
    case DecodingError.keyNotFound(let key, let context):
        return "missing \"\(key.stringValue)\" at \(context.codingPath.map(\.stringValue).joined(separator: "."))"
    case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context):
        return "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)"
    default: return "\(error)"
    }
}
