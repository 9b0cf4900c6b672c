import DatabusTestSupport
import Foundation
import LPRServer
import Testing

@Suite("LPR server settings: flags, then the environment, then the .env file")
struct LPRServerSettingsTests {
    @Test("defaults: localhost:1883, lprserver_v3, a day of session, 90 days of detections and 7 of history")
    func defaults() async throws {
        let settings = try await LPRServerSettings.load(flags: [:], environment: [:])
        let configuration = settings.configuration
        #expect(configuration.mqtt.host == "localhost")
        #expect(configuration.mqtt.port == 1883)
        #expect(configuration.mqtt.clientIdentifier == "lprserver_v3")
        #expect(configuration.sessionExpiry == .seconds(86_400))
        #expect(configuration.retentionAge == .seconds(90 * 86_400))
        #expect(configuration.historyRetentionAge == .seconds(7 * 86_400))
        #expect(configuration.retentionMaximumDetections == nil)
        #expect(configuration.maximumBatchSize == 1000)
        #expect(settings.database == "sqlite:./databus-data/lpr.sqlite")
    }

    @Test("a flag wins over the environment, which wins over the .env file")
    func precedence() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let file = directory.file("lpr.env")
        try "MQTT_BROKER_HOST=from-file\nMQTT_BROKER_PORT=1999\nLPR_BATCH_SIZE=7\nLPR_HISTORY_RETENTION_DAYS=2\n".write(
            toFile: file,
            atomically: true,
            encoding: .utf8
        )
        let settings = try await LPRServerSettings.load(
            flags: ["mqtt.broker.host": "from-flag"],
            environment: ["MQTT_BROKER_HOST": "from-environment", "MQTT_BROKER_PORT": "2888"],
            environmentFile: file
        )
        #expect(settings.configuration.mqtt.host == "from-flag")
        #expect(settings.configuration.mqtt.port == 2888)
        #expect(settings.configuration.maximumBatchSize == 7)
        #expect(settings.configuration.historyRetentionAge == .seconds(2 * 86_400))
    }

    @Test("0 days keeps detections and history for ever; a share group's session ends with its connection")
    func retentionAndShareGroup() async throws {
        let settings = try await LPRServerSettings.load(
            flags: [:],
            environment: ["LPR_RETENTION_DAYS": "0", "LPR_HISTORY_RETENTION_DAYS": "0", "LPR_SHARE_GROUP": "lpr"]
        )
        #expect(settings.configuration.retentionAge == nil)
        #expect(settings.configuration.historyRetentionAge == nil)
        #expect(settings.configuration.shareGroup == "lpr")
        #expect(settings.configuration.sessionExpiry == .zero)
    }

    @Test(
        "a wrong setting is refused naming its variable",
        arguments: [
            ("LPR_HISTORY_RETENTION_DAYS", "-1"), ("LPR_HISTORY_RETENTION_DAYS", "a week"), ("MQTT_BROKER_PORT", "70000"),
            ("LPR_BATCH_SIZE", "0"), ("LPR_DATABASE", "mysql://x"), ("MQTT_PROTOCOL_VERSION", "4.5"), ("LPR_SHARE_GROUP", "a/b"),
        ]
    )
    func refused(variable: String, value: String) async throws {
        await #expect {
            _ = try await LPRServerSettings.load(flags: [:], environment: [variable: value])
        } throws: { error in
            (error as? LPRServerSettings.Invalid)?.variable == variable
        }
    }

    @Test("a missing --env-file is an error; the default .env may be missing")
    func missingFile() async throws {
        await #expect(throws: LPRServerSettings.Invalid.self) {
            _ = try await LPRServerSettings.load(flags: [:], environment: [:], environmentFile: "/nonexistent/lpr.env")
        }
        _ = try await LPRServerSettings.load(flags: [:], environment: [:], environmentFile: "/nonexistent/.env", allowMissingFile: true)
    }
}
