import DatabusTestSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import LPRModel
import LPRServer
import NIOCore
import Testing

/// How a test reaches the application: through the router alone, or over real HTTP on loopback.
enum HTTPFramework: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case router
    case live

    var setup: TestingSetup { self == .router ? .router : .live }
    var testDescription: String { self == .router ? "app.test(.router)" : "app.test(.live)" }
}

enum TestTokens {
    static let admin = "dbadm_" + String(repeating: "a1", count: 32)
    static let readOnly = "dbro_" + String(repeating: "b2", count: 32)
    static let all = [APIToken(admin, access: .admin), APIToken(readOnly, access: .readOnly)]
}

/// The HTTP configuration tests use: a free port, the test tokens, fixed metrics text.
func testHTTPConfiguration() -> LPRHTTPConfiguration {
    var configuration = LPRHTTPConfiguration(host: "127.0.0.1", port: 0, tokens: TestTokens.all)
    configuration.metrics = { "# TYPE test_metric counter\ntest_metric 1\n" }
    configuration.eventStreamHeartbeat = .milliseconds(500)
    return configuration
}

/// Starts a broker of `kind`, an LPR server on it and its HTTP application, then runs `body`
/// with a client of `framework`.
func withAPI(
    _ framework: HTTPFramework,
    kind: TestBrokerKind = .mosquitto,
    configure: @escaping (inout LPRServerConfiguration) -> Void = { _ in },
    _ body: @escaping @Sendable (LPRServerHarness, any TestClientProtocol) async throws -> Void
) async throws {
    try await withLPRServer(kind, configure: configure) { harness in
        let app = buildApplication(server: harness.server, configuration: testHTTPConfiguration(), logger: testLogger)
        try await app.test(framework.setup) { client in try await body(harness, client) }
    }
}

/// A response's body as a JSON object (an empty one when it is not JSON).
extension TestResponse {
    var object: JSONObject { (try? JSONObject.parse(body.readableBytesView)) ?? [:] }
    var text: String { String(buffer: body) }
}

extension TestClientProtocol {
    /// A request with the admin token (or `token`), and a JSON body when given.
    func call(
        _ method: HTTPRequest.Method,
        _ uri: String,
        token: String? = TestTokens.admin,
        json: JSONObject? = nil,
        raw: String? = nil
    ) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        if let token { headers[.authorization] = "Bearer \(token)" }
        var body: ByteBuffer?
        if let json {
            headers[.contentType] = "application/json"
            body = ByteBuffer(bytes: JSONValue.object(json).jsonBytes)
        } else if let raw {
            headers[.contentType] = "application/json"
            body = ByteBuffer(string: raw)
        }
        return try await execute(uri: uri, method: method, headers: headers, body: body)
    }
}

/// Checks a 4xx answer: its status, that it is JSON, and the field it names.
func expectError(
    _ response: TestResponse,
    _ status: HTTPResponse.Status,
    field: String?,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    #expect(response.status == status, "\(response.text)", sourceLocation: sourceLocation)
    #expect(response.headers[.contentType]?.hasPrefix("application/json") == true, sourceLocation: sourceLocation)
    let object = response.object
    #expect(object["error"]?.stringValue?.isEmpty == false, "\(response.text)", sourceLocation: sourceLocation)
    #expect(object["message"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
    if let field { #expect(object["field"] == .string(field), "\(response.text)", sourceLocation: sourceLocation) }
}

/// Stores seed detections directly (as the ingest would), newest last.
func storeDetections(_ repository: any LPRRepository, _ items: [(id: String, camera: String, plate: String)], start: Date = Date()) async throws {
    var records: [DetectionRecord] = []
    for (offset, item) in items.enumerated() {
        var json = try seedDetection(id: item.id, camera: item.camera, checkpoint: "CP-" + item.camera, plate: item.plate)
        let time = start.addingTimeInterval(Double(offset))
        json["timestamp"] = .timestamp(time)
        let detection = try Detection(validating: json)
        records.append(DetectionRecord(detection, receivedAt: time))
    }
    let outcomes = try await repository.storeDetections(records)
    #expect(outcomes.allSatisfy { $0 == .stored })
}
