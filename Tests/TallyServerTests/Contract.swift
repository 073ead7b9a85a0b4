import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCredits
import Testing
@testable import TallyServer

/// `/openapi.json` as a contract: every answer a test gets from a server is checked against it (its status is
/// one the operation documents, its content type is documented, its body matches the schema, a problem's
/// `type` is one the document lists for that answer). A violation fails the test that got the answer.
struct Contract: Sendable {
    static let shared = Contract()

    let document: JSONValue
    /// Documented paths, split into segments (`{name}` matches any one segment).
    let paths: [(template: String, segments: [Substring])]

    init() {
        document = (try? JSONDecoder().decode(JSONValue.self, from: Data(OpenAPIDocument.json))) ?? .null
        paths = (document["paths"]?.objectValue ?? [:]).keys.sorted().map { ($0, $0.split(separator: "/")) }
    }

    /// What is wrong with this answer, per the document; empty when it matches. Paths and methods the document
    /// does not have (the 404 and 405 answers) are not checked here.
    func violations(method: HTTPRequest.Method, uri: String, status: Int, contentType: String?, body: [UInt8]) -> [String] {
        let path = uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? uri
        let parts = path.split(separator: "/")
        guard let template = paths.first(where: { entry in
            entry.segments.count == parts.count && zip(entry.segments, parts).allSatisfy { $0 == $1 || $0.hasPrefix("{") }
        })?.template, let operation = document["paths"]?[template]?[method.rawValue.lowercased()] else { return [] }
        guard let answer = operation["responses"]?[String(status)] ?? operation["responses"]?["default"] else {
            return ["status \(status) is not documented for \(method) \(template)"]
        }
        guard let content = answer["content"]?.objectValue else {
            return body.isEmpty ? [] : ["\(status) documents no body, but one came: \(String(decoding: body.prefix(200), as: UTF8.self))"]
        }
        let media = contentType?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let documented = content[media] else {
            return ["content type \(contentType ?? "none") is not documented for \(status) (\(content.keys.sorted().joined(separator: ", ")))"]
        }
        guard media.hasSuffix("json"), let schema = documented["schema"] else { return [] }
        guard let value = try? JSONDecoder().decode(JSONValue.self, from: Data(body)) else {
            return ["the body is not JSON: \(String(decoding: body.prefix(200), as: UTF8.self))"]
        }
        var errors: [String] = []
        validate(value, against: schema, at: "body", into: &errors)
        if media == "application/problem+json", value["status"] != .integer(Int64(status)) {
            errors.append("the problem's status \(value["status"].map { "\($0)" } ?? "none") is not the answer's \(status)")
        }
        return errors
    }

    /// JSON Schema (the parts the document uses): `$ref`, `allOf`, `anyOf`, `oneOf`, `type`, `enum`, `properties`,
    /// `required`, `additionalProperties`, `propertyNames`, `items`, lengths, bounds, `pattern` and `format`.
    func validate(_ value: JSONValue, against schema: JSONValue, at path: String, into errors: inout [String]) {
        if case .string(let reference)? = schema["$ref"] {
            let name = String(reference.split(separator: "/").last ?? "")
            guard let target = document["components"]?["schemas"]?[name] else { return errors.append("\(path): unknown $ref \(reference)") }
            validate(value, against: target, at: path, into: &errors)
        }
        for part in schema["allOf"]?.arrayValue ?? [] { validate(value, against: part, at: path, into: &errors) }
        if let options = schema["anyOf"]?.arrayValue, !options.contains(where: { matches(value, $0) }) {
            errors.append("\(path): matches none of anyOf")
        }
        if let options = schema["oneOf"]?.arrayValue, options.filter({ matches(value, $0) }).count != 1 {
            errors.append("\(path): does not match exactly one of oneOf")
        }
        if let type = schema["type"] {
            let allowed = type.arrayValue?.compactMap(\.stringValue) ?? [type.stringValue ?? ""]
            guard allowed.contains(where: { Self.has(value, type: $0) }) else {
                return errors.append("\(path): \(Self.describe(value)) is not \(allowed.joined(separator: " or "))")
            }
        }
        if let options = schema["enum"]?.arrayValue, !options.contains(value) {
            errors.append("\(path): \(Self.describe(value)) is not one of \(options.map(Self.describe).joined(separator: ", "))")
        }
        switch value {
        case .object(let object):
            let properties = schema["properties"]?.objectValue ?? [:]
            for name in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where object[name] == nil {
                errors.append("\(path): the required field \(name) is missing")
            }
            for (name, field) in object {
                if let property = properties[name] {
                    validate(field, against: property, at: "\(path).\(name)", into: &errors)
                } else if let extra = schema["additionalProperties"] {
                    if extra == .bool(false) { errors.append("\(path): the field \(name) is not documented") }
                    else if extra.objectValue != nil { validate(field, against: extra, at: "\(path).\(name)", into: &errors) }
                }
                if let names = schema["propertyNames"] { validate(.string(name), against: names, at: "\(path) key \(name)", into: &errors) }
            }
        case .array(let items):
            if let item = schema["items"] {
                for (index, element) in items.enumerated() { validate(element, against: item, at: "\(path)[\(index)]", into: &errors) }
            }
        case .string(let text):
            let length = text.unicodeScalars.count
            if let minimum = schema["minLength"]?.numberValue, Double(length) < minimum { errors.append("\(path): shorter than \(minimum)") }
            if let maximum = schema["maxLength"]?.numberValue, Double(length) > maximum { errors.append("\(path): longer than \(maximum)") }
            if let pattern = schema["pattern"]?.stringValue, text.range(of: pattern, options: .regularExpression) == nil {
                errors.append("\(path): \"\(text.prefix(80))\" does not match \(pattern)")
            }
            switch schema["format"]?.stringValue {
            case "uuid"? where UUID(uuidString: text) == nil: errors.append("\(path): \"\(text.prefix(80))\" is not a UUID")
            case "date-time"? where (try? TextRules.time(text, field: path)) == nil: errors.append("\(path): \"\(text.prefix(80))\" is not a date-time")
            default: break
            }
        case .integer, .number:
            let number = value.numberValue ?? 0
            if let minimum = schema["minimum"]?.numberValue, number < minimum { errors.append("\(path): \(number) is below \(minimum)") }
            if let maximum = schema["maximum"]?.numberValue, number > maximum { errors.append("\(path): \(number) is above \(maximum)") }
        case .null, .bool:
            break
        }
    }

    func matches(_ value: JSONValue, _ schema: JSONValue) -> Bool {
        var errors: [String] = []
        validate(value, against: schema, at: "", into: &errors)
        return errors.isEmpty
    }

    static func has(_ value: JSONValue, type: String) -> Bool {
        switch (type, value) {
        case ("null", .null), ("boolean", .bool), ("string", .string), ("array", .array), ("object", .object), ("integer", .integer),
             ("number", .integer), ("number", .number):
            true
        case ("integer", .number(let number)):
            number.rounded() == number
        default:
            false
        }
    }

    /// Every `/v1` answer may carry a credential or a balance: none may be cached or sniffed.
    static func missingHeaders(uri: String, cacheControl: String?, contentTypeOptions: String?) -> [String] {
        guard uri.hasPrefix("/v1/") else { return [] }
        var missing: [String] = []
        if cacheControl != "no-store" { missing.append("Cache-Control is \(cacheControl ?? "missing"), not no-store") }
        if contentTypeOptions != "nosniff" { missing.append("X-Content-Type-Options is \(contentTypeOptions ?? "missing"), not nosniff") }
        return missing
    }

    static func describe(_ value: JSONValue) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return (try? encoder.encode(value)).map { String(decoding: $0.prefix(120), as: UTF8.self) } ?? "\(value)"
    }
}

/// A test client that checks every answer against the contract (`Contract`).
struct ContractCheckingClient: TestClientProtocol {
    let client: any TestClientProtocol

    func executeRequest(uri: String, method: HTTPRequest.Method, headers: HTTPFields, body: ByteBuffer?) async throws -> TestResponse {
        let response = try await client.executeRequest(uri: uri, method: method, headers: headers, body: body)
        for violation in Contract.shared.violations(
            method: method, uri: uri, status: response.status.code, contentType: response.headers[.contentType], body: Array(buffer: response.body)
        ) {
            Issue.record("\(method) \(uri) → \(response.status.code): \(violation) (per /openapi.json)")
        }
        for missing in Contract.missingHeaders(uri: uri, cacheControl: response.headers[.cacheControl], contentTypeOptions: response.headers[.xContentTypeOptions]) {
            Issue.record("\(method) \(uri) → \(response.status.code): \(missing)")
        }
        return response
    }

    var port: Int? { client.port }
}
