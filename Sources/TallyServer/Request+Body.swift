import Foundation
import Hummingbird
import TallyCredits

/// A route's JSON body: a `Decodable` whose `CodingKeys` (listed, so they are `CaseIterable`) are the only
/// fields the route takes.
protocol JSONBody: Decodable, Sendable {
    associatedtype CodingKeys: CodingKey & CaseIterable
}

extension JSONBody {
    /// The body's field names, as `/openapi.json` must list them.
    static var fields: [String] { CodingKeys.allCases.map(\.stringValue).sorted() }
}

/// Request bodies are JSON objects of at most 1 MiB with only the fields the route knows.
extension Request {
    static let maximumBody = 1 << 20

    /// Decodes the body as `T` in one pass, refusing a body over 1 MiB (413), invalid JSON, a body that is not
    /// an object, a NUL character, unknown fields and wrong types (400) with a problem that names what is
    /// wrong. An empty body reads as `{}`.
    mutating func decode<T: JSONBody>(_ type: T.Type, context: some RequestContext) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(upTo: Self.maximumBody)
        } catch {
            throw Problem.bodyTooLarge
        }
        if Self.containsEscapedNUL(buffer) {
            // PostgreSQL's text and jsonb cannot hold U+0000; refuse it here rather than fail in the database.
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "strings must not contain the NUL character (\\u0000)")
        }
        let data = buffer.readableBytes == 0 ? Data("{}".utf8) : Data(buffer: buffer)
        do {
            return try JSONDecoder().decode(Strict<T>.self, from: data).body
        } catch let problem as Problem {
            throw problem
        } catch let DecodingError.keyNotFound(key, _) {
            throw Problem(.badRequest, type: "missing-field", title: "Missing field", detail: "\"\(key.stringValue)\" is required")
        } catch let DecodingError.typeMismatch(expected, context) where !context.codingPath.isEmpty {
            throw Problem(.badRequest, type: "wrong-type", title: "Wrong type", detail: "\"\(Self.field(context))\" must be \(Self.describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            throw Problem(.badRequest, type: "wrong-type", title: "Wrong type", detail: "\"\(Self.field(context))\" must be \(Self.describe(expected)), not null")
        } catch let DecodingError.dataCorrupted(context) where !context.codingPath.isEmpty {
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "\"\(Self.field(context))\" is not a valid value: \(context.debugDescription)")
        } catch DecodingError.typeMismatch {
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "the body must be a JSON object")
        } catch {
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "the body is not valid JSON; send a JSON object")
        }
    }

    /// Whether the JSON text writes U+0000 in a string or key: JSON can only write it as the escape `\u0000`
    /// (a raw control character is invalid JSON), and `\\u0000` is a backslash and the text "u0000".
    static func containsEscapedNUL(_ buffer: ByteBuffer) -> Bool {
        buffer.withUnsafeReadableBytes { bytes -> Bool in
            var backslashes = 0
            var index = 0
            while index < bytes.count {
                let byte = bytes[index]
                if byte == UInt8(ascii: "\\") {
                    backslashes += 1
                } else {
                    if byte == UInt8(ascii: "u"), backslashes % 2 == 1, index + 4 < bytes.count,
                       bytes[index + 1] == UInt8(ascii: "0"), bytes[index + 2] == UInt8(ascii: "0"),
                       bytes[index + 3] == UInt8(ascii: "0"), bytes[index + 4] == UInt8(ascii: "0") {
                        return true
                    }
                    backslashes = 0
                }
                index += 1
            }
            return false
        }
    }

    static func field(_ context: DecodingError.Context) -> String {
        context.codingPath.map(\.stringValue).joined(separator: ".")
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "true or false"
        case is JSONValue.Type: "a JSON object"
        default: "\(type)"
        }
    }
}

/// `T`, decoded from a body that is a JSON object with no field `T` does not know. Only the object's keys are
/// read here; `T` reads the values, once. (NUL characters are refused before, in the text: `Request.decode`.)
struct Strict<T: JSONBody>: Decodable {
    var body: T

    init(from decoder: any Decoder) throws {
        let keys = try decoder.container(keyedBy: FieldName.self).allKeys
        if let unknown = keys.map(\.stringValue).filter({ T.CodingKeys(stringValue: $0) == nil }).sorted().first {
            throw Problem(.badRequest, type: "unknown-field", title: "Unknown field",
                          detail: "unknown field \"\(unknown.prefix(60))\"; this endpoint takes \(T.fields.joined(separator: ", "))")
        }
        body = try T(from: decoder)
    }
}

/// Any key of a JSON object.
struct FieldName: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
