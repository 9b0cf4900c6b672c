import DatabusTestSupport
import Foundation
import LPRModel
import Testing

@Suite("LPR messages: the seed's examples and the refusals")
struct MessageValidationTests {
    @Test("the seed's detection parses with every field, and its unknown members are kept")
    func seedDetection() throws {
        var json = try JSONObject.parse(Fixtures.example("lpr-detection.json"))
        json["firmware"] = "4.2.1"
        var metadata = try #require(json["metadata"]?.objectValue)
        metadata["lane"] = 3
        json["metadata"] = .object(metadata)
        let detection = try Detection(validating: json, topicCamera: "CAM001")
        #expect(detection.messageID == "uuid-string")
        #expect(detection.cameraID == "CAM001")
        #expect(detection.checkpointID == "CP001")
        #expect(RFC3339.string(from: detection.timestamp) == "2024-01-15T10:30:00.000Z")
        #expect(detection.data.plates.map(\.plateNumber) == ["ABC1234"])
        #expect(detection.data.plates.first?.country == "TH")
        #expect(detection.data.vehicles.first?.brand == "Toyota")
        #expect(detection.data.vehicles.first?.year == 2020)
        #expect(detection.data.confidenceScore == 0.95)
        #expect(detection.metadata["weather"]?.stringValue == "clear")
        #expect(detection.metadata["lane"]?.intValue == 3)
        #expect(detection.json["firmware"]?.stringValue == "4.2.1")
        #expect(JSONValue.object(detection.json).jsonText.contains(#""year":2020"#))
    }

    @Test("a detection missing fields or with wrong types is refused naming each path")
    func refusedDetection() throws {
        let payload = #"""
            {"message_id":"m1","timestamp":"yesterday","camera_id":"CAM002","detection_data":{"plates":[{"plate_number":7,"confidence":"high","bbox":[1,2,3]},"x"],"vehicles":{}}}
            """#
        let error = try #require(throws: MessageValidationError.self) {
            try Detection(payload: Array(payload.utf8), topicCamera: "CAM001")
        }
        let paths = Dictionary(error.errors.map { ($0.path, $0.reason) }, uniquingKeysWith: { a, _ in a })
        #expect(paths["timestamp"]?.contains("RFC 3339") == true)
        #expect(paths["checkpoint_id"] == "missing")
        #expect(paths["camera_id"]?.contains("disagrees") == true)
        #expect(paths["detection_data.plates[0].plate_number"] == "expected a string, found number")
        #expect(paths["detection_data.plates[0].confidence"] == "expected a number, found string")
        #expect(paths["detection_data.plates[0].bbox"] == "expected 4 numbers")
        #expect(paths["detection_data.plates[1]"] == "expected an object, found string")
        #expect(paths["detection_data.vehicles"] == "expected an array, found object")
        #expect(Detection.messageID(in: try JSONObject.parse(Array(payload.utf8))) == "m1")
    }

    @Test("payloads that are not a JSON object are refused at the root", arguments: ["not json", "[1,2]", "\"text\"", ""])
    func notAnObject(payload: String) throws {
        let error = try #require(throws: MessageValidationError.self) { try Detection(payload: Array(payload.utf8)) }
        #expect(error.errors.count == 1)
        #expect(error.errors.first?.path == "")
    }

    @Test("the seed's health, configuration and control parse; their refusals name paths")
    func seedCameraMessages() throws {
        let health = try CameraHealth(validating: JSONObject.parse(Fixtures.example("lpr-health.json")), topicCamera: "CAM001")
        #expect(health.status == .healthy)
        #expect(health.cpuUsage == 45.2)
        #expect(health.temperature == 42.5)
        #expect(health.uptimeSeconds == 86400)
        #expect(health.alerts.map(\.message) == ["High CPU usage detected"])

        let config = try CameraConfiguration(validating: JSONObject.parse(Fixtures.example("lpr-config.json")), topicCamera: "CAM001")
        #expect(config.configType == "detection_settings")
        #expect(config.confidenceThreshold == 0.8)
        #expect(config.detectionInterval == 1000)
        #expect(config.configData["alert_settings"]?["notification_channels"] == ["mqtt", "email"])

        let control = try ControlCommand(validating: JSONObject.parse(Fixtures.example("lpr-control.json")), topicCamera: "CAM001")
        #expect(control.command == "restart_camera")
        #expect(control.parameters["delay_seconds"]?.intValue == 5)
        #expect(control.priority == .normal)

        var badHealth = try JSONObject.parse(Fixtures.example("lpr-health.json"))
        badHealth["health_status"] = "fine"
        badHealth["health_details"] = ["cpu_usage": "lots"]
        let error = try #require(throws: MessageValidationError.self) { try CameraHealth(validating: badHealth) }
        #expect(Set(error.errors.map(\.path)) == ["health_status", "health_details.cpu_usage"])

        var badConfig = try JSONObject.parse(Fixtures.example("lpr-config.json"))
        badConfig["config_data"] = ["confidence_threshold": 1.5, "alert_settings": ["notification_channels": [1]]]
        let configError = try #require(throws: MessageValidationError.self) { try CameraConfiguration(validating: badConfig) }
        #expect(
            Set(configError.errors.map(\.path)) == ["config_data.confidence_threshold", "config_data.alert_settings.notification_channels"]
        )
    }

    @Test("built messages parse back to themselves")
    func builtMessagesRoundTrip() throws {
        let now = Date(timeIntervalSince1970: 1_705_314_600.25)
        let detection = Detection(
            messageID: "d-1",
            timestamp: now,
            cameraID: "CAM009",
            checkpointID: "CP003",
            data: DetectionData(
                confidenceScore: 0.91,
                vehicles: [
                    Vehicle(
                        vehicleIndex: 0,
                        bbox: [1, 2, 3, 4],
                        confidence: 0.9,
                        vehicleClass: "car",
                        vehicleType: "sedan",
                        color: "red",
                        brand: "Mazda",
                        model: "3",
                        year: 2019
                    )
                ],
                plates: [Plate(plateIndex: 0, plateNumber: "AB-123-CD", bbox: [5, 6, 7, 8], confidence: 0.88, country: "FR", province: nil)]
            ),
            metadata: ["image_path": "/tmp/x.jpg"]
        )
        let parsed = try Detection(payload: JSONValue.object(detection.json).jsonBytes, topicCamera: "CAM009")
        #expect(parsed == detection)

        let ack = DetectionAck(messageID: "d-1", status: .rejected, errors: [FieldError(path: "timestamp", reason: "missing")], timestamp: now)
        #expect(try DetectionAck(validating: JSONObject.parse(JSONValue.object(ack.json).jsonBytes)) == ack)
        #expect(
            JSONValue.object(ack.json).jsonText
                == #"{"message_id":"d-1","status":"rejected","errors":[{"path":"timestamp","reason":"missing"}],"timestamp":"2024-01-15T10:30:00.250Z"}"#
        )

        let response = ControlResponse(messageID: "c-1", status: .unsupported, result: ["why": "no such command"], timestamp: now)
        #expect(try ControlResponse(validating: response.json) == response)

        let update = WatchlistUpdate(
            version: 4,
            timestamp: now,
            entries: [
                WatchlistEntry(id: "w1", plate: "ABC1234", reason: "stolen", level: .warning, country: "TH", cameraIDs: ["CAM001"], expiresAt: now)
            ]
        )
        #expect(try WatchlistUpdate(validating: update.json) == update)
    }

    @Test("camera availability: the bare word, a JSON string or an object")
    func availability() {
        #expect(CameraAvailability(payload: Array("online".utf8)) == .online)
        #expect(CameraAvailability(payload: Array(" OFFLINE\n".utf8)) == .offline)
        #expect(CameraAvailability(payload: Array(#""online""#.utf8)) == .online)
        #expect(CameraAvailability(payload: Array(#"{"status":"offline","camera_id":"CAM001"}"#.utf8)) == .offline)
        #expect(CameraAvailability(payload: Array("maybe".utf8)) == nil)
        #expect(CameraAvailability(payload: [UInt8]()) == nil)
    }

    @Test("the system health check has the seed's fields")
    func systemHealth() throws {
        let seed = try JSONObject.parse(Fixtures.example("lpr-system-health.json"))
        let health = SystemHealth(
            status: "healthy",
            timestamp: Date(),
            connectionStatus: "connected",
            lastMessageReceived: nil,
            messageRate: 0,
            errorRate: 0,
            latencyMs: 0
        )
        #expect(health.json.keys == seed.keys)
        #expect(health.json["last_message_received"] == .null)
    }
}
