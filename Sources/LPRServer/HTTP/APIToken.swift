import Foundation
import HTTPTypes
import Hummingbird
import LPRModel

/// A bearer token the REST API accepts, and what it may do.
public struct APIToken: Sendable, Hashable {
    public enum Access: String, Sendable, Hashable {
        /// Everything.
        case admin
        /// `GET` only: a write is 403.
        case readOnly = "read-only"
    }

    public var token: String
    public var access: Access

    public init(_ token: String, access: Access) {
        self.token = token
        self.access = access
    }

    /// A new random token: 32 random bytes, hex, after a prefix that says its kind
    /// (`dbadm_` admin, `dbro_` read-only), so a token found in a log tells what it opens.
    public static func generate(access: Access) -> APIToken {
        var generator = SystemRandomNumberGenerator()
        let hex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        return APIToken((access == .admin ? "dbadm_" : "dbro_") + hex, access: access)
    }
}

/// Lets a request under `/api` through only with `Authorization: Bearer <token>` of a known
/// token: none or an unknown one is 401, a read-only token on anything but `GET`/`HEAD` is 403.
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: [APIToken]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let header = request.headers[.authorization] else {
            throw APIError.unauthorized("missing Authorization: Bearer <token> (the admin token is in the data folder's api-token file)")
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else {
            throw APIError.unauthorized("the Authorization header must be Bearer <token>")
        }
        let presented = Array(parts[1].trimmingCharacters(in: .whitespaces).utf8)
        guard let token = tokens.first(where: { Self.equalInConstantTime(Array($0.token.utf8), presented) }) else {
            throw APIError.unauthorized("unknown token")
        }
        if token.access == .readOnly, request.method != .get, request.method != .head {
            throw APIError(
                .forbidden,
                code: "forbidden",
                message: "a read-only token cannot \(request.method.rawValue) \(request.uri.path)",
                field: "Authorization"
            )
        }
        return try await next(request, context)
    }

    /// Compares without stopping at the first difference, so timing does not leak a prefix.
    static func equalInConstantTime(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for index in 0..<max(a.count, b.count) {
            let x = index < a.count ? a[index] : 0
            let y = index < b.count ? b[index] : 0
            difference |= x ^ y
        }
        return difference == 0 && a.count == b.count
    }
}

/// Turns every error a route throws into a JSON error response: the API's own ``APIError``s,
/// Hummingbird's (unknown route, body too large), a body that did not validate, and anything
/// else as a 500 that is logged (the process carries on).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as HTTPError where error.status == .notFound && !APIRoutes.allowedMethods(for: request.uri.path).isEmpty {
            let allowed = APIRoutes.allowedMethods(for: request.uri.path)
            return try APIError(
                .methodNotAllowed,
                code: "method_not_allowed",
                message: "\(request.uri.path) answers \(allowed.joined(separator: ", ")), not \(request.method.rawValue)",
                headers: [.allow: allowed.joined(separator: ", ")]
            ).response(from: request, context: context)
        } catch let error as HTTPError {
            let code = error.status.code == 404 ? "not_found" : error.status.reasonPhrase.lowercased().replacingOccurrences(of: " ", with: "_")
            var message = error.body ?? error.status.reasonPhrase
            if error.status.code == 404 { message = "no such route: \(request.method.rawValue) \(request.uri.path)" }
            var apiError = APIError(error.status, code: code, message: message)
            apiError.headers = error.headers
            apiError.headers[.contentType] = nil
            apiError.headers[.contentLength] = nil
            return try apiError.response(from: request, context: context)
        } catch let error as MessageValidationError {
            return try APIError.invalid(error).response(from: request, context: context)
        } catch let error as LPRServerError {
            return try APIError.badRequest("camera_id", "\(error)").response(from: request, context: context)
        } catch {
            context.logger.error("request failed", metadata: ["http.path": "\(request.uri.path)", "lpr.error": "\(error)"])
            return try APIError(.internalServerError, code: "internal", message: "the server could not answer: \(error)").response(
                from: request,
                context: context
            )
        }
    }
}
