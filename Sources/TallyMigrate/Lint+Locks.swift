import TallyPostgres

/// The lock each statement takes, and what it keeps waiting.
extension Lint {
    /// `tree`: the statement's whole parse tree (`SQLStatement.tree`, read once by the caller for both passes).
    static func locks(_ statement: SQLStatement, tree: ParseTree, newTables: Set<QualifiedName>, onlineRewrite: Bool) -> [Plan.Lock] {
        switch statement.node {
        case .createStmt, .createTableAs:
            guard let table = statement.createdTable else { return [] }
            return [.init(table: table.description, mode: .accessExclusive, effect: "new table: nothing else uses it yet")]
        case .alterTable(let alter):
            let table = alter.relation.qualifiedName
            let commands = alter.commands
            if let fk = statement.addedForeignKeys.first, commands.count == 1, commands[0].subtype == "AT_AddConstraint" {
                if newTables.contains(fk.table) {
                    return [.init(table: fk.table.description, mode: .shareRowExclusive, effect: "new table: brief"),
                            .init(table: fk.referencedTable.description, mode: .shareRowExclusive, effect: "blocks writes to it briefly")]
                }
                if onlineRewrite || fk.notValid {
                    return [.init(table: fk.table.description, mode: .shareRowExclusive, effect: "NOT VALID: no scan, writes wait only a moment"),
                            .init(table: fk.referencedTable.description, mode: .shareRowExclusive, effect: "a moment"),
                            .init(table: fk.table.description, mode: .shareUpdateExclusive, effect: "VALIDATE CONSTRAINT scans the table; reads and writes go on")]
                }
                return [.init(table: fk.table.description, mode: .shareRowExclusive, effect: "blocks writes while the whole table is scanned"),
                        .init(table: fk.referencedTable.description, mode: .shareRowExclusive, effect: "blocks writes while the scan runs")]
            }
            if !commands.isEmpty, commands.allSatisfy({ $0.subtype == "AT_ValidateConstraint" }) {
                return [.init(table: table.description, mode: .shareUpdateExclusive, effect: "scans; reads and writes go on")]
            }
            let effect = newTables.contains(table) ? "new table: nothing else uses it yet" : "blocks reads and writes until it commits"
            return [.init(table: table.description, mode: .accessExclusive, effect: effect)]
        case .index(let index):
            let table = index.relation.qualifiedName
            if index.concurrent == true {
                return [.init(table: table.description, mode: .shareUpdateExclusive, effect: "builds while reads and writes go on")]
            }
            return [.init(table: table.description, mode: .share, effect: newTables.contains(table) ? "new table: brief" : "blocks writes while the index builds")]
        case .drop(let drop) where drop.removeType == "OBJECT_TABLE":
            let names = tree.fields?["objects"]?.array.map { $0.node("List")?["items"]?.names ?? [] } ?? []
            return names.map { parts in
                let table = parts.count > 1 ? QualifiedName(schema: parts[parts.count - 2], name: parts.last!) : QualifiedName(name: parts.last ?? "")
                return .init(table: table.description, mode: .accessExclusive, effect: "blocks everything until it commits")
            }
        case .drop(let drop) where drop.removeType == "OBJECT_INDEX":
            let concurrent = drop.concurrent == true
            return [.init(table: "(the index's table)", mode: concurrent ? .shareUpdateExclusive : .accessExclusive,
                          effect: concurrent ? "reads and writes go on" : "blocks everything until it commits")]
        case .dml(_, let relation):
            return [.init(table: relation?.qualifiedName.description ?? "(rows it touches)", mode: .rowExclusive, effect: "row locks; long if it touches many rows")]
        default:
            if let rename = tree.node("RenameStmt"), let relation = rename["relation"] {
                let table = qualified(relation)
                let effect = newTables.contains(table) ? "new table: nothing else uses it yet" : "a moment, but it waits behind every open transaction on it, and everything queued after it waits too"
                return [.init(table: table.description, mode: .accessExclusive, effect: effect)]
            }
            if let truncate = tree.node("TruncateStmt") {
                return truncate["relations"]?.array.compactMap { $0.node("RangeVar").map(qualified) }.map {
                    .init(table: $0.description, mode: .accessExclusive, effect: "blocks everything until it commits")
                } ?? []
            }
            return []
        }
    }
}

/// A PostgreSQL table lock mode (https://www.postgresql.org/docs/current/explicit-locking.html),
/// weakest first; the raw value is how PostgreSQL names it.
public enum LockMode: String, Sendable, Codable, CustomStringConvertible {
    case accessShare = "ACCESS SHARE"
    case rowShare = "ROW SHARE"
    case rowExclusive = "ROW EXCLUSIVE"
    case shareUpdateExclusive = "SHARE UPDATE EXCLUSIVE"
    case share = "SHARE"
    case shareRowExclusive = "SHARE ROW EXCLUSIVE"
    case exclusive = "EXCLUSIVE"
    case accessExclusive = "ACCESS EXCLUSIVE"

    public var description: String { rawValue }

    /// Whether writers to the table queue behind it (SHARE and stronger conflict with ROW EXCLUSIVE).
    public var queuesWrites: Bool {
        switch self {
        case .share, .shareRowExclusive, .exclusive, .accessExclusive: true
        case .accessShare, .rowShare, .rowExclusive, .shareUpdateExclusive: false
        }
    }

    /// What it keeps waiting while it is held.
    public var blocks: String {
        switch self {
        case .accessExclusive: "every read and write of it waits"
        case .share, .shareRowExclusive, .exclusive: "every write to it (INSERT, UPDATE, DELETE) waits; reads go on"
        case .accessShare, .rowShare, .rowExclusive, .shareUpdateExclusive: "other schema changes of it wait"
        }
    }
}
