import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Configuration and control round trips", .serialized, .timeLimit(.minutes(3)))
struct ConfigurationControlTests {
    @Test(
        "a configuration set while the camera is away reaches it retained; its report is recorded; config/request republishes it",
        arguments: TestBrokerKind.allCases
    )
    func configurationRoundTrip(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            let seed = try JSONObject.parse(Fixtures.example("lpr-config.json"))
            let data = try #require(seed["config_data"]?.objectValue)
            // An observer makes sure the broker has the configuration before the camera subscribes.
            try await withClient(.test(harness.broker, id: "observer")) { observer in
                let seen = try await Inbox.subscribe(observer, to: "lprserver/cameras/CAM001/config/update", qos: .exactlyOnce)
                let published = try await harness.server.setConfiguration(camera: "CAM001", configType: "detection_settings", configData: data)
                #expect(published.cameraID == "CAM001")
                try await seen.first("the configuration at the broker") { $0.object["message_id"] == .string(published.messageID) }
            }
            let desiredText = try #require(try await harness.repository.camera("CAM001")?.desiredConfig)
            let publishedID = try #require(try JSONObject.parse(Array(desiredText.utf8))["message_id"]?.stringValue)
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let updates = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM001/config/update", qos: .exactlyOnce)
                let desired = try await updates.first("the retained configuration") { _ in true }
                #expect(desired.retain)
                #expect(desired.qos == .exactlyOnce)
                let object = desired.object
                #expect(object["message_id"] == .string(publishedID))
                #expect(object["config_type"] == "detection_settings")
                #expect(object["config_data"] == .object(data))

                var reported = seed
                reported["message_id"] = "applied-1"
                try await camera.publish(json: reported, to: "lprserver/cameras/CAM001/config", qos: .exactlyOnce, retain: true)
                try await waitFor("the report to be recorded") { try await harness.repository.camera("CAM001")?.reportedConfig != nil }
                let record = try #require(try await harness.repository.camera("CAM001"))
                #expect(record.reportedConfig?.contains("applied-1") == true)
                #expect(record.desiredConfig?.contains(publishedID) == true)

                try await camera.publish(
                    json: ["message_id": "ask-1", "camera_id": "CAM001"],
                    to: "lprserver/cameras/CAM001/config/request",
                    qos: .exactlyOnce
                )
                try await updates.wait(count: 2, "the republished configuration") { _ in true }
                #expect(updates.messages.last?.object["message_id"] == .string(publishedID))
            }
            await #expect(throws: MessageValidationError.self) {
                try await harness.server.setConfiguration(camera: "CAM001", configType: "x", configData: ["confidence_threshold": 3])
            }
            await #expect(throws: LPRServerError.self) {
                try await harness.server.setConfiguration(camera: "CAM/1", configType: "x", configData: [:])
            }
        }
    }

    @Test("a command is answered by message_id; over MQTT 5 by correlation data alone; and times out cleanly", arguments: TestBrokerKind.allCases)
    func controlRoundTrip(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let commands = try await camera.subscribe(to: "lprserver/cameras/CAM001/control", qos: .exactlyOnce)
                // The camera: answers restart_camera by message_id, get_status by correlation data only, ignores the rest.
                let responder = Task {
                    for await message in commands {
                        let command = message.object
                        switch command["command"]?.stringValue {
                        case "restart_camera":
                            try await camera.publish(
                                json: [
                                    "message_id": command["message_id"] ?? .null, "status": "ok", "result": ["restarting_in": 5],
                                    "timestamp": .timestamp(Date()),
                                ],
                                to: "lprserver/cameras/CAM001/control/response",
                                qos: .exactlyOnce
                            )
                        case "get_status":
                            guard let responseTopic = message.properties.responseTopic, let correlation = message.properties.correlationData else {
                                continue
                            }
                            try await camera.publish(
                                json: ["status": "unsupported", "result": [:]],
                                to: responseTopic,
                                qos: .exactlyOnce,
                                properties: [.correlationData(correlation)]
                            )
                        default:
                            continue
                        }
                    }
                }
                defer { responder.cancel() }
                let restart = try await harness.server.sendCommand(
                    camera: "CAM001",
                    command: "restart_camera",
                    parameters: ["delay_seconds": 5],
                    timeout: .seconds(10)
                )
                guard case .answered(let response) = restart else {
                    Issue.record("no answer: \(restart)")
                    return
                }
                #expect(response.status == .ok)
                #expect(response.result["restarting_in"] == 5)
                let record = try #require(try await harness.repository.command(messageID: response.messageID))
                #expect(record.status == "ok")
                #expect(record.command == "restart_camera")

                let status = try await harness.server.sendCommand(camera: "CAM001", command: "get_status", timeout: .seconds(10))
                guard case .answered(let statusResponse) = status else {
                    Issue.record("no correlated answer: \(status)")
                    return
                }
                #expect(statusResponse.status == .unsupported)

                let started = ContinuousClock.now
                let ignored = try await harness.server.sendCommand(camera: "CAM001", command: "self_destruct", timeout: .seconds(1))
                guard case .timedOut(let id) = ignored else {
                    Issue.record("expected a timeout: \(ignored)")
                    return
                }
                #expect(ContinuousClock.now - started < .seconds(5))
                #expect(try await harness.repository.command(messageID: id)?.status == "timeout")
            }
        }
    }

    @Test("health/request reaches the camera")
    func healthRequest() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "CAM005")) { camera in
                let requests = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM005/health/request", qos: .atMostOnce)
                try await harness.server.requestHealth(camera: "CAM005")
                let request = try await requests.first("the health request") { _ in true }
                #expect(request.object["message_id"]?.stringValue?.isEmpty == false)
                #expect(request.object["timestamp"]?.stringValue.flatMap(RFC3339.date(from:)) != nil)
            }
        }
    }
}
