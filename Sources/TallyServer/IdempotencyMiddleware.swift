import Foundation
import Synchronization
import HTTPTypes
import Hummingbird
import HummingbirdAuth
import TallyCredits
import TallyPostgres

extension HTTPField.Name {
    static let idempotencyKey = Self("Idempotency-Key")!
    static let idempotentReplayed = Self("Idempotent-Replayed")!
}

/// `Idempotency-Key` on any authenticated POST: the first answer is stored with the request's effects, in the
/// same transaction, and a retry with the same key and body gets it back with `Idempotent-Replayed: true`.
/// The same key with another body, or while the first request still runs, is a 409 problem. Keys are scoped
/// to the credential (API key or session) that sent them. It sits behind the routes' authenticator, so the
/// credential is checked first: a replay needs it valid now (a revoked key or an ended session gets 401,
/// never the stored answer), and an admin route's policy runs before it.
/// Answers are not stored when the credential was refused (401) or the server failed (5xx); those requests
/// may be retried with the same key. No secret is stored: a created API key's answer is kept without the
/// key, and the auth routes (which answer with session tokens) do not have this middleware.
///
/// Routes that are one account operation (`forAccountOperations`: the spend, holds, captures and releases) do not
/// open a transaction: the operation carries the key into its account's batch like any other
/// (`IdempotencyClaim`), and the outcome kept there is answered again, by the same code, on a retry.
struct IdempotencyMiddleware: RouterMiddleware {
    typealias Context = TallyRequestContext

    let idempotency: Idempotency
    /// Whether the routes are each one account operation (batched, the key kept by `tally_apply`).
    var accountOperations = false

    /// The same middleware for routes that are one account operation each.
    var forAccountOperations: IdempotencyMiddleware {
        var middleware = self
        middleware.accountOperations = true
        return middleware
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard request.method == .post, let key = request.headers[.idempotencyKey] else {
            return try await next(request, context)
        }
        guard let caller = context.identity else { throw CreditsError(.unauthenticated, Credential.either.missing) }
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: Request.maximumBody)
        } catch {
            throw Problem.bodyTooLarge
        }
        var hashed = Data("\(request.method) \(request.uri.path)\n".utf8)
        hashed.append(Self.canonical(Data(buffer: body)))
        if accountOperations {
            let claim = try idempotency.claim(
                scope: caller.credentialHash, key: key, method: request.method.rawValue, path: request.uri.path, requestHash: sha256Hex(hashed))
            var context = context
            context.idempotency = claim
            var response: Response
            do {
                response = try await next(request, context)
            } catch let kept as IdempotencyAnswerKept {
                return Self.response(try await idempotency.keptAnswer(for: kept.claim, logger: context.logger), replayed: true)
            } catch let error where claim.replayed {
                response = try Problem.from(error, request: request, logger: context.logger).response(from: request, context: context)
            }
            if claim.replayed { response.headers[.idempotentReplayed] = "true" }
            return response
        }
        let outcome = try await idempotency.perform(
            scope: caller.credentialHash, key: key, method: request.method.rawValue, path: request.uri.path, requestHash: sha256Hex(hashed),
            keep: { $0.status < 500 && $0.status != 401 },
            storing: Self.withoutSecrets,
            logger: context.logger
        ) { [request] transaction in
            // The route's work joins the transaction that stores its answer.
            var context = context
            context.transaction = transaction
            let response: Response
            do {
                response = try await next(request, context)
            } catch {
                response = try Problem.from(error, request: request, logger: context.logger).response(from: request, context: context)
            }
            return try await Self.store(response)
        }
        switch outcome {
        case .fresh(let stored):
            return Self.response(stored, replayed: false)
        case .replayed(let stored):
            return Self.response(stored, replayed: true)
        }
    }

    /// The answer as stored: a created API key's or service key's `key`, or a webhook's signing `secret`, is
    /// replaced by a note, since a secret is shown once and never kept in the clear.
    @Sendable static func withoutSecrets(_ stored: StoredResponse) -> StoredResponse {
        guard var object = (try? JSONSerialization.jsonObject(with: Data(stored.body))) as? [String: Any] else { return stored }
        if let key = object["key"] as? String, key.hasPrefix("tly_") {
            object["key"] = nil
        } else if let secret = object["secret"] as? String, secret.hasPrefix("whsec_") {
            object["secret"] = nil
        } else {
            return stored
        }
        object["key_shown_once"] = "the secret was shown in the first answer only and is not kept; if it was lost, revoke the key (or rotate the webhook's secret) and use the new one"
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return stored }
        var redacted = stored
        redacted.body = [UInt8](data)
        return redacted
    }

    /// The body as compared between a request and its retry: JSON with its keys sorted, so the same fields
    /// in another order are the same request; anything else byte for byte.
    static func canonical(_ body: Data) -> Data {
        guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]),
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed]) else { return body }
        return data
    }

    static func store(_ response: Response) async throws -> StoredResponse {
        let sink = Sink()
        try await response.body.write(CollectingWriter(sink: sink))
        return StoredResponse(status: response.status.code, contentType: response.headers[.contentType], body: sink.buffer.withLock { Array(buffer: $0) })
    }

    static func response(_ stored: StoredResponse, replayed: Bool) -> Response {
        var headers = HTTPFields()
        if let contentType = stored.contentType { headers[.contentType] = contentType }
        if replayed { headers[.idempotentReplayed] = "true" }
        return Response(status: .init(code: stored.status), headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: stored.body)))
    }

    final class Sink: Sendable {
        let buffer = Mutex(ByteBuffer())
    }

    struct CollectingWriter: ResponseBodyWriter {
        let sink: Sink

        mutating func write(_ buffer: ByteBuffer) async throws {
            var buffer = buffer
            sink.buffer.withLock { $0.writeBuffer(&buffer) }
        }

        consuming func finish(_ trailingHeaders: HTTPFields?) async throws {}
    }
}
