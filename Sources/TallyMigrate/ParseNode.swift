import TallyPostgres

/// The few node types of PostgreSQL's parse tree Tally reads, decoded from libpg_query's JSON (an object
/// whose one key is the node's type). Every other node decodes as `.other(type)`.
indirect enum ParseNode: Decodable, Sendable {
    case createStmt(CreateStmt)
    case createTableAs(CreateTableAsStmt)
    case alterTable(AlterTableStmt)
    case alterTableCmd(AlterTableCmd)
    case constraint(Constraint)
    case columnDef(ColumnDef)
    case index(IndexStmt)
    case drop(DropStmt)
    case doBlock(DoStmt)
    case defElem(DefElem)
    case string(String)
    case reindex(ReindexStmt)
    case variableSet(VariableSetStmt)
    case dml(type: String, relation: RangeVar?)
    case other(String)

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        guard let key = container.allKeys.first else {
            self = .other("")
            return
        }
        switch key.stringValue {
        case "CreateStmt": self = .createStmt(try container.decode(CreateStmt.self, forKey: key))
        case "CreateTableAsStmt": self = .createTableAs(try container.decode(CreateTableAsStmt.self, forKey: key))
        case "AlterTableStmt": self = .alterTable(try container.decode(AlterTableStmt.self, forKey: key))
        case "AlterTableCmd": self = .alterTableCmd(try container.decode(AlterTableCmd.self, forKey: key))
        case "Constraint": self = .constraint(try container.decode(Constraint.self, forKey: key))
        case "ColumnDef": self = .columnDef(try container.decode(ColumnDef.self, forKey: key))
        case "IndexStmt": self = .index(try container.decode(IndexStmt.self, forKey: key))
        case "DropStmt": self = .drop(try container.decode(DropStmt.self, forKey: key))
        case "DoStmt": self = .doBlock(try container.decode(DoStmt.self, forKey: key))
        case "DefElem": self = .defElem(try container.decode(DefElem.self, forKey: key))
        case "String": self = .string(try container.decode(StringValue.self, forKey: key).sval ?? "")
        case "ReindexStmt": self = .reindex(try container.decode(ReindexStmt.self, forKey: key))
        case "VariableSetStmt": self = .variableSet(try container.decode(VariableSetStmt.self, forKey: key))
        case "InsertStmt", "UpdateStmt", "DeleteStmt":
            self = .dml(type: key.stringValue, relation: try container.decode(DMLStmt.self, forKey: key).relation)
        default: self = .other(key.stringValue)
        }
    }

    var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    struct StringValue: Decodable { var sval: String? }

    struct RangeVar: Decodable, Sendable {
        var schemaname: String?
        var relname: String
        /// False for `ONLY`.
        var inh: Bool?
        var relpersistence: String?

        var qualifiedName: QualifiedName { QualifiedName(schema: schemaname ?? "public", name: relname) }
        /// The name as written: qualified only when the statement qualified it (for `to_regclass`, which
        /// then resolves it through the search_path as the statement did).
        var asWritten: String { (schemaname.map { quoteIdentifier($0) + "." } ?? "") + quoteIdentifier(relname) }
    }

    struct CreateStmt: Decodable, Sendable {
        var relation: RangeVar
        var tableElts: [ParseNode]?
    }

    struct CreateTableAsStmt: Decodable, Sendable {
        struct Into: Decodable, Sendable { var rel: RangeVar }
        var into: Into
        var objtype: String?
    }

    struct AlterTableStmt: Decodable, Sendable {
        var relation: RangeVar
        var cmds: [ParseNode]?
        var objtype: String?

        var commands: [AlterTableCmd] {
            (cmds ?? []).compactMap { if case .alterTableCmd(let c) = $0 { return c } else { return nil } }
        }
    }

    struct AlterTableCmd: Decodable, Sendable {
        /// e.g. `AT_AddColumn`, `AT_AddConstraint`, `AT_AlterColumnType`, `AT_SetNotNull`, `AT_DropColumn`.
        var subtype: String
        var name: String?
        var def: ParseNode?
    }

    struct Constraint: Decodable, Sendable {
        /// e.g. `CONSTR_FOREIGN`, `CONSTR_PRIMARY`, `CONSTR_UNIQUE`, `CONSTR_CHECK`, `CONSTR_NOTNULL`, `CONSTR_DEFAULT`.
        var contype: String
        var conname: String?
        var pktable: RangeVar?
        var fk_attrs: [ParseNode]?
        var pk_attrs: [ParseNode]?
        /// `NOT VALID`.
        var skip_validation: Bool?
        var indexname: String?
    }

    struct ColumnDef: Decodable, Sendable {
        struct TypeName: Decodable, Sendable { var names: [ParseNode]? }
        var colname: String?
        var typeName: TypeName?
        var constraints: [ParseNode]?

        var constraintList: [Constraint] {
            (constraints ?? []).compactMap { if case .constraint(let c) = $0 { return c } else { return nil } }
        }
    }

    struct IndexStmt: Decodable, Sendable {
        var idxname: String?
        var relation: RangeVar
        var unique: Bool?
        var concurrent: Bool?
    }

    struct DropStmt: Decodable, Sendable {
        var objects: [ParseNode]?
        /// e.g. `OBJECT_TABLE`, `OBJECT_INDEX`.
        var removeType: String?
        var concurrent: Bool?
    }

    struct DoStmt: Decodable, Sendable {
        var args: [ParseNode]?

        /// The code of the block and its language (plpgsql unless `LANGUAGE` says otherwise).
        var body: (code: String, language: String)? {
            var code: String?
            var language = "plpgsql"
            for case .defElem(let e) in args ?? [] {
                if e.defname == "as" { code = e.arg?.stringValue }
                if e.defname == "language", let l = e.arg?.stringValue { language = l.lowercased() }
            }
            return code.map { ($0, language) }
        }
    }

    struct DefElem: Decodable, Sendable {
        var defname: String?
        var arg: ParseNode?
    }

    struct ReindexStmt: Decodable, Sendable {
        var params: [ParseNode]?
        var concurrently: Bool {
            (params ?? []).contains { if case .defElem(let e) = $0 { return e.defname == "concurrently" } else { return false } }
        }
    }

    struct VariableSetStmt: Decodable, Sendable {
        var name: String?
    }

    struct DMLStmt: Decodable, Sendable { var relation: RangeVar? }
}
