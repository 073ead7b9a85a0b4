import Foundation
import Hummingbird

/// The fields each route's JSON body may have, by "METHOD /path" as the router names the route.
/// The one list the handlers check bodies against; `/openapi.json` is tested against it.
public enum RequestBodies {
    public static let fields: [String: Set<String>] = [
        "POST /v1/auth/signup": ["email", "password", "name"],
        "POST /v1/auth/login": ["email", "password"],
        "POST /v1/teams": ["name"],
        "POST /v1/teams/{team}/members": ["email", "role"],
        "POST /v1/api-keys": ["name", "team_id", "credit_limit"],
        "POST /v1/admin/grants": ["user_id", "team_id", "amount", "expires_at", "priority", "description"],
        "POST /v1/credits/consume": ["amount", "description", "metadata"],
        "POST /v1/credits/holds": ["amount", "ttl_seconds", "description"],
        "POST /v1/credits/holds/{hold}/capture": ["amount"],
    ]
}

/// Request bodies are JSON objects of at most 1 MiB with only the fields the route knows.
extension Request {
    static let maximumBody = 1 << 20

    /// Decodes the body as `T`, refusing bodies over 1 MiB (413), invalid JSON, unknown fields and wrong
    /// types (400) with a problem that names what is wrong. An empty body reads as `{}`.
    mutating func decodeStrict<T: Decodable>(_ type: T.Type, context: some RequestContext) async throws -> T {
        try await decodeStrictWithObject(type, context: context).0
    }

    /// `decodeStrict`, also returning the body as a dictionary (for free-form fields such as `metadata`).
    mutating func decodeStrictWithObject<T: Decodable>(_ type: T.Type, context: some RequestContext) async throws -> (T, [String: Any]) {
        let route = "\(method) \(context.endpointPath ?? uri.path)"
        guard let fields = RequestBodies.fields[route] else {
            throw Problem(.internalServerError, type: "internal", title: "Internal error", detail: "\(route) has no body description")
        }
        let buffer: ByteBuffer
        do {
            buffer = try await collectBody(upTo: Self.maximumBody)
        } catch {
            throw Problem(.contentTooLarge, type: "body-too-large", title: "Body too large", detail: "the request body is over 1 MiB")
        }
        let data = buffer.readableBytes == 0 ? Data("{}".utf8) : Data(buffer: buffer)
        guard let object = try? JSONSerialization.jsonObject(with: data), let dictionary = object as? [String: Any] else {
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "the body must be a JSON object")
        }
        if Self.containsNUL(dictionary) {
            // PostgreSQL's text and jsonb cannot hold U+0000; refuse it here rather than fail in the database.
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "strings must not contain the NUL character (\\u0000)")
        }
        if let unknown = dictionary.keys.sorted().first(where: { !fields.contains($0) }) {
            throw Problem(.badRequest, type: "unknown-field", title: "Unknown field",
                          detail: "unknown field \"\(unknown.prefix(60))\"; this endpoint takes \(fields.sorted().joined(separator: ", "))")
        }
        do {
            return (try JSONDecoder().decode(T.self, from: data), dictionary)
        } catch let DecodingError.keyNotFound(key, _) {
            throw Problem(.badRequest, type: "missing-field", title: "Missing field", detail: "\"\(key.stringValue)\" is required")
        } catch let DecodingError.typeMismatch(expected, context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw Problem(.badRequest, type: "wrong-type", title: "Wrong type", detail: "\"\(field)\" must be \(Self.describe(expected))")
        } catch let DecodingError.valueNotFound(expected, context) {
            let field = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw Problem(.badRequest, type: "wrong-type", title: "Wrong type", detail: "\"\(field)\" must be \(Self.describe(expected)), not null")
        } catch {
            throw Problem(.badRequest, type: "invalid-json", title: "Invalid JSON", detail: "the body could not be read as this endpoint's JSON")
        }
    }

    /// Whether any key or string in a parsed JSON value contains U+0000.
    static func containsNUL(_ value: Any) -> Bool {
        switch value {
        case let text as String: text.utf8.contains(0)
        case let object as [String: Any]: object.contains { containsNUL($0.key) || containsNUL($0.value) }
        case let array as [Any]: array.contains { containsNUL($0) }
        default: false
        }
    }

    static func describe(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Int.Type, is Int64.Type: "an integer"
        case is Bool.Type: "true or false"
        default: "\(type)"
        }
    }

    /// The token of an `Authorization: Bearer …` header.
    var bearerToken: String? {
        guard let value = headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}
