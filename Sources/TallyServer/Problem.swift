import Foundation
import Synchronization
import Hummingbird
import Logging
import TallyCredits
import TallyPostgres

/// An RFC 9457 problem: every error Tally answers with, as `application/problem+json`.
/// `type` is stable (scripts and clients match on it); `detail` says what happened and what to do.
public struct Problem: Error, HTTPResponseError, Sendable, Codable, Equatable {
    public var type: String
    public var title: String
    public var statusCode: Int
    public var detail: String
    /// For a 405: the methods the path has, sent as the `Allow` header.
    public var allow: String? = nil
    /// For a 503 or 429: seconds to wait before retrying, sent as `Retry-After`.
    public var retryAfter: Int? = nil

    enum CodingKeys: String, CodingKey {
        case type, title, detail
        case statusCode = "status"
    }

    public init(_ status: HTTPResponse.Status, type: String, title: String, detail: String) {
        // A URI reference relative to the API, as RFC 9457 allows: stable, and a place to document it.
        self.type = "/problems/" + type
        self.title = title
        self.statusCode = status.code
        self.detail = detail
    }

    public var status: HTTPResponse.Status { .init(code: statusCode) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        response
    }

    /// The answer: the problem as JSON, with `Allow` and `Retry-After` when set.
    public var response: Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Strings and an integer: encoding cannot fail.
        let data = (try? encoder.encode(self)) ?? Data()
        var headers: HTTPFields = [.contentType: "application/problem+json", .cacheControl: "no-store", .xContentTypeOptions: "nosniff"]
        if let allow { headers[.allow] = allow }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The status each domain error answers with.
    public init(_ error: CreditsError) {
        let status: HTTPResponse.Status = switch error.code {
        case .invalidInput: .badRequest
        case .emailTaken: .conflict
        case .invalidCredentials, .unauthenticated: .unauthorized
        case .forbidden, .emailUnverified: .forbidden
        case .notFound: .notFound
        case .conflict, .idempotencyKeyReused, .idempotencyInProgress: .conflict
        case .insufficientCredits, .keyLimitExceeded: HTTPResponse.Status(code: 402, reasonPhrase: "Payment Required")
        case .databaseUnavailable, .serverBusy, .productKeysUnavailable: .serviceUnavailable
        case .tooManyAttempts: .tooManyRequests
        }
        self.init(status, type: error.code.rawValue, title: status.reasonPhrase, detail: error.message)
        retryAfter = error.retryAfter ?? (error.code == .databaseUnavailable ? 1 : error.code == .productKeysUnavailable ? 5 : nil)
    }

    /// A body over `Request.maximumBody`.
    static let bodyTooLarge = Problem(.contentTooLarge, type: "body-too-large", title: "Body too large", detail: "the request body is over 1 MiB")

    public static func notFound(_ path: String) -> Problem {
        Problem(.notFound, type: "not-found", title: "Not found", detail: "no route for \(path); see GET /openapi.json for the API")
    }
}

/// The one place errors become HTTP answers: Hummingbird's errors keep their status as a problem, anything
/// else is logged and answered as a 500 problem without internals.
public struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The router's routes, for a 405 with `Allow` when a path exists under other methods.
    let routes: RouteTable

    public init(routes: RouteTable = RouteTable()) {
        self.routes = routes
    }

    public func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let methods = routes.methods(for: request.uri.path)
            guard !methods.isEmpty, !methods.contains(request.method.rawValue) else {
                throw Problem.from(error, request: request, logger: context.logger)
            }
            var problem = Problem(
                .methodNotAllowed, type: "method-not-allowed", title: "Method not allowed",
                detail: "\(request.uri.path) answers \(methods.joined(separator: ", ")), not \(request.method.rawValue)")
            problem.allow = methods.joined(separator: ", ")
            throw problem
        } catch {
            throw Problem.from(error, request: request, logger: context.logger)
        }
    }
}

/// Route paths and their methods, filled once the router has its routes.
public final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], method: String)]>([])

    public init() {}

    /// Keeps `routes` (method and path as the router describes them, `{name}` or `:name` for parameters).
    public func set(_ routes: [(method: String, path: String)]) {
        let table = routes.map { (segments: $0.path.split(separator: "/"), method: $0.method) }
        self.routes.withLock { $0 = table }
    }

    /// The methods of the routes whose path matches `path`, sorted.
    public func methods(for path: String) -> [String] {
        let parts = path.split(separator: "/")
        let matching = routes.withLock { routes in
            routes.filter { route in
                route.segments.count == parts.count && zip(route.segments, parts).allSatisfy { pattern, part in
                    pattern == part || pattern.hasPrefix(":") || (pattern.hasPrefix("{") && pattern.hasSuffix("}"))
                }
            }.map(\.method)
        }
        return Array(Set(matching)).sorted()
    }
}

extension Problem {
    /// The problem any error answers with: Tally's own keep their status, Hummingbird's keep theirs, anything
    /// else is logged and becomes a 500 without internals.
    static func from(_ error: any Error, request: Request, logger: Logger) -> Problem {
        switch error {
        case let problem as Problem:
            return problem
        case let error as CreditsError:
            return Problem(error)
        case let error as TallyPostgresError where error.code == .databaseUnavailable:
            var problem = Problem(.serviceUnavailable, type: error.code.rawValue, title: "Service Unavailable", detail: error.message)
            problem.retryAfter = 1
            return problem
        case let error where DatabaseFailure.isConnectionLoss(error):
            logger.warning("database connection lost during a request", metadata: ["error": "\(describeForLog(error))"])
            var problem = Problem(
                .serviceUnavailable, type: "database-unavailable", title: "Service Unavailable",
                detail: "the connection to the database was lost while this request ran, so it may or may not have taken effect; retrying with the same Idempotency-Key is safe (it gives the first outcome, or runs once)")
            problem.retryAfter = 1
            return problem
        case let error as PreparedStatementLost:
            logger.warning("a prepared statement was lost (a pooler in front of the database?)", metadata: ["statement": "\(error.statement)"])
            var problem = Problem(.serviceUnavailable, type: "database-unavailable", title: "Service Unavailable", detail: error.description)
            problem.retryAfter = 1
            return problem
        case let error as HTTPError:
            if error.status == .notFound {
                return Problem.notFound(request.uri.path)
            }
            return Problem(error.status, type: "http-\(error.status.code)", title: error.status.reasonPhrase, detail: error.body ?? error.status.reasonPhrase)
        default:
            logger.error("unhandled error", metadata: ["error": "\(describeForLog(error))", "error_type": "\(Swift.type(of: error))"])
            return Problem(.internalServerError, type: "internal", title: "Internal error", detail: "the server failed to answer; the error is logged")
        }
    }
}
