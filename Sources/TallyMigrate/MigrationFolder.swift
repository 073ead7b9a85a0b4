import TallyPostgres
import Foundation

/// One migration, as Drizzle's migrator sees it.
public struct Migration: Sendable {
    /// Position in the folder (the journal's `idx`, or the rank of the file or folder name).
    public var index: Int
    /// The migration's name: the journal's tag (`0002_flashy_nova`), a Drizzle 1.0 folder name
    /// (`20241010220702_keen_devos`), or a plain file's name without `.sql`.
    public var tag: String
    /// `created_at` in the history: the journal's `when`, the 1.0 folder name's UTC time (ms since 1970),
    /// or a plain file name's numeric prefix.
    public var createdAt: Int64
    /// Lowercase hex SHA-256 of the file's text as Drizzle reads it: Drizzle's `hash`.
    public var hash: String
    /// The whole file text.
    public var sql: String
    /// The file, for messages.
    public var file: String
    /// Every statement, in file order, read by PostgreSQL's parser.
    public var statements: [SQLStatement]
    /// The SQL of the down file, when there is one.
    public var downSQL: String?

    /// Statements PostgreSQL refuses inside a transaction block.
    public var requiresNoTransaction: Bool {
        statements.contains { $0.cannotRunInTransaction }
    }

    init(index: Int, tag: String, createdAt: Int64, text: (String, String), file: String, downSQL: String?) throws(MigrateError) {
        self.index = index
        self.tag = tag
        self.createdAt = createdAt
        (sql, hash) = text
        self.file = file
        self.downSQL = downSQL
        // Drizzle runs each part between breakpoints as one query; the parser splits each part further.
        var statements: [SQLStatement] = []
        var line = 1
        for chunk in sql.components(separatedBy: "--> statement-breakpoint") {
            statements += try SQLStatement.parse(chunk, startLine: line, file: file)
            line += lineBreaks(in: chunk)
        }
        self.statements = statements
    }
}

/// A folder of migrations: Drizzle 0.x (`meta/_journal.json` and `TAG.sql`), Drizzle 1.0
/// (`<YYYYMMDDHHMMSS>_<name>/migration.sql`) or plain (`NNNN_name.sql`).
///
/// Reading checks the whole folder before anything touches a database: a journal entry with no file, a
/// duplicate tag or idx, invalid JSON, a journal for another database, or a statement PostgreSQL's
/// parser refuses is an error naming the file (and line). Files Drizzle would not run are ignored, as
/// Drizzle ignores them, with a note in `notes`.
public struct MigrationFolder: Sendable {
    public enum Kind: String, Sendable, Codable {
        /// Drizzle 0.x: `meta/_journal.json`.
        case drizzle
        /// Drizzle 1.0: one folder per migration, named by its UTC time.
        case drizzle1
        /// `NNNN_name.sql` files, ordered by name.
        case plain
    }

    public var path: String
    public var kind: Kind
    public var migrations: [Migration]
    /// What reading noticed and ignored: files the journal does not name, text that is not valid UTF-8.
    public var notes: [String] = []

    public init(path: String) throws(MigrateError) {
        self.path = path
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw MigrateError(.invalidFolder, "\(path) is not a folder; give --dir the folder that holds meta/_journal.json, <timestamp>_<name>/migration.sql folders or NNNN_name.sql files")
        }
        kind = .plain
        migrations = []
        let journalPath = path + "/meta/_journal.json"
        if fm.fileExists(atPath: journalPath) {
            kind = .drizzle
            migrations = try readDrizzle(journalPath: journalPath)
        } else if !Self.drizzle1Folders(in: path).isEmpty {
            kind = .drizzle1
            migrations = try readDrizzle1()
        } else {
            kind = .plain
            migrations = try readPlain()
        }
    }

    public func migration(tag: String) throws(MigrateError) -> Migration {
        guard let found = migrations.first(where: { $0.tag == tag || $0.tag.hasPrefix(tag + "_") && tag.allSatisfy(\.isNumber) }) else {
            let known = migrations.map(\.tag).joined(separator: ", ")
            throw MigrateError(.unknownMigration, "no migration \"\(tag)\" in \(path); known: \(known.isEmpty ? "(none)" : known)")
        }
        return found
    }

    // MARK: - Drizzle 0.x

    struct Journal: Decodable {
        struct Entry: Decodable {
            var idx: Int
            var when: Int64
            var tag: String
            var breakpoints: Bool?
        }
        var dialect: String?
        var entries: [Entry]
    }

    mutating func readDrizzle(journalPath: String) throws(MigrateError) -> [Migration] {
        guard let data = FileManager.default.contents(atPath: journalPath) else {
            throw MigrateError(.invalidFolder, "\(journalPath) cannot be read; check its permissions")
        }
        let journal: Journal
        do {
            journal = try JSONDecoder().decode(Journal.self, from: data)
        } catch {
            throw MigrateError(.invalidFolder, "\(journalPath) is not a valid Drizzle journal: \(describeDecoding(error)). Regenerate it with drizzle-kit or fix the JSON.", underlying: error)
        }
        if let dialect = journal.dialect, !["postgresql", "pg", "postgres"].contains(dialect.lowercased()) {
            throw MigrateError(.invalidFolder, "\(journalPath) is a Drizzle journal for \(dialect), not PostgreSQL; Tally migrates PostgreSQL databases only. Point --dir at the folder drizzle-kit generated with dialect \"postgresql\".")
        }

        var problems: [String] = []
        var seenTags: Set<String> = []
        var seenIdx: Set<Int> = []
        for entry in journal.entries {
            if !seenTags.insert(entry.tag).inserted { problems.append("\(journalPath): tag \"\(entry.tag)\" appears twice") }
            if !seenIdx.insert(entry.idx).inserted { problems.append("\(journalPath): idx \(entry.idx) appears twice") }
            if entry.tag.contains("/") || entry.tag.hasPrefix(".") { problems.append("\(journalPath): tag \"\(entry.tag)\" is not a file name") }
        }
        let files = Self.sqlFiles(in: path)
        for entry in journal.entries where !files.contains(entry.tag + ".sql") {
            problems.append("\(journalPath): entry \(entry.idx) (\(entry.tag)) has no file \(path)/\(entry.tag).sql")
        }
        guard problems.isEmpty else { throw MigrateError(.invalidFolder, problems.joined(separator: "\n")) }
        for file in files.sorted() where !file.hasSuffix(".down.sql") && !seenTags.contains(String(file.dropLast(4))) {
            notes.append("\(path)/\(file) is not in meta/_journal.json, so Drizzle does not run it; Tally ignores it too.")
        }

        var migrations: [Migration] = []
        for entry in journal.entries.sorted(by: { $0.idx < $1.idx }) {
            let file = path + "/" + entry.tag + ".sql"
            migrations.append(try Migration(
                index: entry.idx, tag: entry.tag, createdAt: entry.when, text: try readSQL(file), file: file,
                downSQL: try readDown(path + "/" + entry.tag + ".down.sql")))
        }
        return migrations
    }

    // MARK: - Drizzle 1.0

    /// Sub-folders named `YYYYMMDDHHMMSS_name` holding a `migration.sql`, sorted by name.
    static func drizzle1Folders(in folder: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
        return names.filter { name in
            name.count > 15 && name.prefix(14).allSatisfy(\.isASCII) && name.prefix(14).allSatisfy(\.isNumber)
                && name.dropFirst(14).first == "_" && FileManager.default.fileExists(atPath: "\(folder)/\(name)/migration.sql")
        }.sorted()
    }

    /// `YYYYMMDDHHMMSS` read as a UTC time, in milliseconds since 1970 (Drizzle 1.0's `created_at`).
    static func drizzle1Millis(_ stamp: Substring) -> Int64? {
        let digits = stamp.compactMap { $0.wholeNumberValue }
        guard digits.count == 14 else { return nil }
        func number(_ range: Range<Int>) -> Int { digits[range].reduce(0) { $0 * 10 + $1 } }
        var components = DateComponents()
        components.calendar = Calendar(identifier: .gregorian)
        components.timeZone = TimeZone(identifier: "UTC")
        (components.year, components.month, components.day) = (number(0..<4), number(4..<6), number(6..<8))
        (components.hour, components.minute, components.second) = (number(8..<10), number(10..<12), number(12..<14))
        guard components.isValidDate, let date = components.date else { return nil }
        return Int64(date.timeIntervalSince1970) * 1000
    }

    mutating func readDrizzle1() throws(MigrateError) -> [Migration] {
        var migrations: [Migration] = []
        for (rank, name) in Self.drizzle1Folders(in: path).enumerated() {
            guard let millis = Self.drizzle1Millis(name.prefix(14)) else {
                throw MigrateError(.invalidFolder, "\(path)/\(name): \(name.prefix(14)) is not a valid UTC time (YYYYMMDDHHMMSS); rename the folder as drizzle-kit names it")
            }
            let file = "\(path)/\(name)/migration.sql"
            migrations.append(try Migration(
                index: rank, tag: name, createdAt: millis, text: try readSQL(file), file: file,
                downSQL: try readDown("\(path)/\(name)/down.sql")))
        }
        for file in Self.sqlFiles(in: path).sorted() {
            notes.append("\(path)/\(file) is not in a <timestamp>_<name>/migration.sql folder, so Drizzle does not run it; Tally ignores it too.")
        }
        return migrations
    }

    // MARK: - Plain

    mutating func readPlain() throws(MigrateError) -> [Migration] {
        let files = Self.sqlFiles(in: path).filter { !$0.hasSuffix(".down.sql") }.sorted()
        var migrations: [Migration] = []
        for (rank, name) in files.enumerated() {
            let tag = String(name.dropLast(4))
            let prefix = Int64(tag.prefix(while: \.isNumber)) ?? 0
            let file = path + "/" + name
            migrations.append(try Migration(
                index: rank, tag: tag, createdAt: prefix, text: try readSQL(file), file: file,
                downSQL: try readDown(path + "/" + tag + ".down.sql")))
        }
        return migrations
    }

    // MARK: - Files

    static func sqlFiles(in folder: String) -> Set<String> {
        Set(((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { $0.hasSuffix(".sql") })
    }

    /// The file's text as Drizzle reads it (`readFileSync(…).toString()`: bytes that are not UTF-8 become
    /// U+FFFD) and the SHA-256 of that text, Drizzle's hash. Such a file is noted.
    mutating func readSQL(_ file: String) throws(MigrateError) -> (String, String) {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw MigrateError(.invalidFolder, "\(file) cannot be read; check its permissions")
        }
        let text = String(decoding: data, as: UTF8.self)
        if String(validating: data, as: UTF8.self) == nil {
            notes.append("\(file) is not valid UTF-8 (first bad byte at offset \(Self.firstInvalidUTF8Offset(data))); like Drizzle, Tally reads the bad bytes as U+FFFD and hashes that text. Save the file as UTF-8.")
        }
        return (text, sha256Hex(Data(text.utf8)))
    }

    mutating func readDown(_ file: String) throws(MigrateError) -> String? {
        guard FileManager.default.fileExists(atPath: file) else { return nil }
        return try readSQL(file).0
    }

    static func firstInvalidUTF8Offset(_ data: Data) -> Int {
        var parser = Unicode.UTF8.ForwardParser()
        var iterator = data.makeIterator()
        var offset = 0
        while case .valid(let scalar) = parser.parseScalar(from: &iterator) { offset += scalar.count }
        return offset
    }
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
