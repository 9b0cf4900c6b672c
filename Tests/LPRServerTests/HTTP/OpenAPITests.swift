import DatabusTestSupport
import Foundation
import HummingbirdTesting
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import Testing

@Suite("OpenAPI document", .serialized, .timeLimit(.minutes(8)))
struct OpenAPITests {
    static let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources/LPRServer/Web/openapi.json")

    @Test("the document has every route the server serves, and nothing else")
    func documentMatchesRoutes() async throws {
        let text = try String(contentsOf: Self.document, encoding: .utf8)
        let object = try JSONObject.parse(Array(text.utf8))
        #expect(object["openapi"] == "3.1.0")
        let paths = Set(object["paths"]?.objectValue?.keys ?? [])
        #expect(
            paths == [
                "/health", "/metrics", "/api/openapi.json", "/api/detections", "/api/detections/{message_id}", "/api/cameras", "/api/cameras/{id}",
                "/api/cameras/{id}/config", "/api/cameras/{id}/control", "/api/cameras/{id}/health/request", "/api/watchlist",
                "/api/watchlist/{entry_id}", "/api/alerts", "/api/checkpoints", "/api/stats", "/api/events",
            ]
        )
    }

    @Test("schemathesis against the live API: no 5xx, every response matching its schema")
    func schemathesis() async throws {
        let configure: (inout LPRServerConfiguration) -> Void = { $0.maximumCommandTimeout = .seconds(3) }
        try await withAPI(.live, configure: configure) { harness, client in
            let port = try #require(client.port)
            // Some data to find, and a camera that answers every command (no 504 from a silent one).
            try await storeDetections(harness.repository, [("s1", "CAM001", "ABC1234"), ("s2", "CAM002", "XYZ999")])
            try await withClient(.test(harness.broker, id: "answering-camera")) { camera in
                let commands = try await camera.subscribe(to: "lprserver/cameras/+/control", qos: .exactlyOnce)
                let answering = Task {
                    for await message in commands {
                        let command = message.object
                        let topic = message.topic + "/response"
                        try await camera.publish(
                            json: ["message_id": command["message_id"] ?? .null, "status": "ok", "result": [:]],
                            to: topic,
                            qos: .exactlyOnce
                        )
                    }
                }
                defer { answering.cancel() }
                let result = try await runProgramCollectingErrors(
                    "schemathesis",
                    [
                        "run", Self.document.path, "--url", "http://127.0.0.1:\(port)",
                        "--header", "Authorization: Bearer \(TestTokens.admin)",
                        "--checks",
                        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
                        "--exclude-path", "/api/events",
                        "--max-examples", ProcessInfo.processInfo.environment["DATABUS_SCHEMATHESIS_EXAMPLES"] ?? "25",
                        "--seed", "1", "--no-color",
                    ],
                    timeout: .seconds(420)
                )
                #expect(result.status == 0, "schemathesis found problems:\n\(result.output.suffix(6000))\n\(result.errorOutput.suffix(2000))")
            }
        }
    }
}
