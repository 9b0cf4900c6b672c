import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOCore
import Testing

@Suite("Camera health and availability", .serialized, .timeLimit(.minutes(3)))
struct CameraHealthTests {
    @Test("the seed's health is recorded; a degraded camera raises one alert however often it says so", arguments: TestBrokerKind.allCases)
    func healthRecordedAndAlertedOnce(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let alerts = try await Inbox.subscribe(camera, to: "lprserver/system/alerts")
                let seed = try JSONObject.parse(Fixtures.example("lpr-health.json"))
                try await camera.publish(json: seed, to: "lprserver/cameras/CAM001/health", qos: .atMostOnce, retain: true)
                try await waitFor("the health to be recorded") { try await harness.repository.camera("CAM001")?.healthStatus == "healthy" }
                let record = try #require(try await harness.repository.camera("CAM001"))
                #expect(record.online == true)
                #expect(record.health?.contains(#""temperature":42.5"#) == true)

                var degraded = seed
                degraded["health_status"] = "degraded"
                var details = try #require(degraded["health_details"]?.objectValue)
                details["temperature"] = 85.5
                degraded["health_details"] = .object(details)
                for _ in 0..<3 {
                    try await camera.publish(json: degraded, to: "lprserver/cameras/CAM001/health", qos: .atMostOnce, retain: true)
                }
                try await alerts.wait(count: 2, "health alerts") { $0.object["kind"] == "camera_health" }
                try await waitFor("three health messages in the history") {
                    try await harness.repository.healthHistory(camera: "CAM001", limit: 10).count == 4
                }
                let healthAlerts = alerts.objects().filter { $0["kind"] == "camera_health" }
                #expect(healthAlerts.count == 2)  // the status and the temperature, once each
                #expect(Set(healthAlerts.compactMap { $0["details"]?["problem"]?.stringValue }) == ["status", "temperature"])
                // Healthy again, then degraded again: alerted again.
                try await camera.publish(json: seed, to: "lprserver/cameras/CAM001/health", qos: .atMostOnce, retain: true)
                try await camera.publish(json: degraded, to: "lprserver/cameras/CAM001/health", qos: .atMostOnce, retain: true)
                try await alerts.wait(count: 4, "health alerts after recovery") { $0.object["kind"] == "camera_health" }
            }
        }
    }

    @Test("a camera's will marks it offline with one alert; its online marks it back with another", arguments: TestBrokerKind.allCases)
    func willDrivenOffline(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "observer")) { observer in
                let alerts = try await Inbox.subscribe(observer, to: "lprserver/system/alerts")
                var configuration = MQTTClient.Configuration.test(harness.broker, id: "CAM007")
                configuration.will = ConnectPacket.Will(
                    topic: "lprserver/cameras/CAM007/status",
                    payload: ByteBuffer(string: "offline"),
                    qos: .atLeastOnce,
                    retain: true
                )
                configuration.reconnect = .disabled
                let camera = MQTTClient(configuration: configuration, logger: testLogger)
                try await camera.connect()
                try await camera.publish(topic: "lprserver/cameras/CAM007/status", payload: "online", qos: .atLeastOnce, retain: true)
                try await waitFor("the camera to be online") { try await harness.repository.camera("CAM007")?.online == true }
                await camera.dropConnectionForTesting()
                let offline = try await alerts.firstObject(topic: "lprserver/system/alerts", "the offline alert") { $0["kind"] == "camera_offline" }
                #expect(offline["camera_id"] == "CAM007")
                #expect(offline["level"] == "warning")
                #expect(try await harness.repository.camera("CAM007")?.online == false)
                await camera.disconnect()

                try await withClient(.test(harness.broker, id: "CAM007")) { again in
                    try await again.publish(topic: "lprserver/cameras/CAM007/status", payload: "online", qos: .atLeastOnce, retain: true)
                    let back = try await alerts.firstObject(topic: "lprserver/system/alerts", "the back-online alert") {
                        $0["kind"] == "camera_online"
                    }
                    #expect(back["camera_id"] == "CAM007")
                    #expect(back["level"] == "info")
                }
                #expect(alerts.objects().filter { $0["kind"] == "camera_offline" }.count == 1)
            }
        }
    }

    @Test("a camera that stops sending health goes offline after the staleness window, once")
    func stalenessDrivenOffline() async throws {
        try await withLPRServer(.databus) { configuration in
            configuration.cameraHealth.staleAfter = .seconds(2)
            configuration.stalenessCheckInterval = .milliseconds(500)
        } _: { harness in
            try await withClient(.test(harness.broker, id: "CAM003")) { camera in
                let alerts = try await Inbox.subscribe(camera, to: "lprserver/system/alerts")
                var health = try JSONObject.parse(Fixtures.example("lpr-health.json"))
                health["camera_id"] = "CAM003"
                try await camera.publish(json: health, to: "lprserver/cameras/CAM003/health", qos: .atMostOnce)
                try await waitFor("the camera to be online") { try await harness.repository.camera("CAM003")?.online == true }
                let offline = try await alerts.firstObject(topic: "lprserver/system/alerts", timeout: .seconds(10), "the staleness alert") {
                    $0["kind"] == "camera_offline"
                }
                #expect(offline["message"]?.stringValue?.contains("no health message") == true)
                try await Task.sleep(for: .seconds(1.5))
                #expect(alerts.objects().filter { $0["kind"] == "camera_offline" }.count == 1)
                // Health again: back.
                try await camera.publish(json: health, to: "lprserver/cameras/CAM003/health", qos: .atMostOnce)
                _ = try await alerts.firstObject(topic: "lprserver/system/alerts", "the back alert") { $0["kind"] == "camera_online" }
            }
        }
    }

    @Test("a restarted server does not take the retained health it already recorded for news")
    func retainedHealthAfterRestart() async throws {
        try await Mosquitto.with { broker in
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let store = try SQLiteLPRRepository(path: directory.file("lpr.sqlite"))
            var health = try JSONObject.parse(Fixtures.example("lpr-health.json"))
            health["camera_id"] = "CAM020"
            try await withLPRServer(broker: broker, repository: store) { harness in
                try await withClient(.test(broker, id: "CAM020")) { camera in
                    try await camera.publish(json: health, to: "lprserver/cameras/CAM020/health", qos: .atMostOnce, retain: true)
                }
                try await waitFor("the health recorded") { try await store.healthHistory(camera: "CAM020", limit: 10).count == 1 }
            }
            // The camera went quiet and was marked offline meanwhile.
            _ = try await store.updateCamera("CAM020") { $0.online = false }
            try await withLPRServer(broker: broker, repository: store) { _ in
                try await Task.sleep(for: .milliseconds(500))
            }
            #expect(try await store.healthHistory(camera: "CAM020", limit: 10).count == 1)
            #expect(try await store.camera("CAM020")?.online == false)
        }
    }

    @Test("bad health and status messages are refused with a warning alert")
    func badHealth() async throws {
        try await withLPRServer(.mosquitto) { harness in
            try await withClient(.test(harness.broker, id: "CAM004")) { camera in
                let alerts = try await Inbox.subscribe(camera, to: "lprserver/system/alerts")
                try await camera.publish(topic: "lprserver/cameras/CAM004/health", payload: #"{"health_status":"great"}"#, qos: .atMostOnce)
                try await camera.publish(topic: "lprserver/cameras/CAM004/status", payload: "perhaps", qos: .atLeastOnce)
                try await alerts.wait(count: 2, "refusals") { $0.object["kind"] == "message_rejected" }
                let message = alerts.objects().first { $0["details"]?["topic"] == "lprserver/cameras/CAM004/health" }
                let paths = message?["details"]?["errors"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
                #expect(Set(paths).isSuperset(of: ["message_id", "timestamp", "camera_id", "health_status"]))
            }
        }
    }
}

/// Polls `condition` until it holds, for at most `timeout`.
func waitFor(_ what: String, timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while try await !condition() {
        guard ContinuousClock.now < deadline else { throw InteropError("\(what): not within \(timeout)") }
        try await Task.sleep(for: .milliseconds(20))
    }
}
