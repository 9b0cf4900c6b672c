import ArgumentParser
import EdgeAgents
import Foundation
import Logging
import MQTTClient

/// `databus gateway`: the site gateway's bridge between MQTT and its local web API.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Bridge MQTT to the site gateway's local web API (Modbus requests, periodic state).",
        discussion: """
            Connects to the broker with TLS as the gateway: username = serialNumber from \
            GET /api/crypto, password = a JWT from POST /api/jwt/create, both fetched fresh before \
            every connect and reconnect (reconnects after 1 s, doubling to 30 s).

            Requests on iamcat/modbus/request (function_code 3 or 4: read; 16: write) become \
            GET /api/inverter/modbus calls; each answer, or {"success": false, "error": ...}, is \
            published on iamcat/modbus/response with the request. Once connected and then every 5 s \
            GET /api/state is published on iamcat/state, or a fallback state with status \
            "api_unavailable" when the API does not answer.

            Settings, from flags, the environment, or the mqtt.env file (in that order):
              MQTT_BROKER_HOST, MQTT_BROKER_PORT (8883)    the broker
              WEB_CONTAINER_HOST, WEB_CONTAINER_PORT (80)   the local web API
              MQTT_ROOT_CA                                  the CA (PEM; may be one line with \\n escapes);
                                                            --cafile FILE instead; system trust otherwise

            --check exits 0 when the running gateway's last state publish succeeded within 15 s, 1 \
            otherwise: a container health check (HEALTHCHECK CMD databus gateway --check).

            Examples:
              databus gateway
              MQTT_BROKER_HOST=broker.site databus gateway --cafile /etc/gateway/ca.crt
            """
    )

    @Option(name: .customLong("broker-host"), help: "The broker (default: MQTT_BROKER_HOST, else localhost).")
    var brokerHost: String?

    @Option(name: .customLong("broker-port"), help: "The broker's port (default: MQTT_BROKER_PORT, else 8883).")
    var brokerPort: Int?

    @Option(name: .customLong("web-host"), help: "The web API's host (default: WEB_CONTAINER_HOST, else localhost).")
    var webHost: String?

    @Option(name: .customLong("web-port"), help: "The web API's port (default: WEB_CONTAINER_PORT, else 80).")
    var webPort: Int?

    @Option(help: ArgumentHelp("The CA that signed the broker's certificate (PEM), instead of MQTT_ROOT_CA.", valueName: "file"))
    var cafile: String?

    @Flag(name: .customLong("no-tls"), help: "Plain TCP to the broker: for tests and trusted networks only.")
    var noTLS = false

    @Option(name: .customLong("topic-prefix"), help: "The first level of the gateway's topics.")
    var topicPrefix = "iamcat"

    @Option(name: .customLong("env-file"), help: ArgumentHelp("The settings file.", valueName: "file"))
    var environmentFile = "mqtt.env"

    @Option(name: .customLong("health-file"), help: ArgumentHelp("Where the last state publish is recorded for --check.", valueName: "file"))
    var healthFile = GatewayHealth.defaultPath

    @Option(name: .customLong("state-interval"), help: "Seconds between state publishes.")
    var stateInterval = 5.0

    @Option(name: .customLong("http-timeout"), help: "Seconds one web API call may take.")
    var httpTimeout = 10.0

    @Option(name: .customLong("client-id"), help: "The MQTT client identifier (default: gateway- and 8 random hex digits).")
    var clientIdentifier: String?

    @Flag(help: "Exit 0 when the running gateway's last state publish succeeded within 15 s, else 1.")
    var check = false

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        for port in [brokerPort, webPort].compactMap({ $0 }) where !(1...65_535).contains(port) {
            throw ValidationError("Invalid port \(port): it must be 1 to 65535.")
        }
        guard stateInterval > 0 else { throw ValidationError("--state-interval must be more than 0.") }
        guard httpTimeout > 0 else { throw ValidationError("--http-timeout must be more than 0.") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("Invalid --log-level \(logLevel).") }
    }

    func run() async throws {
        if check {
            let (healthy, detail) = GatewayHealth.check(path: healthFile)
            print(healthy ? "healthy: \(detail)" : "unhealthy: \(detail)")
            throw healthy ? ExitCode.success : ExitCode.failure
        }
        let logger = AgentLogging.bootstrap(label: "databus.gateway", level: logLevel)
        let options: Gateway.Options
        do {
            var flags: [String: String] = [:]
            if let brokerHost { flags["MQTT_BROKER_HOST"] = brokerHost }
            if let brokerPort { flags["MQTT_BROKER_PORT"] = String(brokerPort) }
            if let webHost { flags["WEB_CONTAINER_HOST"] = webHost }
            if let webPort { flags["WEB_CONTAINER_PORT"] = String(webPort) }
            let settings = try await AgentSettings(flags: flags, environmentFile: environmentFile)
            let tls = noTLS ? nil : try GatewayTLS.trust(rootCA: settings.string("MQTT_ROOT_CA", isSecret: false), caFile: cafile)
            options = Gateway.Options(
                brokerHost: settings.string("MQTT_BROKER_HOST") ?? "localhost",
                brokerPort: try settings.port("MQTT_BROKER_PORT") ?? (noTLS ? 1883 : 8883),
                webHost: settings.string("WEB_CONTAINER_HOST") ?? "localhost",
                webPort: try settings.port("WEB_CONTAINER_PORT") ?? 80,
                tls: tls,
                topicPrefix: topicPrefix,
                stateInterval: .milliseconds(Int64(stateInterval * 1000)),
                httpTimeout: .milliseconds(Int64(httpTimeout * 1000)),
                version: DatabusVersion.current,
                healthFile: healthFile,
                clientIdentifier: clientIdentifier
            )
        } catch {
            AgentLogging.fail("Error: \(error)")
            throw ExitCode.validationFailure
        }
        let gateway = Gateway(options: options, logger: logger)
        logger.info(
            "gateway starting",
            metadata: ["broker": "\(options.brokerHost):\(options.brokerPort)", "web": "\(options.webHost):\(options.webPort)"]
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await gateway.run() }
            group.addTask {
                await AgentSignals.waitForTermination()
                throw CancellationError()
            }
            _ = try? await group.next()
            group.cancelAll()
        }
    }
}
