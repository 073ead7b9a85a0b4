import Foundation

/// How a migration folder and a history table line up: what `tally migrate status` shows.
public struct MigrationReport: Sendable, Codable {
    public enum State: String, Sendable, Codable {
        /// Run by a migrator; the row's hash matches the file.
        case applied
        /// Marked applied by `baseline` without running; the hash matches.
        case baseline
        /// Not in the history.
        case pending
        /// In the history (matched by name or created_at), but the file's hash differs: the file was edited
        /// after it ran, or the row was typed by hand.
        case changed
    }

    public struct Entry: Sendable, Codable {
        public var tag: String
        public var index: Int
        public var createdAt: Int64
        public var hash: String
        public var state: State
        public var appliedAt: Date?
        /// The history row's id and hash, for applied, baseline and changed entries.
        public var rowID: Int?
        public var rowHash: String?
        /// A pending migration dated at or before the newest history row: Drizzle's migrator would skip it.
        public var olderThanNewestApplied: Bool
        public var hasDownFile: Bool
    }

    public struct OtherHistoryTable: Sendable, Codable {
        public var table: String
        public var rows: Int
    }

    public var folder: String
    public var historyTable: String
    public var entries: [Entry]
    /// History rows no file matches (e.g. hand-typed hashes).
    public var unknownRows: [HistoryTable.Row]
    /// `__drizzle_migrations` tables in other schemas.
    public var otherHistoryTables: [OtherHistoryTable]
    /// Migrations whose last run failed, with where and why.
    public var failures: [MigrationFailure]
    /// What reading the folder noticed and ignored (files Drizzle does not run, text that is not UTF-8).
    public var notes: [String] = []
    /// Foreign keys an applied migration added NOT VALID that are still to be validated (`up` finishes them).
    public var unvalidated: [String] = []
    /// Indexes left INVALID, as an interrupted `CREATE INDEX CONCURRENTLY` leaves them.
    public var invalidIndexes: [String] = []

    public var pending: [Entry] { entries.filter { $0.state == .pending } }
    public var changed: [Entry] { entries.filter { $0.state == .changed } }
    /// Nothing changed and no unknown rows: safe to apply.
    public var isConsistent: Bool { changed.isEmpty && unknownRows.isEmpty }

    /// What `tally migrate validate` (CI) accepts: a consistent history and no work an interrupted run left (a
    /// key still NOT VALID, an INVALID index); with `strict`, also no pending migration older than the newest
    /// applied one and no failure recorded from the last run.
    public func isValid(strict: Bool) -> Bool {
        let unfinished = !unvalidated.isEmpty || !invalidIndexes.isEmpty
        let outOfOrder = pending.contains(where: \.olderThanNewestApplied)
        return isConsistent && !unfinished && (!strict || (!outOfOrder && failures.isEmpty))
    }

    /// Lines out `folder` against `rows`: by hash first, then by name, then by created_at.
    public init(folder: MigrationFolder, historyTable: HistoryTable, rows: [HistoryTable.Row],
                others: [OtherHistoryTable] = [], failures: [MigrationFailure] = []) {
        self.folder = folder.path
        self.historyTable = historyTable.description
        self.otherHistoryTables = others
        self.failures = failures.filter { failure in
            folder.migrations.contains { $0.tag == failure.tag && $0.hash == failure.hash }
        }
        var unused = rows
        func take(_ predicate: (HistoryTable.Row) -> Bool) -> HistoryTable.Row? {
            guard let i = unused.firstIndex(where: predicate) else { return nil }
            return unused.remove(at: i)
        }
        let newest = rows.compactMap(\.createdAt).max()
        var entries: [Entry] = []
        // Exact matches first, so an edited file cannot steal another migration's row.
        var exact: [String: HistoryTable.Row] = [:]
        for m in folder.migrations {
            if let row = take({ $0.hash == m.hash && ($0.name == nil || $0.name == m.tag) }) { exact[m.tag] = row }
        }
        for m in folder.migrations {
            var entry = Entry(
                tag: m.tag, index: m.index, createdAt: m.createdAt, hash: m.hash, state: .pending,
                olderThanNewestApplied: false, hasDownFile: m.downSQL != nil)
            if let row = exact[m.tag] {
                entry.state = row.baseline ? .baseline : .applied
                entry.appliedAt = row.appliedAt
                entry.rowID = row.id
                entry.rowHash = row.hash
            } else if let row = take({ $0.name == m.tag }) ?? take({ $0.name == nil && $0.createdAt == m.createdAt }) {
                entry.state = .changed
                entry.appliedAt = row.appliedAt
                entry.rowID = row.id
                entry.rowHash = row.hash
            } else if let newest, m.createdAt <= newest {
                entry.olderThanNewestApplied = true
            }
            entries.append(entry)
        }
        self.entries = entries
        self.unknownRows = unused
    }
}
