import ArgumentParser
import Foundation
import LPRServer
import Logging
import ServiceLifecycle

/// `databus server`: the LPR server against any MQTT broker.
struct ServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the LPR server: store detections once, alert on watch-listed plates, watch camera health.",
        discussion: """
            The server speaks the LPR Server v3 protocol (topics under lprserver/) with any MQTT \
            broker: databus broker, mosquitto, EMQX... It keeps a persistent session, so \
            detections published while it is down are delivered when it returns, and acknowledges \
            a detection to the broker only once it is stored.

            Settings come from the flags, then the environment (MQTT_BROKER_HOST, MQTT_BROKER_PORT, \
            MQTT_USERNAME, MQTT_PASSWORD, MQTT_TLS_ENABLED, MQTT_CA_CERT, MQTT_CLIENT_CERT, \
            MQTT_CLIENT_KEY, MQTT_CLIENT_ID, MQTT_KEEPALIVE, MQTT_RECONNECT_DELAY, \
            MQTT_MAX_RECONNECT_ATTEMPTS, MQTT_CONNECTION_TIMEOUT, MQTT_LOG_LEVEL, LPR_DATABASE, \
            LPR_SHARE_GROUP, LPR_HEALTH_INTERVAL, LPR_RETENTION_DAYS, LPR_RETENTION_MAX_DETECTIONS, \
            LPR_HISTORY_RETENTION_DAYS, \
            LPR_WATCHLIST_MAX_DISTANCE), then the --env-file (.env when present). A wrong setting \
            stops the server with one line naming it. SIGTERM or SIGINT stops it gracefully.

            Several servers share the work with --share GROUP (MQTT 5 shared subscriptions) and one \
            PostgreSQL database: each detection is still stored once.

            Examples:
              databus server
              databus server --broker mqtt://127.0.0.1:1883 --database sqlite:/var/lib/lpr/lpr.sqlite
              databus server --broker mqtts://broker.site:8883 --cafile ca.crt --cert server.crt --key server.key
              databus server --database postgres://lpr:secret@db:5432/lpr --share lpr
            """
    )

    @OptionGroup var login: BrokerLoginOptions

    @Option(name: .customLong("client-id"), help: "The MQTT client id (default: lprserver_v3).")
    var clientID: String?

    @Option(
        help: ArgumentHelp(
            "The store: sqlite:PATH (default sqlite:./databus-data/lpr.sqlite) or postgres://user:password@host:port/database.",
            valueName: "url"
        )
    )
    var database: String?

    @Option(help: ArgumentHelp("Share the camera topics with other servers in this group ($share/GROUP/...).", valueName: "group"))
    var share: String?

    @Option(name: .customLong("env-file"), help: ArgumentHelp("A file of NAME=value settings (default: .env when present).", valueName: "file"))
    var environmentFile: String?

    func run() async throws {
        let settings: LPRServerSettings
        do {
            settings = try await LPRServerSettings.load(
                flags: try flags(),
                environmentFile: environmentFile ?? ".env",
                allowMissingFile: environmentFile == nil
            )
        } catch {
            FileHandle.standardError.write(Data("databus server: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let level = settings.logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "databus.server")
        let repository: any LPRRepository
        do {
            repository = try await settings.openRepository(logger: logger)
        } catch {
            FileHandle.standardError.write(Data("databus server: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let server = LPRServer(configuration: settings.configuration, repository: repository, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [server], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        do {
            try await group.run()
        } catch {
            FileHandle.standardError.write(Data("databus server: \(error)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// The flags as setting keys.
    private func flags() throws -> [String: String] {
        let keys = BrokerLoginOptions.Keys(
            host: "mqtt.broker.host",
            port: "mqtt.broker.port",
            tls: "mqtt.tls.enabled",
            username: "mqtt.username",
            password: "mqtt.password",
            caFile: "mqtt.ca.cert",
            certificate: "mqtt.client.cert",
            privateKey: "mqtt.client.key"
        )
        var values = try login.values(keys) { url in
            LPRServerSettings.Invalid(variable: "--broker", value: url, expected: "mqtt://HOST:PORT or mqtts://HOST:PORT")
        }
        if let clientID { values["mqtt.client.id"] = clientID }
        if let database { values["lpr.database"] = database }
        if let share { values["lpr.share.group"] = share }
        return values
    }
}
