import TallyPostgres

/// A schema-qualified name (`public` when the SQL did not qualify it).
public struct QualifiedName: Hashable, Sendable, Codable, CustomStringConvertible {
    public var schema: String
    public var name: String

    public init(schema: String = "public", name: String) {
        self.schema = schema
        self.name = name
    }

    public var description: String { "\(schema).\(name)" }
    /// Quoted for SQL.
    public var sql: String { quoteIdentifier(schema) + "." + quoteIdentifier(name) }
}

/// A foreign key that a statement adds.
public struct ForeignKeyDefinition: Sendable, Codable, Equatable {
    public var name: String?
    public var table: QualifiedName
    public var columns: [String]
    public var referencedTable: QualifiedName
    public var referencedColumns: [String]
    /// Already written with NOT VALID.
    public var notValid: Bool
}

/// One SQL statement of a migration, as PostgreSQL's parser delimits and reads it.
public struct SQLStatement: Sendable {
    /// The statement's text as written (leading comments included, no trailing `;`).
    public var text: String
    /// The line (1-based) of the file where the statement's SQL starts.
    public var line: Int
    /// The parse tree's statement node.
    var node: ParseNode
    /// The statement's whole parse tree (parsed again from `text`: only lint reads it).
    var tree: ParseTree { SQLParser.tree(text) }
    /// For a `DO` block in PL/pgSQL: the SQL statements its code runs, each read by the parser.
    var inner: [SQLStatement] = []
    /// For a `DO` block: `EXECUTE` statements whose SQL is built at run time (not visible to Tally).
    var dynamicSQL = 0
    /// For a `DO` block: its code, when it is `BEGIN <one statement>; [EXCEPTION …] END`.
    var singleStatementBody: String?

    /// Splits `chunk` (a part of a file between breakpoints, starting at `startLine`) into statements and
    /// parses each. A statement the parser refuses is an error naming the line and the parser's message.
    static func parse(_ chunk: String, startLine: Int, file: String) throws(MigrateError) -> [SQLStatement] {
        let pieces: [SQLParser.Piece]
        do {
            pieces = try SQLParser.split(chunk)
        } catch {
            let line = startLine + lineNumber(ofCharacter: error.characterOffset, in: chunk) - 1
            throw MigrateError(.invalidFolder, "\(file):\(line): \(error.message). PostgreSQL would refuse this statement; fix the file (nothing was run).", underlying: error)
        }
        var out: [SQLStatement] = []
        let bytes = Array(chunk.utf8)
        for piece in pieces {
            let before = String(decoding: bytes[0..<piece.utf8Offset], as: UTF8.self)
            let pieceLine = startLine + lineBreaks(in: before)
            let line = pieceLine + leadingLines(piece.text)
            let leading = piece.text.prefix(while: \.isWhitespace)
            let textLine = pieceLine + lineBreaks(in: leading)
            let text = piece.text.trimmingCharacters(in: .whitespacesAndNewlines)
            let nodes: [ParseNode]
            do {
                nodes = try SQLParser.parse(text)
            } catch {
                let at = textLine + lineNumber(ofCharacter: error.characterOffset, in: text) - 1
                throw MigrateError(.invalidFolder, "\(file):\(at): \(error.message). PostgreSQL would refuse this statement; fix the file (nothing was run).", underlying: error)
            }
            guard let node = nodes.first else { continue }
            var statement = SQLStatement(text: text, line: line, node: node)
            if case .doBlock(let block) = node, let body = block.body, body.language == "plpgsql" {
                statement.readBody(body.code, file: file)
            }
            out.append(statement)
        }
        return out
    }

    /// Reads a `DO` block's code: the statements it runs, for lint, locks and the online rewrite.
    private mutating func readBody(_ code: String, file: String) {
        guard let body = try? SQLParser.plpgsql(body: code) else { return }
        dynamicSQL = body.dynamic
        for (sql, bodyLine) in body.statements {
            guard let node = try? SQLParser.parse(sql).first else { continue }
            inner.append(SQLStatement(text: sql, line: line + bodyLine - 1, node: node))
        }
        if body.singleStatementBlock, inner.count == 1 { singleStatementBody = code }
    }

    /// Lint rules its leading comments silence: `-- tally:ignore rule[, rule…]`, or squawk's
    /// `-- squawk-ignore rule[, rule…]`, on a comment line before the statement's SQL.
    public var ignoredRules: Set<String> {
        var rules: Set<String> = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("--") else {
                if trimmed.isEmpty { continue }
                break  // the SQL starts
            }
            let comment = trimmed.dropFirst(2).trimmingCharacters(in: .whitespaces)
            for marker in ["tally:ignore", "squawk-ignore"] where comment.hasPrefix(marker + " ") {
                let names = comment.dropFirst(marker.count).split(whereSeparator: { $0 == "," || $0 == " " })
                rules.formUnion(names.map(String.init))
            }
        }
        return rules
    }

    /// Lines of whitespace and comments before the SQL starts.
    private static func leadingLines(_ text: String) -> Int {
        var lines = 0
        var rest = Substring(text)
        while true {
            let skipped = rest.prefix(while: \.isWhitespace)
            lines += lineBreaks(in: skipped)
            rest = rest.dropFirst(skipped.count)
            if rest.hasPrefix("--") {
                rest = rest.drop(while: { $0 != "\n" && $0 != "\r\n" })
            } else if rest.hasPrefix("/*"), let end = rest.range(of: "*/") {
                lines += lineBreaks(in: rest[..<end.upperBound])
                rest = rest[end.upperBound...]
            } else {
                return lines
            }
        }
    }

    // MARK: - What the statement does

    /// This statement and, for a `DO` block, the statements its code runs.
    var flattened: [SQLStatement] { [self] + inner }

    /// The table a `CREATE TABLE` (or `CREATE TABLE AS`) creates.
    var createdTable: QualifiedName? {
        switch node {
        case .createStmt(let s): s.relation.qualifiedName
        case .createTableAs(let s) where s.objtype == nil || s.objtype == "OBJECT_TABLE": s.into.rel.qualifiedName
        default: nil
        }
    }

    /// Every foreign key an `ALTER TABLE` adds (as a table constraint or on an added column), in order.
    var addedForeignKeys: [ForeignKeyDefinition] {
        guard case .alterTable(let alter) = node, alter.objtype == nil || alter.objtype == "OBJECT_TABLE" else { return [] }
        var keys: [ForeignKeyDefinition] = []
        for command in alter.commands {
            switch command.def {
            case .constraint(let c)? where command.subtype == "AT_AddConstraint" && c.contype == "CONSTR_FOREIGN":
                if let fk = Self.foreignKey(c, table: alter.relation.qualifiedName, columns: nil) { keys.append(fk) }
            case .columnDef(let column)? where command.subtype == "AT_AddColumn":
                for c in column.constraintList where c.contype == "CONSTR_FOREIGN" {
                    if let fk = Self.foreignKey(c, table: alter.relation.qualifiedName, columns: column.colname.map { [$0] }) { keys.append(fk) }
                }
            default: break
            }
        }
        return keys
    }

    private static func foreignKey(_ c: ParseNode.Constraint, table: QualifiedName, columns: [String]?) -> ForeignKeyDefinition? {
        guard let referenced = c.pktable else { return nil }
        return ForeignKeyDefinition(
            name: c.conname, table: table, columns: columns ?? (c.fk_attrs ?? []).compactMap(\.stringValue),
            referencedTable: referenced.qualifiedName, referencedColumns: (c.pk_attrs ?? []).compactMap(\.stringValue),
            notValid: c.skip_validation ?? false)
    }

    /// PostgreSQL refuses these inside a transaction block.
    var cannotRunInTransaction: Bool {
        switch node {
        case .index(let s): s.concurrent == true
        case .drop(let s): s.concurrent == true
        case .reindex(let s): s.concurrently
        case .other(let type):
            ["VacuumStmt", "CreatedbStmt", "DropdbStmt", "AlterSystemStmt", "CreateTableSpaceStmt", "DropTableSpaceStmt"].contains(type)
        default: false
        }
    }

    /// A statement that adds one named foreign key and nothing else, and the same statement with `NOT VALID`.
    struct OnlineForeignKey: Sendable {
        var key: ForeignKeyDefinition
        /// The table and the referenced table as the statement names them (for `to_regclass`).
        var relation: String
        var referenced: String
        var rewritten: String
    }

    /// The statement adds one named foreign key and nothing else, without NOT VALID: directly
    /// (`ALTER TABLE t ADD CONSTRAINT c FOREIGN KEY …`) or as the one statement of a `DO` block (what
    /// drizzle-kit writes, with its `EXCEPTION WHEN duplicate_object`). Run with `NOT VALID` and validated
    /// after, it has the same outcome; nil for anything Tally cannot prove that of.
    var onlineForeignKey: OnlineForeignKey? {
        if let body = singleStatementBody, let only = inner.first, var online = only.onlineForeignKey {
            var tag = "tally"
            while body.contains("$\(tag)$") { tag += "_" }
            guard let range = body.range(of: only.text) else { return nil }
            var code = body
            code.replaceSubrange(range, with: online.rewritten)
            online.rewritten = "DO $\(tag)$\(code)$\(tag)$"
            return online
        }
        guard case .alterTable(let alter) = node, alter.commands.count == 1, let fk = addedForeignKeys.first,
            alter.commands[0].subtype == "AT_AddConstraint", fk.name != nil, !fk.notValid,
            case .constraint(let constraint)? = alter.commands[0].def, let referenced = constraint.pktable
        else { return nil }
        return OnlineForeignKey(key: fk, relation: alter.relation.asWritten, referenced: referenced.asWritten, rewritten: text + "\nNOT VALID")
    }
}
