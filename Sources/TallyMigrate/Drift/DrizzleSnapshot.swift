import Foundation
import TallyPostgres

/// What an app declares about its tables, as SQL that creates exactly that in an empty database, and which
/// tables and enums it covers.
public struct Declaration: Sendable {
    /// Where it was read from, for messages: `drizzle: web/drizzle/meta/0007_snapshot.json`.
    public var source: String
    /// The short name findings start with: `drizzle`, `sqlmodel`.
    public var label: String
    /// Schemas, enums, tables with their columns and keys, then foreign keys, then indexes.
    public var statements: [String]
    /// `schema.table` of every table declared.
    public var tables: [String]
    /// `schema.name` of every enum declared.
    public var enums: [String]
    /// Whether enum labels come in their declared order (a version 5 snapshot keeps them as object keys,
    /// whose order JSON does not promise: then only the set of labels is compared).
    public var enumOrderKnown = true
    /// A foreign key declared apart from `statements` (an ORM model's, whose target table the model may not
    /// map): created after them, against a stand-in for a target the declaration lacks.
    public struct ForeignKey: Sendable {
        public var table: String
        public var name: String?
        public var columns: [String]
        public var targetTable: String
        public var targetColumns: [String]
        public var onDelete: String?
        public var onUpdate: String?
    }
    public var foreignKeys: [ForeignKey] = []
    /// Index statements run after the foreign keys.
    public var indexStatements: [String] = []
    /// The models' relationships, to find those no foreign key enforces.
    public var relations: [SQLAlchemyMetadata.Relation] = []
    /// Whether the app declares whole tables (Drizzle owns its schema) or maps only the columns it uses
    /// (an ORM model), in which case columns it leaves out count only when its inserts would fail.
    public var coversWholeTables: Bool
}

/// Drizzle's snapshot of an app's schema (what `drizzle-kit generate` last wrote): the newest of a migrations
/// folder, in every shape drizzle-kit writes — `meta/NNNN_snapshot.json` of versions 5, 6 and 7 (tables and
/// enums keyed by name or `schema.name`; index columns as names or objects), and the 1.0 layout's
/// `<timestamp>_<name>/snapshot.json` (version 8: one flat `ddl` list of entities tagged `entityType`).
public enum DrizzleSnapshot {
    /// The newest snapshot of `folder`, read.
    public static func newest(in folder: String) throws -> Declaration {
        let path = try newestPath(in: folder)
        return try read(path: path)
    }

    static func newestPath(in folder: String) throws -> String {
        let files = FileManager.default
        let meta = folder + "/meta"
        let metaFiles = ((try? files.contentsOfDirectory(atPath: meta)) ?? []).filter { $0.hasSuffix("_snapshot.json") }.sorted()
        if let last = metaFiles.last { return meta + "/" + last }
        let subfolders = ((try? files.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { files.fileExists(atPath: folder + "/" + $0 + "/snapshot.json") }.sorted()
        if let last = subfolders.last { return folder + "/" + last + "/snapshot.json" }
        throw MigrateError(
            .invalidDeclaration,
            "\(folder) has no Drizzle snapshot (meta/NNNN_snapshot.json or <timestamp>_<name>/snapshot.json): run `drizzle-kit generate` in the app, or name its migrations folder")
    }

    /// Reads one snapshot file.
    public static func read(path: String) throws -> Declaration {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw MigrateError(.invalidDeclaration, "cannot read \(path): \(error.localizedDescription)", underlying: error)
        }
        let object: [String: Any]
        do {
            guard let parsed = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw MigrateError(.invalidDeclaration, "\(path) is not a Drizzle snapshot: its JSON is not an object")
            }
            object = parsed
        } catch let error as MigrateError {
            throw error
        } catch {
            throw MigrateError(.invalidDeclaration, "\(path) is not valid JSON: \((error as NSError).userInfo[NSDebugDescriptionErrorKey] ?? error.localizedDescription)", underlying: error)
        }
        let version = Int("\(object["version"] ?? "")") ?? 0
        let dialect = "\(object["dialect"] ?? "")"
        guard ["pg", "postgresql", "postgres"].contains(dialect) else {
            throw MigrateError(.invalidDeclaration, "\(path) is a \(dialect.isEmpty ? "snapshot without a dialect" : dialect + " snapshot"); drift compares PostgreSQL ones")
        }
        var model: Model
        switch version {
        case 5, 6, 7: model = try Model(legacy: object, path: path)
        case 8: model = try Model(entities: object, path: path)
        default:
            throw MigrateError(.invalidDeclaration, "\(path) is a version \(version) snapshot; Tally reads versions 5 to 8 (drizzle-kit 0.17 onwards)")
        }
        model.resolveEnumTypes()
        var declaration = Declaration(
            source: "drizzle: \(path)", label: "drizzle", statements: model.statements(), tables: model.tables.map(\.key),
            enums: model.enums.map(\.key), coversWholeTables: true)
        declaration.enumOrderKnown = version > 5
        return declaration
    }

    // MARK: - The model both shapes are read into

    struct Column {
        var name: String
        var type: String
        var typeSchema: String?
        var notNull = false
        var primaryKey = false
        var defaultSQL: String?
        var identity: String?
        var generated: String?
        var unique: (name: String, nullsNotDistinct: Bool)?
    }

    struct IndexColumn {
        var value: String
        var isExpression: Bool
        var descending = false
        var nullsFirst: Bool?
        var opclass: String?
    }

    struct Index {
        var name: String
        var unique: Bool
        var method: String
        var columns: [IndexColumn]
        var whereSQL: String?
        var with: [(String, String)]
    }

    struct ForeignKey {
        var name: String
        var columns: [String]
        var schemaTo: String
        var tableTo: String
        var columnsTo: [String]
        var onDelete: String?
        var onUpdate: String?
    }

    struct Table {
        var schema: String
        var name: String
        var columns: [Column] = []
        var primaryKey: (name: String?, columns: [String])?
        var uniques: [(name: String, columns: [String], nullsNotDistinct: Bool)] = []
        var checks: [(name: String, value: String)] = []
        var foreignKeys: [ForeignKey] = []
        var indexes: [Index] = []
    }

    struct Model {
        var schemas: Set<String> = []
        var enums: [(key: String, schema: String, name: String, values: [String])] = []
        var tables: [(key: String, table: Table)] = []

        /// Versions 5–7: `tables` and `enums` objects.
        init(legacy object: [String: Any], path: String) throws {
            for (key, value) in (object["schemas"] as? [String: Any]) ?? [:] { schemas.insert((value as? String) ?? key) }
            for (_, value) in (object["enums"] as? [String: Any]) ?? [:] {
                guard let e = value as? [String: Any], let name = e["name"] as? String else { continue }
                let schema = nonEmpty(e["schema"]) ?? "public"
                let values: [String] = (e["values"] as? [String]) ?? ((e["values"] as? [String: Any]).map { $0.keys.sorted() } ?? [])
                enums.append(("\(schema).\(name)", schema, name, values))
            }
            for (key, value) in (object["tables"] as? [String: Any]) ?? [:] {
                guard let t = value as? [String: Any] else { throw MigrateError(.invalidDeclaration, "\(path): table \(key) is not an object") }
                let name = (t["name"] as? String) ?? key
                var table = Table(schema: nonEmpty(t["schema"]) ?? "public", name: name)
                for (columnKey, columnValue) in (t["columns"] as? [String: Any]) ?? [:] {
                    guard let c = columnValue as? [String: Any], let type = c["type"] as? String else {
                        throw MigrateError(.invalidDeclaration, "\(path): column \(name).\(columnKey) has no type")
                    }
                    var column = Column(name: (c["name"] as? String) ?? columnKey, type: type, typeSchema: nonEmpty(c["typeSchema"]))
                    column.notNull = (c["notNull"] as? Bool) ?? false
                    column.primaryKey = (c["primaryKey"] as? Bool) ?? false
                    column.defaultSQL = c["default"].flatMap(Self.literal)
                    if let identity = c["identity"] as? [String: Any] {
                        column.identity = (identity["type"] as? String) == "always" ? "ALWAYS" : "BY DEFAULT"
                    }
                    if let generated = c["generated"] as? [String: Any], let expression = generated["as"] as? String {
                        column.generated = expression
                    }
                    if (c["isUnique"] as? Bool) == true {
                        column.unique = ((c["uniqueName"] as? String) ?? "\(name)_\(column.name)_unique", (c["nullsNotDistinct"] as? Bool) ?? false)
                    }
                    table.columns.append(column)
                }
                // JSON objects keep no order: columns are created by name (drift compares them by name).
                table.columns.sort { $0.name < $1.name }
                for (pkKey, pkValue) in (t["compositePrimaryKeys"] as? [String: Any]) ?? [:] {
                    let (name, columns) = Self.namedColumns(pkValue, key: pkKey)
                    table.primaryKey = (name, columns)
                }
                for (uniqueKey, uniqueValue) in (t["uniqueConstraints"] as? [String: Any]) ?? [:] {
                    let (name, columns) = Self.namedColumns(uniqueValue, key: uniqueKey)
                    table.uniques.append((name ?? uniqueKey, columns, ((uniqueValue as? [String: Any])?["nullsNotDistinct"] as? Bool) ?? false))
                }
                for (checkKey, checkValue) in (t["checkConstraints"] as? [String: Any]) ?? [:] {
                    guard let c = checkValue as? [String: Any], let value = c["value"] as? String else { continue }
                    table.checks.append(((c["name"] as? String) ?? checkKey, value))
                }
                for (fkKey, fkValue) in (t["foreignKeys"] as? [String: Any]) ?? [:] {
                    guard let f = fkValue as? [String: Any], let tableTo = f["tableTo"] as? String else {
                        throw MigrateError(.invalidDeclaration, "\(path): foreign key \(fkKey) of \(name) names no tableTo")
                    }
                    table.foreignKeys.append(ForeignKey(
                        name: (f["name"] as? String) ?? fkKey, columns: (f["columnsFrom"] as? [String]) ?? [],
                        schemaTo: nonEmpty(f["schemaTo"]) ?? "public", tableTo: tableTo, columnsTo: (f["columnsTo"] as? [String]) ?? [],
                        onDelete: f["onDelete"] as? String, onUpdate: f["onUpdate"] as? String))
                }
                for (indexKey, indexValue) in (t["indexes"] as? [String: Any]) ?? [:] {
                    guard let i = indexValue as? [String: Any] else { continue }
                    var columns: [IndexColumn] = []
                    for entry in (i["columns"] as? [Any]) ?? [] {
                        if let name = entry as? String {
                            columns.append(IndexColumn(value: name, isExpression: false))
                        } else if let c = entry as? [String: Any], let expression = c["expression"] as? String {
                            columns.append(IndexColumn(
                                value: expression, isExpression: (c["isExpression"] as? Bool) ?? false, descending: (c["asc"] as? Bool) == false,
                                nullsFirst: (c["nulls"] as? String).map { $0 == "first" }, opclass: nonEmpty(c["opclass"])))
                        }
                    }
                    let with = ((i["with"] as? [String: Any]) ?? [:]).map { ($0.key, "\($0.value)") }.sorted { $0.0 < $1.0 }
                    table.indexes.append(Index(
                        name: (i["name"] as? String) ?? indexKey, unique: (i["isUnique"] as? Bool) ?? false,
                        method: nonEmpty(i["method"]) ?? nonEmpty(i["using"]) ?? "btree", columns: columns, whereSQL: nonEmpty(i["where"]), with: with))
                }
                tables.append(("\(table.schema).\(table.name)", table))
            }
            tables.sort { $0.key < $1.key }
            enums.sort { $0.key < $1.key }
        }

        /// Version 8: a flat `ddl` list of entities.
        init(entities object: [String: Any], path: String) throws {
            guard let ddl = object["ddl"] as? [[String: Any]] else {
                throw MigrateError(.invalidDeclaration, "\(path): a version 8 snapshot needs a `ddl` list")
            }
            var byKey: [String: Table] = [:]
            var order: [String] = []
            func key(_ e: [String: Any]) -> String { "\(nonEmpty(e["schema"]) ?? "public").\(e["table"] as? String ?? "")" }
            for e in ddl where e["entityType"] as? String == "tables" {
                guard let name = e["name"] as? String else { continue }
                let schema = nonEmpty(e["schema"]) ?? "public"
                byKey["\(schema).\(name)"] = Table(schema: schema, name: name)
                order.append("\(schema).\(name)")
            }
            for e in ddl {
                let kind = e["entityType"] as? String ?? ""
                let name = e["name"] as? String ?? ""
                switch kind {
                case "schemas": schemas.insert(name)
                case "enums":
                    let schema = nonEmpty(e["schema"]) ?? "public"
                    enums.append(("\(schema).\(name)", schema, name, (e["values"] as? [String]) ?? []))
                case "columns":
                    guard byKey[key(e)] != nil, var type = e["type"] as? String else {
                        throw MigrateError(.invalidDeclaration, "\(path): column \(name) of \(key(e)) names no table declared or no type")
                    }
                    type += String(repeating: "[]", count: (e["dimensions"] as? Int) ?? 0)
                    var column = Column(name: name, type: type, typeSchema: nonEmpty(e["typeSchema"]))
                    column.notNull = (e["notNull"] as? Bool) ?? false
                    if let value = e["default"] {
                        if let typed = value as? [String: Any] {
                            let text = "\(typed["value"] ?? "")"
                            switch typed["type"] as? String {
                            case "string": column.defaultSQL = "'\(text.replacingOccurrences(of: "'", with: "''"))'"
                            case "array", "bigint", "json", "jsonb": column.defaultSQL = "'\(text)'"
                            default: column.defaultSQL = text
                            }
                        } else {
                            column.defaultSQL = Self.literal(value)
                        }
                    }
                    if let identity = e["identity"] as? [String: Any] {
                        column.identity = (identity["type"] as? String) == "always" ? "ALWAYS" : "BY DEFAULT"
                    }
                    if let generated = e["generated"] as? [String: Any], let expression = generated["as"] as? String { column.generated = expression }
                    byKey[key(e)]?.columns.append(column)
                case "pks":
                    byKey[key(e)]?.primaryKey = ((e["nameExplicit"] as? Bool) == true ? name : nil, (e["columns"] as? [String]) ?? [])
                case "uniques":
                    byKey[key(e)]?.uniques.append((name, (e["columns"] as? [String]) ?? [], (e["nullsNotDistinct"] as? Bool) ?? false))
                case "checks":
                    byKey[key(e)]?.checks.append((name, (e["value"] as? String) ?? "true"))
                case "fks":
                    byKey[key(e)]?.foreignKeys.append(ForeignKey(
                        name: name, columns: (e["columns"] as? [String]) ?? [], schemaTo: nonEmpty(e["schemaTo"]) ?? "public",
                        tableTo: (e["tableTo"] as? String) ?? "", columnsTo: (e["columnsTo"] as? [String]) ?? [],
                        onDelete: e["onDelete"] as? String, onUpdate: e["onUpdate"] as? String))
                case "indexes":
                    let columns = ((e["columns"] as? [[String: Any]]) ?? []).map { c in
                        IndexColumn(
                            value: (c["value"] as? String) ?? "", isExpression: (c["isExpression"] as? Bool) ?? false,
                            descending: (c["asc"] as? Bool) == false, nullsFirst: c["nullsFirst"] as? Bool,
                            opclass: ((c["opclass"] as? [String: Any]).flatMap { ($0["default"] as? Bool) == true ? nil : $0["name"] as? String }))
                    }
                    var with: [(String, String)] = []
                    if let text = nonEmpty(e["with"]) { with = [("", text)] }
                    byKey[key(e)]?.indexes.append(Index(
                        name: name, unique: (e["isUnique"] as? Bool) ?? false, method: nonEmpty(e["method"]) ?? "btree",
                        columns: columns, whereSQL: nonEmpty(e["where"]), with: with))
                default: break
                }
            }
            tables = order.sorted().compactMap { key in byKey[key].map { (key, $0) } }
            enums.sort { $0.key < $1.key }
        }

        /// A column whose type names a declared enum without saying its schema (versions 5 and 6) gets it.
        mutating func resolveEnumTypes() {
            for index in tables.indices {
                for c in tables[index].table.columns.indices where tables[index].table.columns[c].typeSchema == nil {
                    let bare = tables[index].table.columns[c].type.replacingOccurrences(of: "[]", with: "")
                    if let e = enums.first(where: { $0.name == bare }) { tables[index].table.columns[c].typeSchema = e.schema }
                }
            }
        }

        func statements() -> [String] {
            var sql: [String] = []
            for schema in schemas.union(tables.map(\.table.schema)).union(enums.map(\.schema)).sorted() where schema != "public" {
                sql.append("CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier(schema))")
            }
            for e in enums {
                sql.append("CREATE TYPE \(quoteIdentifier(e.schema)).\(quoteIdentifier(e.name)) AS ENUM (\(e.values.map(quoteLiteral).joined(separator: ", ")))")
            }
            for (_, table) in tables {
                var parts: [String] = []
                for column in table.columns {
                    var text = "\(quoteIdentifier(column.name)) \(typeSQL(column))"
                    if let identity = column.identity { text += " GENERATED \(identity) AS IDENTITY" }
                    if let generated = column.generated { text += " GENERATED ALWAYS AS (\(generated)) STORED" }
                    if let value = column.defaultSQL, column.identity == nil, column.generated == nil { text += " DEFAULT \(value)" }
                    if column.notNull || column.primaryKey { text += " NOT NULL" }
                    parts.append(text)
                }
                let inlineKey = table.columns.filter(\.primaryKey).map(\.name)
                if let key = table.primaryKey, !key.columns.isEmpty {
                    parts.append("\(key.name.map { "CONSTRAINT \(quoteIdentifier($0)) " } ?? "")PRIMARY KEY (\(key.columns.map(quoteIdentifier).joined(separator: ", ")))")
                } else if !inlineKey.isEmpty {
                    parts.append("PRIMARY KEY (\(inlineKey.map(quoteIdentifier).joined(separator: ", ")))")
                }
                for column in table.columns {
                    if let unique = column.unique {
                        parts.append("CONSTRAINT \(quoteIdentifier(unique.name)) UNIQUE\(unique.nullsNotDistinct ? " NULLS NOT DISTINCT" : "") (\(quoteIdentifier(column.name)))")
                    }
                }
                for unique in table.uniques {
                    parts.append("CONSTRAINT \(quoteIdentifier(unique.name)) UNIQUE\(unique.nullsNotDistinct ? " NULLS NOT DISTINCT" : "") (\(unique.columns.map(quoteIdentifier).joined(separator: ", ")))")
                }
                for check in table.checks { parts.append("CONSTRAINT \(quoteIdentifier(check.name)) CHECK (\(check.value))") }
                sql.append("CREATE TABLE \(quoteIdentifier(table.schema)).\(quoteIdentifier(table.name)) (\n  \(parts.joined(separator: ",\n  "))\n)")
            }
            for (_, table) in tables {
                for key in table.foreignKeys {
                    var text = "ALTER TABLE \(quoteIdentifier(table.schema)).\(quoteIdentifier(table.name)) ADD CONSTRAINT \(quoteIdentifier(key.name)) FOREIGN KEY (\(key.columns.map(quoteIdentifier).joined(separator: ", "))) REFERENCES \(quoteIdentifier(key.schemaTo)).\(quoteIdentifier(key.tableTo))(\(key.columnsTo.map(quoteIdentifier).joined(separator: ", ")))"
                    if let action = key.onDelete, !action.isEmpty { text += " ON DELETE \(action.uppercased())" }
                    if let action = key.onUpdate, !action.isEmpty { text += " ON UPDATE \(action.uppercased())" }
                    sql.append(text)
                }
            }
            for (_, table) in tables {
                for index in table.indexes {
                    let columns = index.columns.map { c -> String in
                        var text = c.isExpression ? "(\(c.value))" : quoteIdentifier(c.value)
                        if let opclass = c.opclass { text += " \(opclass)" }
                        if c.descending { text += " DESC" }
                        if let first = c.nullsFirst { text += first ? " NULLS FIRST" : " NULLS LAST" }
                        return text
                    }
                    var text = "CREATE \(index.unique ? "UNIQUE " : "")INDEX \(quoteIdentifier(index.name)) ON \(quoteIdentifier(table.schema)).\(quoteIdentifier(table.name)) USING \(index.method) (\(columns.joined(separator: ", ")))"
                    if !index.with.isEmpty {
                        text += " WITH (" + index.with.map { $0.0.isEmpty ? $0.1 : "\($0.0) = \($0.1)" }.joined(separator: ", ") + ")"
                    }
                    if let condition = index.whereSQL { text += " WHERE \(condition)" }
                    sql.append(text)
                }
            }
            return sql
        }

        func typeSQL(_ column: Column) -> String {
            guard let schema = column.typeSchema else { return column.type }
            var bare = column.type
            var dimensions = 0
            while bare.hasSuffix("[]") {
                bare.removeLast(2)
                dimensions += 1
            }
            return "\(quoteIdentifier(schema)).\(quoteIdentifier(bare))" + String(repeating: "[]", count: dimensions)
        }

        /// A default as SQL: drizzle-kit writes strings as SQL already; numbers and booleans as JSON values.
        static func literal(_ value: Any) -> String? {
            if value is NSNull { return nil }
            if let number = value as? NSNumber {
                let kind = String(cString: number.objCType)
                if kind == "c" || kind == "B" { return number.boolValue ? "true" : "false" }
                return number.stringValue
            }
            if let text = value as? String { return text }
            return nil
        }

        /// A primary key or unique constraint in any of the shapes versions 5–7 use: an object with `name`
        /// and `columns`, or a string `name;a,b` or `a,b`.
        static func namedColumns(_ value: Any, key: String) -> (String?, [String]) {
            if let object = value as? [String: Any] {
                return (object["name"] as? String, (object["columns"] as? [String]) ?? [])
            }
            let text = "\(value)"
            let parts = text.split(separator: ";", maxSplits: 1).map(String.init)
            let columns = (parts.count == 2 ? parts[1] : parts[0]).split(separator: ",").map { String($0) }
            return (parts.count == 2 ? parts[0] : key, columns)
        }
    }
}

func nonEmpty(_ value: Any?) -> String? {
    guard let text = value as? String, !text.isEmpty else { return nil }
    return text
}
