import Foundation

/// The rules for the text fields people type (emails, passwords, names), written once: the server checks
/// them here and the API document states the same patterns, so a client validating against the document
/// and the server never disagree. Lengths count Unicode code points, as JSON Schema's `maxLength` does.
public enum TextRules {
    /// Unicode's White_Space characters, as the inside of a regular-expression class.
    static let whitespace = "\\t\\n\\u000b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"

    /// Any string without U+0000 (PostgreSQL's text cannot hold it).
    public static let withoutNUL = "^[^\\u0000]*$"

    /// A name: something other than white space, and no U+0000.
    public static let notBlank = "^[^\\u0000]*[^\\u0000\(whitespace)][^\\u0000]*$"

    /// An email: one `@`, something before it, a domain with a dot inside it; no control character, space or
    /// other white space anywhere.
    public static let email: String = {
        let allowed = "[^@\\u0000-\\u001f\\u007f-\\u009f\(whitespace)]"
        let label = "[^@.\\u0000-\\u001f\\u007f-\\u009f\(whitespace)]"
        return "^\(allowed)+@\(label)\(allowed)*\\.\(allowed)*\(label)$"
    }()

    public static let emailMaximum = 254
    public static let nameMaximum = 200
    public static let passwordMinimum = 8
    public static let passwordMaximum = 256

    private static let emailExpression = try! NSRegularExpression(pattern: email)

    /// `text` if it is an email by `email`'s pattern and at most 254 code points.
    public static func checkEmail(_ text: String) throws -> String {
        let range = NSRange(text.startIndex..., in: text)
        guard text.unicodeScalars.count <= emailMaximum, emailExpression.firstMatch(in: text, range: range) != nil else {
            throw CreditsError(.invalidInput, "email must look like name@example.com, without spaces, at most \(emailMaximum) characters")
        }
        return text
    }

    /// A name of 1 to 200 code points that is not all white space; returned without surrounding white space.
    public static func checkName(_ text: String, field: String = "name") throws -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty, text.unicodeScalars.count <= nameMaximum else {
            throw CreditsError(.invalidInput, "\(field) must have 1 to \(nameMaximum) characters, not all of them spaces")
        }
        return trimmed
    }

    /// 8 to 256 code points. Any length hashes fully (see `Auth.bcryptInput`).
    public static func checkPassword(_ password: String) throws {
        guard (passwordMinimum...passwordMaximum).contains(password.unicodeScalars.count) else {
            throw CreditsError(.invalidInput, "password must have \(passwordMinimum) to \(passwordMaximum) characters")
        }
    }

    /// The product's own id for a customer (`Customers`): 1 to 255 visible ASCII characters, no spaces, as the
    /// database's trigger checks too (ids such as `user_2NNEqL2`, `auth0|63f1…`, a UUID or an email).
    public static let externalID = "^[!-~]{1,255}$"

    /// `text` if it is an external id by `externalID`'s pattern.
    public static func checkExternalID(_ text: String, field: String = "external_id") throws -> String {
        guard (1...255).contains(text.utf8.count), text.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) else {
            throw CreditsError(.invalidInput, "\(field) must be 1 to 255 visible ASCII characters without spaces (such as user_2NNEqL2 or auth0|63f1…); got \"\(text.prefix(60))\"")
        }
        return text
    }

    public static let descriptionMaximum = 500
    /// The longest a grant made by a rule or a schedule may last before it expires, in seconds: ten years.
    public static let longestGrantLife: Int64 = 10 * 366 * 86_400
    public static let metadataMaximumBytes = 8 * 1024
    public static let metadataMaximumDepth = 8

    /// At most 500 code points: a ledger entry's description (every page of the ledger carries them).
    public static func checkDescription(_ text: String?) throws {
        guard let text, text.unicodeScalars.count > descriptionMaximum else { return }
        throw CreditsError(.invalidInput, "description must have at most \(descriptionMaximum) characters")
    }

    /// A spend's metadata: a JSON object at most 8 levels deep and 8 KiB serialised; returned serialised.
    @discardableResult
    public static func checkMetadata(_ value: JSONValue) throws -> String {
        guard case .object = value else { throw CreditsError(.invalidInput, "metadata must be a JSON object") }
        func depth(_ value: JSONValue) -> Int {
            switch value {
            case .array(let items): 1 + (items.map(depth).max() ?? 0)
            case .object(let fields): 1 + (fields.values.map(depth).max() ?? 0)
            default: 0
            }
        }
        guard depth(value) <= metadataMaximumDepth else {
            throw CreditsError(.invalidInput, "metadata must be at most \(metadataMaximumDepth) levels deep (objects and arrays within each other)")
        }
        let text = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        try checkMetadataSize(text)
        return text
    }

    /// Serialised metadata of at most 8 KiB.
    public static func checkMetadataSize(_ json: String?) throws {
        guard let json, json.utf8.count > metadataMaximumBytes else { return }
        throw CreditsError(.invalidInput, "metadata must be at most \(metadataMaximumBytes) bytes as JSON (it was \(json.utf8.count))")
    }

    /// An ISO 8601 time such as 2026-12-31T23:59:59Z, as `field` (named in the error) gives it.
    public static func time(_ text: String, field: String) throws -> Date {
        guard let date = ISO8601DateFormatter().date(from: text) else {
            throw CreditsError(.invalidInput, "\(field) must be an ISO 8601 time such as 2026-12-31T23:59:59Z")
        }
        return date
    }
}
