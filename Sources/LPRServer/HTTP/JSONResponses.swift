import Foundation
import HTTPTypes
import Hummingbird
import LPRModel
import NIOCore

extension Response {
    /// A JSON response, members in the order they were built.
    static func jsonValue(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        let bytes = value.jsonBytes
        return Response(
            status: status,
            headers: [.contentType: "application/json; charset=utf-8", .contentLength: "\(bytes.count)"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes))
        )
    }

    static func json(_ object: JSONObject, status: HTTPResponse.Status = .ok) -> Response {
        jsonValue(.object(object), status: status)
    }
}

extension Request {
    /// The body as a JSON object; a body that is not one is a 400 naming why.
    func jsonObject(limit: Int = 1 << 20) async throws -> JSONObject {
        let buffer = try await body.collect(upTo: limit)
        guard buffer.readableBytes > 0 else { throw APIError.badRequest("body", "expected a JSON object, found nothing") }
        do {
            return try JSONObject.parse(buffer.readableBytesView)
        } catch {
            throw APIError.invalid(error)
        }
    }
}

/// Reads query parameters, each error a 400 naming the parameter.
struct QueryParameters {
    let values: [String: String]

    init(_ request: Request) {
        var values: [String: String] = [:]
        for (key, value) in request.uri.queryParameters where values[String(key)] == nil {
            values[String(key)] = String(value)
        }
        self.values = values
    }

    /// A parameter's text; an empty one counts as absent.
    func string(_ name: String) -> String? {
        guard let value = values[name], !value.isEmpty else { return nil }
        return value
    }

    /// A typed parameter's text: absent is nil, present but empty is an error.
    func typed(_ name: String, expected: String) throws -> String? {
        guard let value = values[name] else { return nil }
        guard !value.isEmpty else { throw APIError.badRequest(name, "is empty; expected \(expected)") }
        return value
    }

    func integer(_ name: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = try typed(name, expected: "an integer") else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw APIError.badRequest(name, "expected an integer from \(range.lowerBound) to \(range.upperBound), found \"\(text)\"")
        }
        return value
    }

    func bool(_ name: String) throws -> Bool? {
        guard let text = try typed(name, expected: "true or false") else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw APIError.badRequest(name, "expected true or false, found \"\(text)\"")
        }
    }

    /// An RFC 3339 timestamp (a `+` left unescaped in the query reads as a space and is taken back).
    func date(_ name: String) throws -> Date? {
        guard let text = try typed(name, expected: "an RFC 3339 timestamp") else { return nil }
        guard let date = RFC3339.date(from: text) ?? RFC3339.date(from: text.replacingOccurrences(of: " ", with: "+")) else {
            throw APIError.badRequest(name, "expected an RFC 3339 timestamp such as 2026-12-06T10:00:00Z, found \"\(text)\"")
        }
        return date
    }

    func oneOf(_ name: String, _ allowed: [String]) throws -> String? {
        guard let text = try typed(name, expected: "one of \(allowed.joined(separator: ", "))") else { return nil }
        guard allowed.contains(text) else {
            throw APIError.badRequest(name, "expected one of \(allowed.joined(separator: ", ")), found \"\(text)\"")
        }
        return text
    }
}

extension JSONValue {
    /// A timestamp, or null.
    static func time(_ date: Date?) -> JSONValue { date.map { .timestamp($0) } ?? .null }

    /// JSON text stored by the server, parsed back; null when missing or unreadable.
    static func stored(_ text: String?) -> JSONValue {
        guard let text, let value = try? JSONValue.parse(text) else { return .null }
        return value
    }
}
