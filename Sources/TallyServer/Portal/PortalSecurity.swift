import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import TallyCredits
import TallyPostgres

/// The portal's browser security: the session in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when served over
/// HTTPS), a CSRF token on every form (derived from the session, or for the forms before sign-in a random cookie
/// the form must repeat), and headers that keep the pages out of frames, caches and other origins' scripts.
enum PortalSecurity {
    static let sessionCookie = "tally_session"
    /// Before sign-in: the random token the sign-in, sign-up and confirmation forms repeat.
    static let formCookie = "tally_form"
    /// A key just created, on its way from the POST to the page that shows it once (never stored by Tally).
    static let newKeyCookie = "tally_new_key"

    /// No inline script or style, nothing from elsewhere, no frames.
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

    /// The CSRF token of a session: a hash of its token, which only the browser holding the cookie knows (the
    /// page carries the hash, from which the session cannot be recovered).
    static func csrfToken(forSession token: String) -> String {
        base64url(Data(SHA256.hash(data: Data("tally-portal-csrf:\(token)".utf8))))
    }

    static func base64url(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// A new random token for the forms before sign-in.
    static func formToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return base64url(Data((0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }))
    }

    /// Equal, in time that does not depend on where they differ.
    static func same(_ a: String, _ b: String) -> Bool {
        let a = Array(a.utf8), b = Array(b.utf8)
        guard a.count == b.count, !a.isEmpty else { return false }
        return zip(a, b).reduce(UInt8(0)) { $0 | ($1.0 ^ $1.1) } == 0
    }

    static func cookie(_ name: String, _ value: String, secure: Bool, maxAge: Int? = nil, path: String = "/", sameSite: Cookie.SameSite = .lax) -> Cookie {
        Cookie(name: name, value: value, maxAge: maxAge, path: path, secure: secure, httpOnly: true, sameSite: sameSite)
    }

    /// A cookie's removal.
    static func expired(_ name: String, secure: Bool, path: String = "/") -> Cookie {
        Cookie(name: name, value: "", maxAge: 0, path: path, secure: secure, httpOnly: true, sameSite: .lax)
    }
}

/// A form's fields (`application/x-www-form-urlencoded`), at most 64 KiB.
struct FormFields: Sendable {
    var values: [String: String]

    subscript(_ name: String) -> String? { values[name] }

    /// The trimmed value, nil when empty.
    func text(_ name: String) -> String? {
        guard let value = values[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty else { return nil }
        return value
    }

    static func read(_ request: inout Request) async throws -> FormFields {
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: 64 * 1024)
        } catch {
            throw PortalError(.contentTooLarge, "The form is too large.")
        }
        return FormFields(values: parse(String(buffer: buffer)))
    }

    static func parse(_ text: String) -> [String: String] {
        var values: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { $0.replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            guard let name = parts.first, !name.isEmpty else { continue }
            values[name] = parts.count > 1 ? parts[1].replacingOccurrences(of: "\u{0}", with: "") : ""
        }
        return values
    }
}

/// What a portal page answers instead of itself: a status and what to tell the person.
struct PortalError: Error {
    var status: HTTPResponse.Status
    var detail: String

    init(_ status: HTTPResponse.Status, _ detail: String) {
        self.status = status
        self.detail = detail
    }

    static let missingToken = PortalError(.forbidden, "This form has expired or did not come from this portal (its security token is missing or wrong). Go back, reload the page and try again.")
}

/// The portal's headers on every answer under it (pages, assets, errors): the content security policy, no
/// framing, no referrer across origins, no MIME sniffing.
struct PortalHeadersMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] = PortalSecurity.contentSecurityPolicy
        response.headers[HTTPField.Name("X-Frame-Options")!] = "DENY"
        response.headers[HTTPField.Name("Referrer-Policy")!] = "same-origin"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.cacheControl] = "no-store"
        return response
    }
}
