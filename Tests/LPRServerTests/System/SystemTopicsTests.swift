import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("System and checkpoint topics", .serialized, .timeLimit(.minutes(3)))
struct SystemTopicsTests {
    @Test("online retained once subscribed; health, monitoring and checkpoint topics published periodically", arguments: TestBrokerKind.allCases)
    func periodicTopics(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "CAM010")) { camera in
                let system = try await Inbox.subscribe(camera, to: "lprserver/system/#")
                let checkpoints = try await Inbox.subscribe(camera, to: "lprserver/checkpoints/#")
                let status = try await system.first("the retained status") { $0.topic == "lprserver/system/status" }
                #expect(status.payloadString == "online")
                #expect(status.retain)

                var health = try JSONObject.parse(Fixtures.example("lpr-health.json"))
                health["camera_id"] = "CAM010"
                try await camera.publish(json: health, to: "lprserver/cameras/CAM010/health", qos: .atMostOnce)
                try await camera.publish(
                    json: try seedDetection(id: "cp-1", camera: "CAM010", checkpoint: "CP009"),
                    to: "lprserver/cameras/CAM010/detection"
                )

                let systemHealth = try await system.firstObject(topic: "lprserver/system/health", "system health") { _ in true }
                let seedKeys = try JSONObject.parse(Fixtures.example("lpr-system-health.json")).keys
                #expect(systemHealth.keys == seedKeys)
                #expect(systemHealth["connection_status"] == "connected")
                let monitoring = try await system.firstObject(topic: "lprserver/system/monitoring", "monitoring") {
                    $0["detections_stored"] == 1
                }
                #expect(monitoring["cameras_known"] == 1)
                let analytics = try await checkpoints.firstObject(topic: "lprserver/checkpoints/CP009/analytics", "analytics") {
                    $0["detections_per_hour"] == 1
                }
                #expect(analytics["unique_plates"] == 1)
                #expect(analytics["watchlist_hits"] == 0)
                #expect(analytics["mean_confidence"] == 0.95)
                let checkpoint = try await checkpoints.firstObject(topic: "lprserver/checkpoints/CP009/status", "checkpoint status") {
                    $0["cameras_online"] == 1
                }
                #expect(checkpoint["online"] == ["CAM010"])
            }
        }
    }

    @Test("system/control: status, reload_watchlist and an unknown command are answered on system/control/response")
    func systemControl() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "operator")) { operatorClient in
                let responses = try await Inbox.subscribe(operatorClient, to: "lprserver/system/control/response", qos: .exactlyOnce)
                for (id, command) in [("s1", "status"), ("s2", "reload_watchlist"), ("s3", "fly")] {
                    try await operatorClient.publish(
                        json: ["message_id": .string(id), "command": .string(command)],
                        to: "lprserver/system/control",
                        qos: .exactlyOnce
                    )
                }
                try await operatorClient.publish(topic: "lprserver/system/control", payload: #"{"message_id":"s4"}"#, qos: .exactlyOnce)
                try await responses.wait(count: 4, "answers") { _ in true }
                let answers = Dictionary(responses.objects().map { ($0["message_id"]?.stringValue ?? "?", $0) }, uniquingKeysWith: { a, _ in a })
                #expect(answers["s1"]?["status"] == "ok")
                #expect(answers["s1"]?["result"]?["health"]?["connection_status"] == "connected")
                #expect(answers["s2"]?["status"] == "ok")
                #expect(answers["s3"]?["status"] == "unsupported")
                #expect(answers["s4"]?["status"] == "error")
            }
        }
    }

    @Test("the server's warnings go to system/logs: a refused message is one")
    func logs() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "CAM011")) { camera in
                let logs = try await Inbox.subscribe(camera, to: "lprserver/system/logs", qos: .atMostOnce)
                try await camera.publish(topic: "lprserver/cameras/CAM011/detection", payload: "not json", qos: .atLeastOnce)
                let line = try await logs.firstObject(topic: "lprserver/system/logs", "a log line") { _ in true }
                #expect(line["level"] == "warning")
                #expect(line["message"]?.stringValue?.contains("lprserver/cameras/CAM011/detection") == true)
                #expect(line["timestamp"]?.stringValue.flatMap(RFC3339.date(from:)) != nil)
            }
        }
    }

    @Test("the server's will says offline when it dies; a graceful stop says so too")
    func serverStatus() async throws {
        try await Mosquitto.with { broker in
            try await withClient(.test(broker, id: "watcher")) { watcher in
                let status = try await Inbox.subscribe(watcher, to: "lprserver/system/status")
                try await withLPRServer(broker: broker) { _ in
                    try await status.first("online") { $0.payloadString == "online" }
                }
                try await status.first("offline after the server stopped") { $0.payloadString == "offline" }
            }
        }
    }
}
