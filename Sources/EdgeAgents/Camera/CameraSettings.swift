import Foundation
import Logging
import MQTTClient
import MQTTCore

/// `databus camera`'s settings from flags, then environment variables, then a `.env`-style
/// file (swift-configuration's provider hierarchy through ``AgentSettings``), under the seed's names.
///
/// | setting | variable | default |
/// | --- | --- | --- |
/// | broker host, port | `MQTT_BROKER_HOST`, `MQTT_BROKER_PORT` | `localhost`, 1883 (8883 with TLS) |
/// | user name, password | `MQTT_USERNAME`, `MQTT_PASSWORD` | none |
/// | TLS | `MQTT_TLS_ENABLED`, `MQTT_CA_CERT`, `MQTT_CLIENT_CERT`, `MQTT_CLIENT_KEY` | off |
/// | client id | `MQTT_CLIENT_ID` | `camera-{CAMERA_ID}` |
/// | keep alive (s) | `MQTT_KEEPALIVE` | 60 |
/// | reconnect delay (s) | `MQTT_RECONNECT_DELAY`, `MQTT_MAX_RECONNECT_DELAY` | 1, doubling to 30 |
/// | reconnect attempts | `MQTT_MAX_RECONNECT_ATTEMPTS` | unlimited (0 too) |
/// | connect timeout (s) | `MQTT_CONNECTION_TIMEOUT` | 30 |
/// | MQTT version | `MQTT_PROTOCOL_VERSION` (`5` or `3.1.1`) | 5 |
/// | log level | `MQTT_LOG_LEVEL` | `INFO` |
/// | camera, checkpoint | `CAMERA_ID`, `CHECKPOINT_ID` | `CAM001`, `CP001` |
/// | data folder | `CAMERA_DATA_DIR` | `./databus-data/camera-{CAMERA_ID}` |
/// | health interval (s) | `CAMERA_HEALTH_INTERVAL` | 30 |
/// | ack timeout (s) | `CAMERA_ACK_TIMEOUT` | 10 (doubling to 300 per re-send) |
/// | command hook, its timeout (s) | `CAMERA_ON_COMMAND`, `CAMERA_COMMAND_TIMEOUT` | none, 30 |
/// | watch-list hook, its timeout (s) | `CAMERA_ON_MATCH`, `CAMERA_MATCH_TIMEOUT` | none, 10 |
/// | watch-list edit distance | `CAMERA_WATCHLIST_MAX_DISTANCE` | 1 |
public struct CameraSettings: Sendable {
    /// The broker connection (the agent adds its will, session and outbox).
    public var mqtt: MQTTClient.Configuration
    public var cameraID: String
    public var checkpointID: String
    /// The data folder as set, before `{CAMERA_ID}` is filled in; `nil` for the default.
    public var dataDirectory: String?
    public var healthInterval: Duration
    public var ackTimeout: TimeInterval
    public var commandHook: Hook?
    public var matchHook: Hook?
    public var watchlistMaximumDistance: Int
    public var logLevel: Logger.Level

    /// Reads the settings.
    ///
    /// - Parameters:
    ///   - flags: values given on the command line, by variable name (`MQTT_BROKER_HOST`); they win.
    ///   - environment: the process environment.
    ///   - environmentFile: a `.env` file of `NAME=value` lines; a missing one is skipped.
    /// - Throws: ``AgentSettingsError`` naming the first bad setting.
    public static func load(
        flags: [String: String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        environmentFile: String? = nil
    ) async throws(AgentSettingsError) -> CameraSettings {
        let read = try await AgentSettings(flags: flags, environment: environment, environmentFile: environmentFile)
        let tlsEnabled = try read.bool("MQTT_TLS_ENABLED") ?? false
        let host = read.string("MQTT_BROKER_HOST") ?? "localhost"
        let port = try read.port("MQTT_BROKER_PORT") ?? (tlsEnabled ? 8883 : 1883)
        let cameraID = read.string("CAMERA_ID") ?? "CAM001"
        let checkpointID = read.string("CHECKPOINT_ID") ?? "CP001"
        for (name, value) in [("CAMERA_ID", cameraID), ("CHECKPOINT_ID", checkpointID)] where !Self.isIdentifier(value) {
            throw AgentSettingsError(name: name, "\"\(value)\" cannot stand in a topic level (no '/', '+', '#')")
        }
        let version: MQTTProtocolVersion
        switch read.string("MQTT_PROTOCOL_VERSION") ?? "5" {
        case "5", "5.0": version = .v5
        case "3.1.1", "4": version = .v3_1_1
        case let other: throw AgentSettingsError(name: "MQTT_PROTOCOL_VERSION", "\"\(other)\": expected 5 or 3.1.1")
        }
        var tls: MQTTClient.TLS?
        if tlsEnabled {
            let caFile = read.string("MQTT_CA_CERT")
            let certificate = read.string("MQTT_CLIENT_CERT")
            let key = read.string("MQTT_CLIENT_KEY")
            for (name, file) in [("MQTT_CA_CERT", caFile), ("MQTT_CLIENT_CERT", certificate), ("MQTT_CLIENT_KEY", key)] {
                if let file, !FileManager.default.isReadableFile(atPath: file) {
                    throw AgentSettingsError(name: name, "\(file) is not a readable PEM file")
                }
            }
            if (certificate == nil) != (key == nil) {
                throw AgentSettingsError(name: "MQTT_CLIENT_CERT/MQTT_CLIENT_KEY", "give both or neither")
            }
            tls = MQTTClient.TLS(trust: caFile.map { .caFile($0) } ?? .systemDefault, certificateFile: certificate, privateKeyFile: key)
        }
        var mqtt = MQTTClient.Configuration(
            host: host,
            port: port,
            clientIdentifier: read.string("MQTT_CLIENT_ID") ?? "",
            protocolVersion: version,
            tls: tls
        )
        mqtt.username = read.string("MQTT_USERNAME")
        mqtt.password = read.string("MQTT_PASSWORD", isSecret: true).map { Array($0.utf8) }
        mqtt.keepAlive = .seconds(try read.integer("MQTT_KEEPALIVE", in: 0...65_535) ?? 60)
        let reconnectDelay = try read.number("MQTT_RECONNECT_DELAY", in: 0.01...3600) ?? 1
        let maximumDelay = try read.number("MQTT_MAX_RECONNECT_DELAY", in: 0.01...3600) ?? max(30, reconnectDelay)
        let attempts = try read.integer("MQTT_MAX_RECONNECT_ATTEMPTS", in: 0...Int.max)
        mqtt.reconnect = ReconnectPolicy(
            initialDelay: .milliseconds(Int64(reconnectDelay * 1000)),
            maximumDelay: .milliseconds(Int64(max(maximumDelay, reconnectDelay) * 1000)),
            maximumAttempts: attempts == 0 ? nil : attempts
        )
        mqtt.connectTimeout = .milliseconds(Int64((try read.number("MQTT_CONNECTION_TIMEOUT", in: 0.1...3600) ?? 30) * 1000))

        let healthInterval = try read.number("CAMERA_HEALTH_INTERVAL", in: 0.05...86_400) ?? 30
        let ackTimeout = try read.number("CAMERA_ACK_TIMEOUT", in: 0.01...86_400) ?? 10
        let commandTimeout = try read.number("CAMERA_COMMAND_TIMEOUT", in: 0.01...3600) ?? 30
        let matchTimeout = try read.number("CAMERA_MATCH_TIMEOUT", in: 0.01...3600) ?? 10
        let logLevel: Logger.Level
        switch (read.string("MQTT_LOG_LEVEL") ?? "INFO").uppercased() {
        case "TRACE": logLevel = .trace
        case "DEBUG": logLevel = .debug
        case "INFO": logLevel = .info
        case "NOTICE": logLevel = .notice
        case "WARNING", "WARN": logLevel = .warning
        case "ERROR": logLevel = .error
        case "CRITICAL": logLevel = .critical
        case let other: throw AgentSettingsError(name: "MQTT_LOG_LEVEL", "\"\(other)\": expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        }
        return CameraSettings(
            mqtt: mqtt,
            cameraID: cameraID,
            checkpointID: checkpointID,
            dataDirectory: read.string("CAMERA_DATA_DIR"),
            healthInterval: .milliseconds(Int64(healthInterval * 1000)),
            ackTimeout: ackTimeout,
            commandHook: read.string("CAMERA_ON_COMMAND").map { Hook(command: $0, timeout: commandTimeout) },
            matchHook: read.string("CAMERA_ON_MATCH").map { Hook(command: $0, timeout: matchTimeout) },
            watchlistMaximumDistance: try read.integer("CAMERA_WATCHLIST_MAX_DISTANCE", in: 0...3) ?? 1,
            logLevel: logLevel
        )
    }

    /// The data folder of `camera`: the setting with `{CAMERA_ID}` filled in, or
    /// `./databus-data/camera-{id}`; with several cameras and a setting without `{CAMERA_ID}`,
    /// one sub-folder a camera.
    public func dataDirectory(for camera: String, cameras: Int = 1) -> String {
        guard let dataDirectory else { return "./databus-data/camera-\(camera)" }
        if dataDirectory.contains("{CAMERA_ID}") { return dataDirectory.replacingOccurrences(of: "{CAMERA_ID}", with: camera) }
        return cameras > 1 ? "\(dataDirectory)/\(camera)" : dataDirectory
    }

    static func isIdentifier(_ text: String) -> Bool {
        !text.isEmpty && !text.contains(where: { "/+#".contains($0) }) && !text.unicodeScalars.contains { $0.value == 0 }
    }
}

extension AgentSettings {
    /// The setting `name` as true or false (`true`/`1`/`yes`/`on` and their opposites).
    public func bool(_ name: String) throws(AgentSettingsError) -> Bool? {
        guard let text = string(name)?.trimmingCharacters(in: .whitespaces) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw AgentSettingsError(name: name, "\"\(text)\": expected true or false")
        }
    }

    /// The setting `name` as a whole number in `range`.
    public func integer(_ name: String, in range: ClosedRange<Int>) throws(AgentSettingsError) -> Int? {
        guard let text = string(name)?.trimmingCharacters(in: .whitespaces) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw AgentSettingsError(name: name, "\"\(text)\": expected a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }

    /// The setting `name` as a number in `range`.
    public func number(_ name: String, in range: ClosedRange<Double>) throws(AgentSettingsError) -> Double? {
        guard let text = string(name)?.trimmingCharacters(in: .whitespaces) else { return nil }
        guard let value = Double(text), range.contains(value) else {
            throw AgentSettingsError(name: name, "\"\(text)\": expected a number from \(range.lowerBound) to \(range.upperBound)")
        }
        return value
    }
}
