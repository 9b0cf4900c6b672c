import HTTPTypes
import Hummingbird
import LPRModel

/// What the REST API answers when it cannot do what was asked: a status and a JSON body that
/// names the field at fault, `{"error": "bad_request", "field": "limit", "message": "...", "errors": [...]}`.
public struct APIError: HTTPResponseError, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    /// A short machine-readable name: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, ...
    public var code: String
    public var message: String
    /// The request field at fault (a query parameter, a body member's path, a path parameter).
    public var field: String?
    /// Every field at fault, when the body had several.
    public var errors: [FieldError]
    /// Members added to the body.
    public var extra: JSONObject
    public var headers: HTTPFields

    public init(
        _ status: HTTPResponse.Status,
        code: String,
        message: String,
        field: String? = nil,
        errors: [FieldError] = [],
        extra: JSONObject = [:],
        headers: HTTPFields = [:]
    ) {
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = errors
        self.extra = extra
        self.headers = headers
    }

    /// 400 for one request field.
    public static func badRequest(_ field: String, _ reason: String) -> APIError {
        APIError(.badRequest, code: "bad_request", message: "\(field): \(reason)", field: field, errors: [FieldError(path: field, reason: reason)])
    }

    /// 400 for a body that did not validate, naming every field.
    public static func invalid(_ error: MessageValidationError) -> APIError {
        let errors = error.errors
        let field = errors.first.map { $0.path.isEmpty ? "body" : $0.path }
        return APIError(
            .badRequest,
            code: "bad_request",
            message: errors.map { $0.path.isEmpty ? "body: \($0.reason)" : $0.description }.joined(separator: "; "),
            field: field,
            errors: errors
        )
    }

    /// 404 for something named in the path.
    public static func notFound(_ field: String, _ message: String) -> APIError {
        APIError(.notFound, code: "not_found", message: message, field: field)
    }

    public static func unauthorized(_ message: String) -> APIError {
        APIError(
            .unauthorized,
            code: "unauthorized",
            message: message,
            field: "Authorization",
            headers: [.wwwAuthenticate: "Bearer realm=\"databus\""]
        )
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    /// The body as JSON.
    public var json: JSONObject {
        var body: JSONObject = ["error": .string(code), "message": .string(message)]
        if let field { body["field"] = .string(field) }
        if !errors.isEmpty { body["errors"] = .array(errors.map(\.json)) }
        for (key, value) in extra { body[key] = value }
        return body
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = Response.json(json, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }
}
