import Foundation
import Hummingbird
import TallyCredits

/// JSON for Tally's answers. Members come in the order the type encodes them (its declaration order), so an
/// answer is the same bytes every time it is made: a retry with an `Idempotency-Key` answered from the kept
/// outcome is byte for byte the first answer (Foundation's encoder orders members by a per-dictionary hash).
/// Ids are lowercase, as PostgreSQL prints them and RFC 9562 asks; times are ISO 8601 in UTC, to the second;
/// free-form objects (`JSONValue`, such as a ledger entry's metadata) have their members sorted.
public struct AnswerEncoder: ResponseEncoder, Sendable {
    public init() {}

    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        let bytes = try Self.encode(value)
        return Response(
            status: .ok,
            headers: [.contentType: "application/json; charset=utf-8", .contentLength: String(bytes.count)],
            body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    /// `value` as JSON text.
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        try AnswerTree.node(for: value, at: []).write(to: &output)
        return output
    }
}

/// The answer as a tree of JSON values, built by `AnswerTree.Encoder` and then written out.
enum AnswerTree {
    final class Object {
        var members: [(String, Node)] = []

        func set(_ key: String, _ node: Node) {
            if let index = members.firstIndex(where: { $0.0 == key }) { members[index].1 = node } else { members.append((key, node)) }
        }
    }

    final class Array {
        var items: [Node] = []
    }

    indirect enum Node {
        /// JSON text as it is written (a number, a quoted string, true, false or null).
        case literal([UInt8])
        case object(Object)
        case array(Array)
        /// What an encoder handed out by `superEncoder` or `nestedContainer` makes, read when written.
        case pending(Encoder)

        func write(to output: inout [UInt8]) throws {
            switch self {
            case .literal(let bytes):
                output += bytes
            case .object(let object):
                output.append(UInt8(ascii: "{"))
                for (index, (key, node)) in object.members.enumerated() {
                    if index > 0 { output.append(UInt8(ascii: ",")) }
                    AnswerTree.quote(key, into: &output)
                    output.append(UInt8(ascii: ":"))
                    try node.write(to: &output)
                }
                output.append(UInt8(ascii: "}"))
            case .array(let array):
                output.append(UInt8(ascii: "["))
                for (index, node) in array.items.enumerated() {
                    if index > 0 { output.append(UInt8(ascii: ",")) }
                    try node.write(to: &output)
                }
                output.append(UInt8(ascii: "]"))
            case .pending(let encoder):
                try (encoder.node ?? .object(Object())).write(to: &output)
            }
        }
    }

    static var null: Node { .literal(Swift.Array("null".utf8)) }

    /// The node for any value: the types an answer writes its own way first, then whatever the value encodes.
    static func node(for value: some Encodable, at path: [any CodingKey]) throws -> Node {
        switch value {
        case let id as UUID: return string(id.lowercasedString)
        case let date as Date: return string(date.formatted(.iso8601))
        case let json as JSONValue: return try node(for: json, at: path)
        case let url as URL: return string(url.absoluteString)
        case let data as Data: return string(data.base64EncodedString())
        default:
            let encoder = Encoder(codingPath: path)
            try value.encode(to: encoder)
            return encoder.node ?? .object(Object())
        }
    }

    static func node(for json: JSONValue, at path: [any CodingKey]) throws -> Node {
        switch json {
        case .null: return null
        case .bool(let value): return literal(value ? "true" : "false")
        case .integer(let value): return literal(String(value))
        case .number(let value): return try number(value, at: path)
        case .string(let value): return string(value)
        case .array(let values):
            let array = Array()
            array.items = try values.map { try node(for: $0, at: path) }
            return .array(array)
        case .object(let members):
            let object = Object()
            object.members = try members.sorted { $0.key < $1.key }.map { ($0.key, try node(for: $0.value, at: path)) }
            return .object(object)
        }
    }

    static func literal(_ text: String) -> Node { .literal(Swift.Array(text.utf8)) }

    static func string(_ text: String) -> Node {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count + 2)
        quote(text, into: &bytes)
        return .literal(bytes)
    }

    static func number(_ value: Double, at path: [any CodingKey]) throws -> Node {
        guard value.isFinite else {
            throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "JSON has no \(value)"))
        }
        if value == value.rounded(), abs(value) < 1e15 { return literal(String(Int64(value))) }
        return literal("\(value)")
    }

    /// `text` as a JSON string: quoted, with quotes, backslashes and control characters escaped.
    static func quote(_ text: String, into output: inout [UInt8]) {
        let hex = Swift.Array("0123456789abcdef".utf8)
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): output += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case UInt8(ascii: "\n"): output += [UInt8(ascii: "\\"), UInt8(ascii: "n")]
            case UInt8(ascii: "\r"): output += [UInt8(ascii: "\\"), UInt8(ascii: "r")]
            case UInt8(ascii: "\t"): output += [UInt8(ascii: "\\"), UInt8(ascii: "t")]
            case 0..<0x20: output += Swift.Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 0xf)]]
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }

    /// Swift's `Encoder` over the tree: each container writes into the node it was made for.
    final class Encoder: Swift.Encoder {
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        var node: Node?

        init(codingPath: [any CodingKey]) {
            self.codingPath = codingPath
        }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
            if case .object(let object)? = node { return KeyedEncodingContainer(Keyed(object: object, codingPath: codingPath)) }
            let object = Object()
            node = .object(object)
            return KeyedEncodingContainer(Keyed(object: object, codingPath: codingPath))
        }

        func unkeyedContainer() -> any UnkeyedEncodingContainer {
            if case .array(let array)? = node { return Unkeyed(array: array, codingPath: codingPath) }
            let array = Array()
            node = .array(array)
            return Unkeyed(array: array, codingPath: codingPath)
        }

        func singleValueContainer() -> any SingleValueEncodingContainer { Single(encoder: self) }
    }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let object: Object
        let codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { object.set(key.stringValue, AnswerTree.null) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { object.set(key.stringValue, literal(value ? "true" : "false")) }
        mutating func encode(_ value: String, forKey key: Key) throws { object.set(key.stringValue, string(value)) }
        mutating func encode(_ value: Double, forKey key: Key) throws { object.set(key.stringValue, try number(value, at: codingPath + [key])) }
        mutating func encode(_ value: Float, forKey key: Key) throws { try encode(Double(value), forKey: key) }
        mutating func encode(_ value: Int, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: Int32, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: UInt64, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: Int8, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: Int16, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: UInt, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: UInt8, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: UInt16, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode(_ value: UInt32, forKey key: Key) throws { object.set(key.stringValue, literal(String(value))) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            object.set(key.stringValue, try node(for: value, at: codingPath + [key]))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
            let encoder = Encoder(codingPath: codingPath + [key])
            object.set(key.stringValue, .pending(encoder))
            return encoder.container(keyedBy: keyType)
        }

        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let encoder = Encoder(codingPath: codingPath + [key])
            object.set(key.stringValue, .pending(encoder))
            return encoder.unkeyedContainer()
        }

        mutating func superEncoder() -> any Swift.Encoder { superEncoder(forKey: Key(stringValue: "super")!) }

        mutating func superEncoder(forKey key: Key) -> any Swift.Encoder {
            let encoder = Encoder(codingPath: codingPath + [key])
            object.set(key.stringValue, .pending(encoder))
            return encoder
        }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let array: Array
        let codingPath: [any CodingKey]
        var count: Int { array.items.count }

        private struct Index: CodingKey {
            var stringValue: String { "\(intValue!)" }
            var intValue: Int?
            init(_ index: Int) { intValue = index }
            init?(stringValue: String) { nil }
            init?(intValue: Int) { self.intValue = intValue }
        }

        private var next: [any CodingKey] { codingPath + [Index(array.items.count)] }

        mutating func encodeNil() throws { array.items.append(AnswerTree.null) }
        mutating func encode(_ value: Bool) throws { array.items.append(literal(value ? "true" : "false")) }
        mutating func encode(_ value: String) throws { array.items.append(string(value)) }
        mutating func encode(_ value: Double) throws { array.items.append(try number(value, at: next)) }
        mutating func encode(_ value: Int) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: Int64) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: Float) throws { try encode(Double(value)) }
        mutating func encode(_ value: Int8) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: Int16) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: Int32) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: UInt) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: UInt8) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: UInt16) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: UInt32) throws { array.items.append(literal(String(value))) }
        mutating func encode(_ value: UInt64) throws { array.items.append(literal(String(value))) }
        mutating func encode<T: Encodable>(_ value: T) throws { array.items.append(try node(for: value, at: next)) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            let encoder = Encoder(codingPath: next)
            array.items.append(.pending(encoder))
            return encoder.container(keyedBy: keyType)
        }

        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let encoder = Encoder(codingPath: next)
            array.items.append(.pending(encoder))
            return encoder.unkeyedContainer()
        }

        mutating func superEncoder() -> any Swift.Encoder {
            let encoder = Encoder(codingPath: next)
            array.items.append(.pending(encoder))
            return encoder
        }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: Encoder
        var codingPath: [any CodingKey] { encoder.codingPath }

        func encodeNil() throws { encoder.node = AnswerTree.null }
        func encode(_ value: Bool) throws { encoder.node = literal(value ? "true" : "false") }
        func encode(_ value: String) throws { encoder.node = string(value) }
        func encode(_ value: Double) throws { encoder.node = try number(value, at: codingPath) }
        func encode(_ value: Float) throws { try encode(Double(value)) }
        func encode(_ value: Int) throws { encoder.node = literal(String(value)) }
        func encode(_ value: Int64) throws { encoder.node = literal(String(value)) }
        func encode(_ value: Int32) throws { encoder.node = literal(String(value)) }
        func encode(_ value: UInt64) throws { encoder.node = literal(String(value)) }
        func encode(_ value: Int8) throws { encoder.node = literal(String(value)) }
        func encode(_ value: Int16) throws { encoder.node = literal(String(value)) }
        func encode(_ value: UInt) throws { encoder.node = literal(String(value)) }
        func encode(_ value: UInt8) throws { encoder.node = literal(String(value)) }
        func encode(_ value: UInt16) throws { encoder.node = literal(String(value)) }
        func encode(_ value: UInt32) throws { encoder.node = literal(String(value)) }
        func encode<T: Encodable>(_ value: T) throws { encoder.node = try node(for: value, at: codingPath) }
    }
}
