import TallyPostgres

/// A schema-qualified name; unquoted names are folded to lower case, as PostgreSQL does.
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

/// Just enough of PostgreSQL's DDL grammar to find what a migration statement does: the tables it creates,
/// the foreign keys it adds, and the operations lint cares about.
enum DDL {
    enum Token: Equatable {
        /// An unquoted word, upper-cased for keyword comparison; `text` keeps it folded to lower case.
        case word(String)
        case quoted(String)
        case symbol(Character)
        case literal

        var keyword: String? {
            if case .word(let w) = self { return w.uppercased() }
            return nil
        }
        /// The identifier this token names, folded as PostgreSQL folds it.
        var identifier: String? {
            switch self {
            case .word(let w): return w.lowercased()
            case .quoted(let q): return q
            default: return nil
            }
        }
    }

    static func tokens(_ sql: String) -> [Token] {
        let chars = Array(sql)
        var out: [Token] = []
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c.isWhitespace { i += 1; continue }
            if c == "-", i + 1 < chars.count, chars[i + 1] == "-" {
                while i < chars.count, chars[i] != "\n" { i += 1 }
                continue
            }
            if c == "/", i + 1 < chars.count, chars[i + 1] == "*" {
                var depth = 0
                while i < chars.count {
                    if chars[i] == "/", i + 1 < chars.count, chars[i + 1] == "*" { depth += 1; i += 2; continue }
                    if chars[i] == "*", i + 1 < chars.count, chars[i + 1] == "/" { depth -= 1; i += 2; if depth == 0 { break }; continue }
                    i += 1
                }
                continue
            }
            if c == "\"" {
                var name = ""
                i += 1
                while i < chars.count {
                    if chars[i] == "\"" {
                        if i + 1 < chars.count, chars[i + 1] == "\"" { name.append("\""); i += 2; continue }
                        i += 1
                        break
                    }
                    name.append(chars[i]); i += 1
                }
                out.append(.quoted(name))
                continue
            }
            if c == "'" {
                i += 1
                while i < chars.count {
                    if chars[i] == "'" {
                        if i + 1 < chars.count, chars[i + 1] == "'" { i += 2; continue }
                        i += 1
                        break
                    }
                    i += 1
                }
                out.append(.literal)
                continue
            }
            if c == "$" {
                // A dollar-quoted body: skip to the closing tag.
                var j = i + 1
                while j < chars.count, chars[j].isLetter || chars[j].isNumber || chars[j] == "_" { j += 1 }
                if j < chars.count, chars[j] == "$" {
                    let tag = String(chars[i...j])
                    var k = j + 1
                    while k < chars.count, !(chars[k] == "$" && String(chars[k..<min(k + tag.count, chars.count)]) == tag) { k += 1 }
                    i = min(k + tag.count, chars.count)
                    out.append(.literal)
                    continue
                }
            }
            if c.isLetter || c == "_" {
                var word = ""
                while i < chars.count, chars[i].isLetter || chars[i].isNumber || chars[i] == "_" || chars[i] == "$" {
                    word.append(chars[i]); i += 1
                }
                out.append(.word(word))
                continue
            }
            if c.isNumber {
                while i < chars.count, chars[i].isNumber || chars[i] == "." { i += 1 }
                out.append(.literal)
                continue
            }
            out.append(.symbol(c))
            i += 1
        }
        return out
    }

    /// Reads `[schema.]name` at `i`, advancing past it.
    static func qualifiedName(_ t: [Token], _ i: inout Int) -> QualifiedName? {
        guard i < t.count, let first = t[i].identifier else { return nil }
        i += 1
        if i + 1 < t.count, t[i] == .symbol("."), let second = t[i + 1].identifier {
            i += 2
            return QualifiedName(schema: first, name: second)
        }
        return QualifiedName(name: first)
    }

    /// Reads `(a, b)` at `i`, advancing past it.
    static func columnList(_ t: [Token], _ i: inout Int) -> [String]? {
        guard i < t.count, t[i] == .symbol("(") else { return nil }
        i += 1
        var columns: [String] = []
        while i < t.count, t[i] != .symbol(")") {
            if let name = t[i].identifier { columns.append(name) }
            i += 1
        }
        i += 1
        return columns
    }

    static func skipKeywords(_ t: [Token], _ i: inout Int, _ words: [String]) {
        while i < t.count, let k = t[i].keyword, words.contains(k) { i += 1 }
    }

    /// `ALTER TABLE [ONLY] [IF EXISTS] t ADD [CONSTRAINT c] FOREIGN KEY (…) REFERENCES r [(…)] …`.
    static func addedForeignKey(in statement: String) -> ForeignKeyDefinition? {
        let t = tokens(statement)
        guard t.count > 4, t[0].keyword == "ALTER", t[1].keyword == "TABLE" else { return nil }
        var i = 2
        skipKeywords(t, &i, ["ONLY", "IF", "EXISTS"])
        guard let table = qualifiedName(t, &i), i < t.count, t[i].keyword == "ADD" else { return nil }
        i += 1
        var name: String?
        if i < t.count, t[i].keyword == "CONSTRAINT" {
            i += 1
            name = i < t.count ? t[i].identifier : nil
            i += 1
        }
        guard i + 1 < t.count, t[i].keyword == "FOREIGN", t[i + 1].keyword == "KEY" else { return nil }
        i += 2
        guard let columns = columnList(t, &i), i < t.count, t[i].keyword == "REFERENCES" else { return nil }
        i += 1
        guard let referenced = qualifiedName(t, &i) else { return nil }
        let referencedColumns = columnList(t, &i) ?? []
        var notValid = false
        while i + 1 < t.count {
            if t[i].keyword == "NOT", t[i + 1].keyword == "VALID" { notValid = true }
            i += 1
        }
        return ForeignKeyDefinition(
            name: name, table: table, columns: columns, referencedTable: referenced,
            referencedColumns: referencedColumns, notValid: notValid)
    }

    /// The table a `CREATE TABLE` statement creates.
    static func createdTable(in statement: String) -> QualifiedName? {
        let t = tokens(statement)
        guard t.count > 2, t[0].keyword == "CREATE" else { return nil }
        var i = 1
        skipKeywords(t, &i, ["GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED"])
        guard i < t.count, t[i].keyword == "TABLE" else { return nil }
        i += 1
        skipKeywords(t, &i, ["IF", "NOT", "EXISTS"])
        return qualifiedName(t, &i)
    }
}
