import Foundation
import TallyPostgres

/// An app's SQLAlchemy (or SQLModel) metadata, read by importing it in the app's own Python: Tally ships a
/// small script that imports `module:attribute`, has SQLAlchemy compile each table's `CREATE TABLE` and
/// indexes for PostgreSQL, and lists foreign keys, enums and relationships as JSON. Tally never parses Python.
public enum SQLAlchemyMetadata {
    /// A relationship of the app's models: the columns it joins on, and whether the model backs it with a
    /// ForeignKey.
    public struct Relation: Sendable, Codable, Equatable {
        public var name: String
        /// `schema.table` of the side holding the key columns.
        public var table: String
        public var columns: [String]
        public var targetTable: String
        public var targetColumns: [String]
        public var keyDeclared: Bool
    }

    /// What the script prints.
    struct Output: Decodable {
        struct Table: Decodable {
            var schema: String
            var name: String
            var ddl: String
            var indexes: [String]
            var foreign_keys: [ForeignKey]
        }
        struct ForeignKey: Decodable {
            var name: String?
            var columns: [String]
            var ref_schema: String
            var ref_table: String
            var ref_columns: [String]
            var ondelete: String?
            var onupdate: String?
        }
        struct Enum: Decodable {
            var schema: String
            var name: String
            var values: [String]
        }
        struct Relationship: Decodable {
            var name: String
            var table: String
            var columns: [String]
            var target_table: String
            var target_columns: [String]
            var key_declared: Bool
        }
        var label: String
        var tables: [Table]
        var enums: [Enum]
        var relationships: [Relationship]
    }

    /// Imports `spec` (`module:attribute`, a MetaData or anything with `.metadata`) with `python`, with
    /// `directory` first on the import path, and returns what it declares.
    public static func read(spec: String, python: String = "python3", directory: String = ".") async throws -> Declaration {
        guard spec.contains(":"), !spec.hasPrefix(":"), !spec.hasSuffix(":") else {
            throw MigrateError(.invalidDeclaration, "--sqlalchemy takes module:attribute, such as app.models:SQLModel.metadata (not \(spec))")
        }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("tally-sqlalchemy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        try script.write(toFile: work + "/metadata.py", atomically: true, encoding: .utf8)
        let executable = python.contains("/") ? python : (PostgresBinaries.searchPath(for: python) ?? python)
        let child: Command.Child
        do {
            child = try Command.spawn(executable, [work + "/metadata.py", spec, directory], stdout: work + "/out.json", stderr: work + "/err.txt")
        } catch {
            throw MigrateError(.invalidDeclaration, "cannot run \(python) to read \(spec): \(error); name the app's Python with --python", underlying: error)
        }
        let status = await child.waitAsync()
        let errors = (try? String(contentsOfFile: work + "/err.txt", encoding: .utf8)) ?? ""
        guard status == 0 else {
            let last = errors.split(separator: "\n").last.map(String.init) ?? "exit status \(status)"
            throw MigrateError(.invalidDeclaration, "\(python) could not read \(spec): \(last)\(status == 127 ? " (is \(python) installed? name it with --python)" : "")")
        }
        let output: Output
        do {
            output = try JSONDecoder().decode(Output.self, from: Data(contentsOf: URL(fileURLWithPath: work + "/out.json")))
        } catch {
            throw MigrateError(.invalidDeclaration, "the metadata script printed something Tally cannot read for \(spec): \(error)", underlying: error)
        }
        return declaration(output, source: "\(output.label): \(spec)")
    }

    static func declaration(_ output: Output, source: String) -> Declaration {
        var statements: [String] = []
        let schemas = Set(output.tables.map(\.schema) + output.enums.map(\.schema)).subtracting(["public"])
        statements += schemas.sorted().map { "CREATE SCHEMA IF NOT EXISTS \(quoteIdentifier($0))" }
        var enumKeys: [String] = []
        for e in output.enums where !enumKeys.contains("\(e.schema).\(e.name)") {
            enumKeys.append("\(e.schema).\(e.name)")
            statements.append("CREATE TYPE \(quoteIdentifier(e.schema)).\(quoteIdentifier(e.name)) AS ENUM (\(e.values.map(quoteLiteral).joined(separator: ", ")))")
        }
        for table in output.tables {
            // SQLAlchemy names the table as the app does (unqualified in public); the scratch database's search
            // path is public.
            statements.append(table.ddl)
        }
        var keys: [Declaration.ForeignKey] = []
        for table in output.tables {
            for fk in table.foreign_keys {
                keys.append(Declaration.ForeignKey(
                    table: "\(table.schema).\(table.name)", name: fk.name, columns: fk.columns,
                    targetTable: "\(fk.ref_schema).\(fk.ref_table)", targetColumns: fk.ref_columns, onDelete: fk.ondelete, onUpdate: fk.onupdate))
            }
        }
        var declaration = Declaration(
            source: source, label: output.label, statements: statements, tables: output.tables.map { "\($0.schema).\($0.name)" },
            enums: enumKeys, coversWholeTables: false)
        declaration.foreignKeys = keys
        declaration.indexStatements = output.tables.flatMap(\.indexes)
        declaration.relations = output.relationships.map {
            Relation(name: $0.name, table: $0.table, columns: $0.columns, targetTable: $0.target_table, targetColumns: $0.target_columns, keyDeclared: $0.key_declared)
        }
        return declaration
    }

    /// The script Tally ships: run as `python metadata.py module:attribute app_directory`; prints JSON.
    static let script = #"""
        import importlib, json, sys

        spec, directory = sys.argv[1], sys.argv[2]
        sys.path.insert(0, directory)
        module_name, _, attribute = spec.partition(":")
        target = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
        import sqlalchemy as sa
        from sqlalchemy.dialects import postgresql
        from sqlalchemy.schema import CreateIndex, CreateTable
        metadata = target if isinstance(target, sa.MetaData) else getattr(target, "metadata", None)
        if not isinstance(metadata, sa.MetaData):
            sys.exit(f"{spec} is neither a MetaData nor has one as .metadata")
        dialect = postgresql.dialect()
        label = "sqlmodel" if "sqlmodel" in sys.modules else "sqlalchemy"

        tables, enums = [], []
        # Not sorted_tables: sorting resolves every foreign key, and a model may point at a table it does not map.
        for table in sorted(metadata.tables.values(), key=lambda t: (t.schema or "", t.name)):
            schema = table.schema or "public"
            foreign_keys = []
            for constraint in table.foreign_key_constraints:
                try:
                    referenced = constraint.elements[0].column.table
                    ref_schema, ref_table = referenced.schema or "public", referenced.name
                except Exception:
                    # A key to a table the metadata does not hold: named by text only.
                    parts = constraint.elements[0].target_fullname.split(".")
                    ref_schema, ref_table = (parts[0], parts[1]) if len(parts) == 3 else ("public", parts[0])
                foreign_keys.append({
                    "name": constraint.name if isinstance(constraint.name, str) else None,
                    "columns": [element.parent.name for element in constraint.elements],
                    "ref_schema": ref_schema, "ref_table": ref_table,
                    "ref_columns": [element.target_fullname.split(".")[-1] for element in constraint.elements],
                    "ondelete": constraint.ondelete, "onupdate": constraint.onupdate,
                })
            for column in table.columns:
                if isinstance(column.type, sa.Enum) and column.type.native_enum and column.type.name:
                    enums.append({"schema": column.type.schema or "public", "name": column.type.name, "values": list(column.type.enums)})
            tables.append({
                "schema": schema, "name": table.name,
                "ddl": str(CreateTable(table, include_foreign_key_constraints=[]).compile(dialect=dialect)).strip(),
                "indexes": [str(CreateIndex(index).compile(dialect=dialect)).strip() for index in table.indexes],
                "foreign_keys": foreign_keys,
            })

        relationships = []
        from sqlalchemy import orm
        orm.configure_mappers()
        from sqlalchemy.orm import mapperlib
        for registry in list(mapperlib._mapper_registries):
            for mapper in registry.mappers:
                for relationship in mapper.relationships:
                    pairs = relationship.local_remote_pairs or []
                    if not pairs:
                        continue
                    # The side whose columns hold the key: for many-to-one the local side, else the remote one.
                    key_side = [(l, r) for l, r in pairs] if relationship.direction.name == "MANYTOONE" else [(r, l) for l, r in pairs]
                    holder = key_side[0][0].table
                    if holder is None or getattr(holder, "name", None) is None:
                        continue
                    relationships.append({
                        "name": f"{mapper.class_.__name__}.{relationship.key}",
                        "table": f"{holder.schema or 'public'}.{holder.name}",
                        "columns": [column.name for column, _ in key_side],
                        "target_table": f"{key_side[0][1].table.schema or 'public'}.{key_side[0][1].table.name}",
                        "target_columns": [target.name for _, target in key_side],
                        "key_declared": all(any(fk.column is target for fk in column.foreign_keys) for column, target in key_side),
                    })
        print(json.dumps({"label": label, "tables": tables, "enums": enums, "relationships": relationships}))
        """#
}
