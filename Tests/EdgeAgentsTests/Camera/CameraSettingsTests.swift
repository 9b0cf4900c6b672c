import DatabusTestSupport
import EdgeAgents
import Foundation
import MQTTCore
import Testing

@Suite("databus camera settings: flags, then the environment, then the .env file")
struct CameraSettingsTests {
    @Test("each setting comes from the first source that has it, under the seed's names")
    func layering() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let file = try folder.write(
            ".env",
            """
            MQTT_BROKER_HOST=file-host
            MQTT_BROKER_PORT=1999
            CAMERA_ID=CAM_FILE
            CHECKPOINT_ID=CP_FILE
            CAMERA_ACK_TIMEOUT=7
            CAMERA_ON_MATCH=/opt/barrier/close.sh
            MQTT_PROTOCOL_VERSION=3.1.1
            """
        )
        let settings = try await CameraSettings.load(
            flags: ["CAMERA_ID": "CAM_FLAG"],
            environment: ["CAMERA_ID": "CAM_ENV", "CHECKPOINT_ID": "CP_ENV", "MQTT_USERNAME": "camera", "MQTT_PASSWORD": "secret"],
            environmentFile: file
        )
        #expect(settings.cameraID == "CAM_FLAG")
        #expect(settings.checkpointID == "CP_ENV")
        #expect(settings.mqtt.host == "file-host")
        #expect(settings.mqtt.port == 1999)
        #expect(settings.mqtt.protocolVersion == .v3_1_1)
        #expect(settings.mqtt.username == "camera")
        #expect(settings.mqtt.password == Array("secret".utf8))
        #expect(settings.ackTimeout == 7)
        #expect(settings.matchHook == Hook(command: "/opt/barrier/close.sh", timeout: 10))
        #expect(settings.commandHook == nil)
        #expect(settings.healthInterval == .seconds(30))
        #expect(settings.dataDirectory(for: "CAM_FLAG") == "./databus-data/camera-CAM_FLAG")
    }

    @Test("defaults without any source; a data folder is shared out per camera when simulating")
    func defaults() async throws {
        let settings = try await CameraSettings.load(flags: ["CAMERA_DATA_DIR": "/var/lib/lpr"], environment: [:])
        #expect(settings.cameraID == "CAM001")
        #expect(settings.checkpointID == "CP001")
        #expect(settings.mqtt.host == "localhost")
        #expect(settings.mqtt.port == 1883)
        #expect(settings.mqtt.protocolVersion == .v5)
        #expect(settings.dataDirectory(for: "CAM001") == "/var/lib/lpr")
        #expect(settings.dataDirectory(for: "CAM002", cameras: 3) == "/var/lib/lpr/CAM002")
    }

    @Test(
        "a bad setting is refused with its name",
        arguments: [
            ("MQTT_BROKER_PORT", "70000"), ("CAMERA_ACK_TIMEOUT", "soon"), ("CAMERA_ID", "CAM/1"), ("MQTT_PROTOCOL_VERSION", "4.2"),
            ("MQTT_TLS_ENABLED", "maybe"), ("CAMERA_HEALTH_INTERVAL", "0"),
        ]
    )
    func refused(name: String, value: String) async throws {
        do {
            _ = try await CameraSettings.load(flags: [:], environment: [name: value])
            Issue.record("\(name)=\(value) was taken")
        } catch {
            #expect(error.name == name)
        }
    }
}
