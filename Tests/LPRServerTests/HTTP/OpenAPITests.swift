import DatabusTestSupport
import Foundation
import HummingbirdTesting
import LPRModel
import MQTTClient
import MQTTCore
import Testing

@testable import LPRServer

@Suite("OpenAPI document", .serialized, .timeLimit(.minutes(8)))
struct OpenAPITests {
    static let document = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources/LPRServer/Web/openapi.json")

    @Test("the document lists exactly the operations the server answers")
    func documentMatchesRoutes() async throws {
        let text = try String(contentsOf: Self.document, encoding: .utf8)
        let object = try JSONObject.parse(Array(text.utf8))
        #expect(object["openapi"] == "3.1.0")
        var documented: Set<String> = []
        for (path, item) in object["paths"]?.objectValue ?? [:] {
            for (method, _) in item.objectValue ?? [:] { documented.insert("\(method.uppercased()) \(path)") }
        }
        let served = Set(APIRoutes.operations.map { "\($0.method) \($0.path)" })
        #expect(documented == served)
        #expect(served.count == 18)
    }

    @Test(
        "schemathesis against the live API, every check: no 5xx, responses match their schemas, valid input accepted, invalid input and undeclared methods refused"
    )
    func schemathesis() async throws {
        try await withAPI(.live) { harness, client in
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
                #expect(
                    result.output.contains("Test cases:") && result.output.contains("generated"),
                    "schemathesis ran no test: \(result.output.suffix(2000))"
                )
                #expect(result.status == 0, "schemathesis found problems:\n\(result.output.suffix(6000))\n\(result.errorOutput.suffix(2000))")
            }
        }
    }
}
