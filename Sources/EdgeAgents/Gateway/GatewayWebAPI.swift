import AsyncHTTPClient
import Foundation
import LPRModel
import NIOCore
import NIOHTTP1

/// The site gateway's local web API, over HTTP with async-http-client.
public struct GatewayWebAPI: Sendable {
    /// `http://host:port`, without a trailing slash.
    public let baseURL: String
    /// How long one call may take, connection included.
    public let timeout: Duration
    private let http: HTTPClient

    /// The largest answer read.
    static let maximumBodySize = 4 * 1024 * 1024

    public init(host: String, port: Int, timeout: Duration = .seconds(10), http: HTTPClient) {
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        self.baseURL = "http://\(bracketed):\(port)"
        self.timeout = timeout
        self.http = http
    }

    /// What one call answered.
    public struct Answer: Sendable {
        public var status: Int
        public var body: [UInt8]
        public var isSuccess: Bool { (200..<300).contains(status) }
    }

    /// Calls `path` (with its query) and reads the whole answer.
    public func call(_ method: HTTPMethod, _ path: String) async throws(GatewayAPIError) -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if method == .POST { request.body = .bytes(ByteBuffer()) }
        let timeout = TimeAmount(self.timeout)
        do {
            let response = try await http.execute(request, timeout: timeout)
            let body = try await response.body.collect(upTo: Self.maximumBodySize)
            return Answer(status: Int(response.status.code), body: Array(body.readableBytesView))
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            throw GatewayAPIError("\(method) \(path) timed out after \(self.timeout)")
        } catch {
            throw GatewayAPIError("\(method) \(path) failed: \(Self.describe(error))")
        }
    }

    /// Calls `path` and parses a 2xx JSON answer.
    public func json(_ method: HTTPMethod, _ path: String) async throws(GatewayAPIError) -> JSONValue {
        let answer = try await call(method, path)
        guard answer.isSuccess else {
            throw GatewayAPIError("\(method) \(path) answered HTTP \(answer.status): \(Self.excerpt(answer.body))")
        }
        do {
            return try JSONValue.parse(answer.body)
        } catch {
            throw GatewayAPIError("\(method) \(path) answered something other than JSON (\(error)): \(Self.excerpt(answer.body))")
        }
    }

    /// The gateway's serial number: `serialNumber` from `GET /api/crypto`.
    public func serialNumber() async throws(GatewayAPIError) -> String {
        let crypto = try await json(.GET, "/api/crypto")
        guard
            let serial = crypto["serialNumber"]?.stringValue
                ?? crypto["serialNumber"].flatMap({ value -> String? in
                    if case .number(let text) = value { return text }
                    return nil
                }), !serial.isEmpty
        else {
            throw GatewayAPIError("GET /api/crypto answered without a serialNumber: \(crypto.jsonText.prefix(200))")
        }
        return serial
    }

    /// A new token from `POST /api/jwt/create`: JSON with the token in `jwt`, or the bare token as text.
    public func createJWT() async throws(GatewayAPIError) -> String {
        let answer = try await call(.POST, "/api/jwt/create")
        guard answer.isSuccess else {
            throw GatewayAPIError("POST /api/jwt/create answered HTTP \(answer.status): \(Self.excerpt(answer.body))")
        }
        let token: String?
        if let document = try? JSONValue.parse(answer.body) {
            switch document {
            case .object: token = document["jwt"]?.stringValue ?? document["token"]?.stringValue
            case .string(let text): token = text
            default: token = nil
            }
        } else {
            token = String(decoding: answer.body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard let token, !token.isEmpty, !token.contains(where: \.isWhitespace) else {
            throw GatewayAPIError("POST /api/jwt/create answered no token: \(Self.excerpt(answer.body))")
        }
        return token
    }

    /// Carries out a Modbus request: the API's JSON answer, or `{"success": false, "error": ...}`.
    public func modbus(_ request: ModbusRequest) async -> JSONValue {
        do {
            return try await json(.GET, request.pathAndQuery)
        } catch {
            return GatewayMessages.failure("\(error)")
        }
    }

    static func excerpt(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(200), as: UTF8.self)
        return text.isEmpty ? "(empty)" : text
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError { return "\(error)" }
        return String(describing: error)
    }
}

/// A web API call that failed: no connection, a timeout, or an answer we cannot use.
public struct GatewayAPIError: Error, Sendable, Hashable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
