import AsyncHTTPClient
import Foundation
import JWTKit
import Logging
import NIOCore
import TallyCredits

/// The product's own signed session tokens (`tally serve --trust-jwt`): its end users call Tally with the JWT its
/// login gave them, and Tally takes the `sub` claim as the external id of a user customer. The signature (by a key of
/// the product's JWKS, or the shared secret, HS256), the expiry, the issuer and the audience are all checked; the
/// algorithm is the key's, never the token's choice.
public struct ProductTokenSettings: Sendable {
    public enum Keys: Sendable, Equatable {
        /// A JWKS fetched from this URL (and again when a token names a key it does not have, at most once a minute).
        case jwks(URL)
        /// A file: a JWKS (JSON with "keys"), or the shared secret itself.
        case file(String)
    }

    public var keys: Keys
    public var issuer: String
    public var audience: String
    /// How far a token's expiry and not-before may be off from this server's clock.
    public var leeway: TimeInterval = 60
    /// The least time between two fetches of the JWKS for a key it lacks (a flood of tokens naming unknown keys
    /// must not become a flood of fetches).
    public var refetchInterval: TimeInterval = 60

    public init(keys: Keys, issuer: String, audience: String) {
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
    }

    /// `--trust-jwt`'s value: an http(s) URL of a JWKS, or the path of a file.
    public static func keys(from text: String) -> Keys {
        if let url = URL(string: text), ["http", "https"].contains(url.scheme?.lowercased() ?? "") { return .jwks(url) }
        return .file(text)
    }
}

/// What Tally reads of a product's token.
struct ProductClaims: JWTPayload {
    var sub: SubjectClaim
    var exp: ExpirationClaim
    var nbf: NotBeforeClaim?
    var iss: IssuerClaim
    var aud: AudienceClaim

    func verify(using algorithm: some JWTAlgorithm) throws {}
}

/// Verifies product tokens, with the keys loaded once and a JWKS refreshed when a token names a key not in it.
public actor ProductTokens {
    let settings: ProductTokenSettings
    let logger: Logger
    private var keys: JWTKeyCollection?
    /// The key ids of the JWKS loaded (nil for a shared secret).
    private var kids: Set<String>?
    private var fetchedAt: Date = .distantPast

    init(_ settings: ProductTokenSettings, logger: Logger) {
        self.settings = settings
        self.logger = logger
    }

    /// Whether `token` has a JWT's shape (three base64url parts, the first a JSON object): only such a token is
    /// taken for one.
    static func looksLikeJWT(_ token: String) -> Bool {
        token.hasPrefix("eyJ") && token.utf8.count(where: { $0 == UInt8(ascii: ".") }) == 2
    }

    /// The external id (`sub`) of a token that verifies; unauthenticated, saying why, for any other.
    func subject(of token: String) async throws -> String {
        var keys = try await loaded()
        // A key the product added since the JWKS was read: read it again (at most every refetchInterval); a key it
        // still lacks is refused here, never tried against another key.
        if let kid = Self.kid(of: token), let known = kids, !known.contains(kid) {
            guard case .jwks = settings.keys, Date().timeIntervalSince(fetchedAt) >= settings.refetchInterval else {
                throw refused("it names a key (kid \(kid.prefix(40))) the product's JWKS does not have")
            }
            self.keys = nil
            keys = try await loaded()
            guard kids?.contains(kid) == true else { throw refused("it names a key (kid \(kid.prefix(40))) the product's JWKS does not have") }
        }
        let claims = try await verified(token, keys: keys)
        let now = Date()
        guard claims.exp.value.addingTimeInterval(settings.leeway) > now else { throw refused("it expired at \(ISO8601DateFormatter().string(from: claims.exp.value))") }
        if let nbf = claims.nbf, nbf.value.addingTimeInterval(-settings.leeway) > now { throw refused("it is not valid before \(ISO8601DateFormatter().string(from: nbf.value))") }
        guard claims.iss.value == settings.issuer else { throw refused("its issuer is not \(settings.issuer)") }
        guard claims.aud.value.contains(settings.audience) else { throw refused("its audience does not include \(settings.audience)") }
        guard !claims.sub.value.isEmpty else { throw refused("it has no subject (sub)") }
        return claims.sub.value
    }

    /// The `kid` of the token's header, if it names one.
    static func kid(of token: String) -> String? {
        guard var part = token.split(separator: ".").first.map(String.init) else { return nil }
        part = part.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while part.count % 4 != 0 { part += "=" }
        guard let data = Data(base64Encoded: part), let header = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        return header["kid"] as? String
    }

    private func verified(_ token: String, keys: JWTKeyCollection) async throws -> ProductClaims {
        do {
            return try await keys.verify(token, as: ProductClaims.self)
        } catch let error as JWTError {
            throw refused(Self.reason(error))
        } catch let error as DecodingError {
            throw refused("it lacks a claim Tally needs (sub, exp, iss and aud): \(Self.describe(error))")
        }
    }

    static func reason(_ error: JWTError) -> String {
        switch error.errorType {
        case .signatureVerificationFailed: "its signature does not verify with the product's keys"
        case .missingKIDHeader: "it names no key (kid) and the product's keys are several"
        case .claimVerificationFailure: "a claim does not hold: \(error.reason ?? "")"
        case .malformedToken where (error.reason ?? "").contains("not found"):
            "it lacks a claim Tally needs (sub, exp, iss and aud): \(error.reason ?? "")"
        default: "it is not a JWT signed by the product's keys (\(error.reason ?? "\(error.errorType)"))"
        }
    }

    static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "no \(key.stringValue)"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            context.codingPath.map(\.stringValue).joined(separator: ".")
        @unknown default: "\(error)"
        }
    }

    func refused(_ why: String) -> CreditsError {
        CreditsError(.unauthenticated, "the product's token was refused: \(why)")
    }

    private func loaded() async throws -> JWTKeyCollection {
        if let keys { return keys }
        let collection = JWTKeyCollection()
        switch settings.keys {
        case .jwks(let url):
            fetchedAt = Date()
            let json = try await Self.fetch(url, logger: logger)
            do {
                try await collection.add(jwksJSON: json)
                kids = Self.kids(in: json)
            } catch {
                throw CreditsError(.productKeysUnavailable, "the product's JWKS at \(url.absoluteString) is not a JWKS Tally can read: \(error)")
            }
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CreditsError(.productKeysUnavailable, "the product's key file \(path) cannot be read")
            }
            let text = String(decoding: data, as: UTF8.self)
            if let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any], object["keys"] != nil {
                try await collection.add(jwksJSON: text)
                kids = Self.kids(in: text)
            } else {
                let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
                await collection.add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256)
            }
        }
        keys = collection
        return collection
    }

    static func kids(in jwks: String) -> Set<String> {
        let object = (try? JSONSerialization.jsonObject(with: Data(jwks.utf8))) as? [String: Any]
        return Set((object?["keys"] as? [[String: Any]] ?? []).compactMap { $0["kid"] as? String })
    }

    /// The JWKS, through async-http-client with a 10 s deadline; unavailable (503) when it cannot be had.
    static func fetch(_ url: URL, logger: Logger) async throws -> String {
        do {
            var request = HTTPClientRequest(url: url.absoluteString)
            request.headers.add(name: "Accept", value: "application/json")
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            guard response.status == .ok else {
                throw CreditsError(.productKeysUnavailable, "the product's JWKS at \(url.absoluteString) answered \(response.status.code)")
            }
            return String(buffer: body)
        } catch let error as CreditsError {
            logger.warning("the product's JWKS could not be fetched", metadata: ["url": "\(url.absoluteString)", "error": "\(error.message)"])
            throw error
        } catch {
            logger.warning("the product's JWKS could not be fetched", metadata: ["url": "\(url.absoluteString)", "error": "\(error)"])
            throw CreditsError(.productKeysUnavailable, "the product's JWKS at \(url.absoluteString) cannot be fetched: \(error)")
        }
    }
}
