import Configuration
import Foundation
import Logging
import MQTTClient
import MQTTCore
import SystemPackage

/// The LPR server's settings from flags, then environment variables, then a `.env`-style
/// file, in that order (swift-configuration's provider hierarchy), under the seed's names.
///
/// | setting | variable | default |
/// | --- | --- | --- |
/// | broker host | `MQTT_BROKER_HOST` | `localhost` |
/// | broker port | `MQTT_BROKER_PORT` | 1883, 8883 with TLS |
/// | user name, password | `MQTT_USERNAME`, `MQTT_PASSWORD` | none |
/// | TLS | `MQTT_TLS_ENABLED`, `MQTT_CA_CERT`, `MQTT_CLIENT_CERT`, `MQTT_CLIENT_KEY` | off |
/// | client id | `MQTT_CLIENT_ID` | `lprserver_v3` |
/// | keep alive (s) | `MQTT_KEEPALIVE` | 60 |
/// | reconnect delay (s) | `MQTT_RECONNECT_DELAY` | 5 |
/// | reconnect attempts | `MQTT_MAX_RECONNECT_ATTEMPTS` | unlimited (0 too) |
/// | connect timeout (s) | `MQTT_CONNECTION_TIMEOUT` | 30 |
/// | log level | `MQTT_LOG_LEVEL` | `INFO` |
/// | MQTT version | `MQTT_PROTOCOL_VERSION` (`5` or `3.1.1`) | 5 |
/// | store | `LPR_DATABASE` (`sqlite:PATH` or `postgres://...`) | `sqlite:./databus-data/lpr.sqlite` |
/// | shared subscription group | `LPR_SHARE_GROUP` | none |
/// | session expiry (s) | `LPR_SESSION_EXPIRY` | 86400; 0 with a share group |
/// | camera health interval (s) | `LPR_HEALTH_INTERVAL` | 30 (offline after 3 silent intervals) |
/// | retention | `LPR_RETENTION_DAYS`, `LPR_RETENTION_MAX_DETECTIONS` | 90 days, no count limit |
/// | history retention (health history, alerts, commands) | `LPR_HISTORY_RETENTION_DAYS` | 7 days |
/// | watch-list edit distance | `LPR_WATCHLIST_MAX_DISTANCE` | 1 |
/// | detections per transaction | `LPR_BATCH_SIZE` | 1000 |
public struct LPRServerSettings: Sendable {
    /// The server's configuration.
    public var configuration: LPRServerConfiguration
    /// Where the store is: `sqlite:PATH` or a `postgres://` URL.
    public var database: String
    /// The log level asked for.
    public var logLevel: Logger.Level

    /// A setting that cannot be used, named by its variable.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public var variable: String
        public var value: String
        public var expected: String
        public var description: String { "\(variable)=\(value): expected \(expected)" }

        public init(variable: String, value: String, expected: String) {
            self.variable = variable
            self.value = value
            self.expected = expected
        }
    }

    /// The environment variable a setting key is read from (`mqtt.broker.host` → `MQTT_BROKER_HOST`).
    public static func variable(for key: String) -> String { key.replacingOccurrences(of: ".", with: "_").uppercased() }

    /// Reads the settings.
    ///
    /// - Parameters:
    ///   - flags: values given on the command line, by key (`mqtt.broker.host`); they win.
    ///   - environment: the process environment.
    ///   - environmentFile: a `.env` file of `NAME=value` lines; a missing file is an error
    ///     unless `allowMissingFile`.
    public static func load(
        flags: [String: String],
        environment: [String: String] = ProcessInfo.processInfo.environment,
        environmentFile: String? = nil,
        allowMissingFile: Bool = false
    ) async throws -> LPRServerSettings {
        var providers: [any ConfigProvider] = [
            InMemoryProvider(
                name: "flags",
                values: Dictionary(
                    uniqueKeysWithValues: flags.map { (AbsoluteConfigKey(ConfigKey($0.key)), ConfigValue(.string($0.value), isSecret: false)) }
                )
            ),
            EnvironmentVariablesProvider(environmentVariables: environment, secretsSpecifier: .specific(["MQTT_PASSWORD"])),
        ]
        if let environmentFile {
            do {
                providers.append(
                    try await EnvironmentVariablesProvider(
                        environmentFilePath: FilePath(environmentFile),
                        allowMissing: allowMissingFile,
                        secretsSpecifier: .specific(["MQTT_PASSWORD"])
                    )
                )
            } catch {
                throw Invalid(variable: "--env-file", value: environmentFile, expected: "a readable file of NAME=value lines (\(error))")
            }
        }
        let reader = ConfigReader(providers: providers)
        let read = SettingReader(reader: reader)

        let tlsEnabled = try read.bool("mqtt.tls.enabled") ?? false
        let host = read.string("mqtt.broker.host") ?? "localhost"
        let port = try read.int("mqtt.broker.port", in: 1...65_535) ?? (tlsEnabled ? 8883 : 1883)
        let clientID = read.string("mqtt.client.id") ?? "lprserver_v3"
        let version: MQTTProtocolVersion
        switch read.string("mqtt.protocol.version") ?? "5" {
        case "5", "5.0": version = .v5
        case "3.1.1", "4": version = .v3_1_1
        case let other: throw Invalid(variable: variable(for: "mqtt.protocol.version"), value: other, expected: "5 or 3.1.1")
        }
        var tls: MQTTClient.TLS?
        if tlsEnabled {
            var settings = MQTTClient.TLS(
                trust: read.string("mqtt.ca.cert").map { .caFile($0) } ?? .systemDefault,
                certificateFile: read.string("mqtt.client.cert"),
                privateKeyFile: read.string("mqtt.client.key")
            )
            for (key, file) in [
                ("mqtt.ca.cert", read.string("mqtt.ca.cert")), ("mqtt.client.cert", settings.certificateFile),
                ("mqtt.client.key", settings.privateKeyFile),
            ] {
                if let file, !FileManager.default.isReadableFile(atPath: file) {
                    throw Invalid(variable: variable(for: key), value: file, expected: "a readable PEM file")
                }
            }
            if (settings.certificateFile == nil) != (settings.privateKeyFile == nil) {
                throw Invalid(variable: "MQTT_CLIENT_CERT/MQTT_CLIENT_KEY", value: "one of them", expected: "both or neither")
            }
            settings.verifiesHostname = try read.bool("mqtt.tls.verify.hostname") ?? true
            tls = settings
        }
        var mqtt = MQTTClient.Configuration(host: host, port: port, clientIdentifier: clientID, protocolVersion: version, tls: tls)
        mqtt.username = read.string("mqtt.username")
        mqtt.password = read.string("mqtt.password", secret: true).map { Array($0.utf8) }
        mqtt.keepAlive = .seconds(try read.int("mqtt.keepalive", in: 0...65_535) ?? 60)
        let reconnectDelay = try read.double("mqtt.reconnect.delay", in: 0.01...3600) ?? 5
        let attempts = try read.int("mqtt.max.reconnect.attempts", in: 0...Int.max)
        mqtt.reconnect = ReconnectPolicy(
            initialDelay: .milliseconds(Int64(reconnectDelay * 1000)),
            maximumDelay: .seconds(max(60, reconnectDelay)),
            maximumAttempts: attempts == 0 ? nil : attempts
        )
        mqtt.connectTimeout = .milliseconds(Int64((try read.double("mqtt.connection.timeout", in: 0.1...3600) ?? 30) * 1000))

        var configuration = LPRServerConfiguration(mqtt: mqtt)
        configuration.shareGroup = read.string("lpr.share.group")
        if let group = configuration.shareGroup, group.isEmpty || group.contains(where: { "/+#".contains($0) }) {
            throw Invalid(variable: variable(for: "lpr.share.group"), value: group, expected: "a name without '/', '+' or '#'")
        }
        // Behind a shared group a member's session ends with its connection: brokers such as
        // mosquitto keep handing a disconnected persistent member its share of the traffic,
        // which would then wait for that member to return. Cameras re-sending unacknowledged
        // detections (as `databus camera` does) give the at-least-once there.
        let defaultExpiry = configuration.shareGroup == nil ? 86_400 : 0
        configuration.sessionExpiry = .seconds(try read.int("lpr.session.expiry", in: 0...Int(UInt32.max)) ?? defaultExpiry)
        let healthInterval = try read.double("lpr.health.interval", in: 0.1...86_400) ?? 30
        configuration.cameraHealth.staleAfter = .milliseconds(Int64(healthInterval * 3000))
        if let days = try read.double("lpr.retention.days", in: 0...36_500) {
            configuration.retentionAge = days == 0 ? nil : .seconds(days * 86_400)
        }
        configuration.retentionMaximumDetections = try read.int("lpr.retention.max.detections", in: 1...Int.max)
        if let days = try read.double("lpr.history.retention.days", in: 0...36_500) {
            configuration.historyRetentionAge = days == 0 ? nil : .seconds(days * 86_400)
        }
        configuration.watchlistMaximumDistance = try read.int("lpr.watchlist.max.distance", in: 0...3) ?? 1
        configuration.maximumBatchSize = try read.int("lpr.batch.size", in: 1...10_000) ?? 1000
        configuration.instanceID = read.string("lpr.instance.id") ?? "\(clientID)@\(ProcessInfo.processInfo.hostName):\(getpid())"
        if configuration.shareGroup == nil { configuration.instanceID = read.string("lpr.instance.id") ?? clientID }

        let database = read.string("lpr.database") ?? "sqlite:./databus-data/lpr.sqlite"
        guard database.hasPrefix("sqlite:") || database.hasPrefix("postgres://") || database.hasPrefix("postgresql://") else {
            throw Invalid(
                variable: variable(for: "lpr.database"),
                value: database,
                expected: "sqlite:PATH or postgres://user:password@host:port/database"
            )
        }
        let logLevel: Logger.Level
        switch (read.string("mqtt.log.level") ?? "INFO").uppercased() {
        case "TRACE": logLevel = .trace
        case "DEBUG": logLevel = .debug
        case "INFO": logLevel = .info
        case "NOTICE": logLevel = .notice
        case "WARNING", "WARN": logLevel = .warning
        case "ERROR": logLevel = .error
        case "CRITICAL": logLevel = .critical
        case let other: throw Invalid(variable: variable(for: "mqtt.log.level"), value: other, expected: "DEBUG, INFO, WARNING, ERROR or CRITICAL")
        }
        return LPRServerSettings(configuration: configuration, database: database, logLevel: logLevel)
    }

    /// Opens the store the settings name.
    public func openRepository(logger: Logger) async throws -> any LPRRepository {
        if database.hasPrefix("sqlite:") {
            return try SQLiteLPRRepository(path: String(database.dropFirst("sqlite:".count)))
        }
        return try await PostgresLPRRepository(url: database, logger: logger)
    }
}

/// Reads settings as strings and checks them, naming the variable of a bad one.
private struct SettingReader {
    let reader: ConfigReader

    func string(_ key: String, secret: Bool = false) -> String? {
        guard let value = reader.string(forKey: ConfigKey(key), isSecret: secret) else { return nil }
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        return trimmed.isEmpty ? nil : trimmed
    }

    func int(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
        guard let text = string(key) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw LPRServerSettings.Invalid(
                variable: LPRServerSettings.variable(for: key),
                value: text,
                expected: "a whole number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return value
    }

    func double(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let text = string(key) else { return nil }
        guard let value = Double(text), range.contains(value) else {
            throw LPRServerSettings.Invalid(
                variable: LPRServerSettings.variable(for: key),
                value: text,
                expected: "a number from \(range.lowerBound) to \(range.upperBound)"
            )
        }
        return value
    }

    func bool(_ key: String) throws -> Bool? {
        guard let text = string(key) else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default: throw LPRServerSettings.Invalid(variable: LPRServerSettings.variable(for: key), value: text, expected: "true or false")
        }
    }
}
