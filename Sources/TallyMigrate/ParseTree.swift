import Foundation

/// A statement's whole parse tree as libpg_query's JSON gives it, for lint rules that read more of it than the
/// typed `ParseNode` cases do. A node is an object with one key, its type (`{"DropStmt": {…}}`).
indirect enum ParseTree: Sendable, Equatable {
    case object([String: ParseTree])
    case array([ParseTree])
    case string(String)
    case number(Double)
    case bool(Bool)
    case null

    /// From `JSONSerialization`'s objects. (Not `Decodable`: telling the JSON types apart by trying each would
    /// throw and catch an error per node, which costs more than the parse.)
    init(json: Any) {
        switch json {
        case let object as [String: Any]: self = .object(object.mapValues(ParseTree.init(json:)))
        case let array as [Any]: self = .array(array.map(ParseTree.init(json:)))
        case let string as String: self = .string(string)
        case let number as NSNumber:
            // JSONSerialization gives booleans as NSNumber too, of Objective-C type "c".
            if String(cString: number.objCType) == "c" { self = .bool(number.boolValue) } else { self = .number(number.doubleValue) }
        default: self = .null
        }
    }

    subscript(_ key: String) -> ParseTree? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    var string: String? { if case .string(let s) = self { s } else { nil } }
    var int: Int? { if case .number(let n) = self { Int(exactly: n) } else { nil } }
    /// libpg_query leaves out false booleans.
    var isTrue: Bool { if case .bool(let b) = self { b } else { false } }
    var array: [ParseTree] { if case .array(let a) = self { a } else { [] } }

    /// For a node (`{"Type": {…}}`): its type.
    var type: String? {
        guard case .object(let fields) = self, fields.count == 1, let key = fields.keys.first, key.first?.isUppercase == true else { return nil }
        return key
    }

    /// For a node: its fields.
    var fields: ParseTree? { type.flatMap { self[$0] } }

    /// For a node of `type`: its fields; nil for any other node.
    func node(_ type: String) -> ParseTree? { self.type == type ? self[type] : nil }

    /// The `String` nodes of a list (`[{"String": {"sval": "public"}}, …]`), e.g. a qualified name.
    var names: [String] { array.compactMap { $0.node("String")?["sval"]?.string } }

    /// Every node of `type` anywhere below (and including) this one, in document order.
    func all(_ type: String) -> [ParseTree] {
        var found: [ParseTree] = []
        collect(type, into: &found)
        return found
    }

    private func collect(_ type: String, into found: inout [ParseTree]) {
        switch self {
        case .object(let fields):
            if self.type == type, let inner = fields[type] { found.append(inner) }
            for key in fields.keys.sorted() { fields[key]!.collect(type, into: &found) }
        case .array(let items):
            for item in items { item.collect(type, into: &found) }
        default: break
        }
    }
}
