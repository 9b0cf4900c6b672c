import ArgumentParser
import DatabusTools
import Foundation
import LPRModel
import LPRServer
import Logging
import MQTTBroker
import MQTTClient
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle

/// `databus up`: the broker, the LPR server and its HTTP side (REST API, live feed, dashboard)
/// in one process, with everything kept in one folder.
struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the whole LPR databus on this machine: broker, LPR server, REST API and live dashboard.",
        discussion: """
            One process: the embedded MQTT broker, the LPR server (connected to it over loopback MQTT \
            like any other client) and the HTTP server (dashboard at /, REST API under /api, /health, \
            /metrics). SIGTERM or SIGINT stops it gracefully.

            Everything lives in --data: mosquitto.conf (made on first start; edit it and run again), \
            passwd, acl, broker.db, lpr.sqlite, certs/ (a CA, the broker's and per-client \
            certificates), api-token (the admin token, printed once) and api-token-read-only.

            Anonymous MQTT clients are let in only while every listener is on a loopback address; \
            a listener on another address needs passwords (allow_anonymous false) or client \
            certificates (--mqtts).

            Examples:
              databus up
              databus up --demo 4                       # with 4 simulated cameras
              databus up --mqtts 0.0.0.0:8883           # cameras on the network with client certificates
              databus up --data /var/lib/databus --http 0.0.0.0:5000
            """
    )

    @Option(help: ArgumentHelp("The folder that holds everything.", valueName: "dir"))
    var data = "./databus-data"

    @Option(help: ArgumentHelp("Plain MQTT listener (replaces mosquitto.conf's plain listeners).", valueName: "host:port"))
    var mqtt: String?

    @Option(
        help: ArgumentHelp("MQTT over mutual TLS with the folder's certificates (replaces mosquitto.conf's TLS listeners).", valueName: "host:port")
    )
    var mqtts: String?

    @Option(help: ArgumentHelp("The dashboard and REST API.", valueName: "host:port"))
    var http = "127.0.0.1:5000"

    @Option(help: ArgumentHelp("Also run this many simulated cameras.", valueName: "n"))
    var demo = 0

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel = "info"

    func validate() throws {
        for (name, value) in [("--mqtt", mqtt), ("--mqtts", mqtts), ("--http", http)] {
            if let value, Self.hostAndPort(value) == nil { throw ValidationError("\(name): expected HOST:PORT, found \"\(value)\"") }
        }
        guard (0...200).contains(demo) else { throw ValidationError("--demo: from 0 to 200 cameras") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level \"\(logLevel)\"") }
    }

    func run() async throws {
        let folder = UpDataFolder(path: data)
        let contents: UpDataFolder.Contents
        let brokerConfiguration: BrokerConfiguration
        do {
            contents = try folder.prepare()
            brokerConfiguration = try folder.brokerConfiguration(mqtt: mqtt.flatMap(Self.hostAndPort), mqtts: mqtts.flatMap(Self.hostAndPort))
            try folder.checkListeners(brokerConfiguration)
            try await MQTTBroker.checkSecurityFiles(brokerConfiguration)
        } catch {
            FileHandle.standardError.write(Data("databus up: \(error)\n".utf8))
            throw ExitCode.failure
        }
        // As in `databus broker`: malloc set up for parked connections to give memory back.
        if brokerConfiguration.parkIdleConnections > 0 { MallocTuning.reexecuteIfNeeded() }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "databus.up")
        if brokerConfiguration.threads > 0 {
            // The broker, the LPR server and HTTP share one set of event loops here, sized before
            // the configuration is read: the key cannot apply, and is not silently dropped either.
            logger.warning(
                "threads \(brokerConfiguration.threads) in \(folder.configurationFile) applies to databus broker only; databus up shares its event loops with the LPR server and HTTP: start it with NIO_SINGLETON_GROUP_LOOP_COUNT=\(brokerConfiguration.threads) instead"
            )
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        let broker = MQTTBroker(configuration: brokerConfiguration, logger: Logger(label: "databus.broker"))
        let addresses: [SocketAddress]
        do {
            addresses = try await broker.start()
        } catch {
            let hint = "\(error)".contains("Address already in use") ? " (another broker on that port? choose one with --mqtt HOST:PORT)" : ""
            FileHandle.standardError.write(Data("databus up: the broker could not start: \(error)\(hint)\n".utf8))
            throw ExitCode.failure
        }
        // The LPR server connects to the first plain listener, over loopback when it listens there.
        let plainIndex = brokerConfiguration.listeners.firstIndex { !$0.tls.isEnabled }!
        let plain = brokerConfiguration.listeners[plainIndex]
        let mqttPort = addresses.indices.contains(plainIndex) ? (addresses[plainIndex].port ?? plain.port) : plain.port
        let mqttHost = UpDataFolder.isLoopback(plain.address) ? (plain.address == "localhost" ? "127.0.0.1" : plain.address!) : "127.0.0.1"
        let tlsAddresses = brokerConfiguration.listeners.indices.filter { brokerConfiguration.listeners[$0].tls.isEnabled }
            .compactMap { addresses.indices.contains($0) ? addresses[$0] : nil }

        var mqttConfiguration = MQTTClient.Configuration(host: mqttHost, port: mqttPort, clientIdentifier: "lprserver_v3")
        mqttConfiguration.username = UpDataFolder.serverUsername
        mqttConfiguration.password = Array(contents.serverPassword.utf8)
        let repository: any LPRRepository
        do {
            repository = try SQLiteLPRRepository(path: folder.databaseFile)
        } catch {
            await broker.shutdown()
            FileHandle.standardError.write(Data("databus up: cannot open \(folder.databaseFile): \(error)\n".utf8))
            throw ExitCode.failure
        }
        let server = LPRServer(
            configuration: LPRServerConfiguration(mqtt: mqttConfiguration),
            repository: repository,
            logger: Logger(label: "databus.lpr-server")
        )

        let (httpHost, httpPort) = Self.hostAndPort(http)!
        if !UpDataFolder.isLoopback(httpHost) {
            Logger(label: "databus.http").warning(
                "the dashboard and REST API listen on \(http) over plain HTTP: the API token crosses the network in clear text; put a TLS reverse proxy in front of it, or keep --http on 127.0.0.1"
            )
        }
        var httpConfiguration = LPRHTTPConfiguration(
            host: httpHost,
            port: httpPort,
            tokens: [APIToken(contents.adminToken, access: .admin), APIToken(contents.readOnlyToken, access: .readOnly)]
        )
        httpConfiguration.metrics = {
            var bytes: [UInt8] = []
            registry.emit(into: &bytes)
            return String(decoding: bytes + broker.prometheusText(), as: UTF8.self)
        }
        let banner = Banner(
            folder: folder,
            contents: contents,
            mqtt: (mqttHost == "::1" ? "[::1]" : mqttHost, mqttPort),
            anonymous: UpDataFolder.isLoopback(plain.address)
                && (brokerConfiguration.perListenerSettings ? (plain.allowAnonymous ?? false) : brokerConfiguration.allowAnonymous),
            tls: tlsAddresses,
            command: Self.commandName
        )
        let demoCount = demo
        httpConfiguration.onServerRunning = { address in
            let url = "http://\(Self.urlHost(httpHost)):\(address?.port ?? httpPort)/"
            if demoCount > 0 { await Self.addDemoWatchlistEntry(server, logger: logger) }
            logger.info("ready", metadata: ["http.url": "\(url)", "mqtt.port": "\(mqttPort)", "data": "\(folder.path)"])
            FileHandle.standardOutput.write(Data((banner.text(dashboard: url) + "\n").utf8))
            if contents.madeAdminToken { folder.markTokenShown() }
        }
        var services: [any Service] = [RunningBroker(broker: broker), server]
        if demo > 0 {
            services.append(
                DemoCameras(
                    count: demo,
                    host: mqttHost,
                    port: mqttPort,
                    username: UpDataFolder.serverUsername,
                    password: contents.serverPassword,
                    dataDirectory: (folder.path as NSString).appendingPathComponent("demo-cameras"),
                    logger: Logger(label: "databus.demo")
                )
            )
        }
        services.append(buildApplication(server: server, configuration: httpConfiguration, logger: Logger(label: "databus.http")))
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await broker.shutdown()
            let hint =
                "\(error)".contains("Address already in use") ? " (is the dashboard's port \(http) taken? choose one with --http HOST:PORT)" : ""
            FileHandle.standardError.write(Data("databus up: \(error)\(hint)\n".utf8))
            throw ExitCode.failure
        }
    }

    /// `HOST:PORT`, `[::1]:PORT` or `:PORT` (every address).
    static func hostAndPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "0.0.0.0" : host, port)
    }

    static func urlHost(_ host: String) -> String {
        if host == "0.0.0.0" || host == "::" { return "127.0.0.1" }
        return host.contains(":") ? "[\(host)]" : host
    }

    /// How to run `databus` as the user did: `swift run databus` from a checkout, `databus` when installed.
    static var commandName: String {
        CommandLine.arguments.first.map { $0.contains(".build/") ? "swift run databus" : "databus" } ?? "databus"
    }

    /// `--demo` reads `DEMO42` now and then: put it on the watch-list so hits show.
    static func addDemoWatchlistEntry(_ server: LPRServer, logger: Logger) async {
        guard !server.watchlist().entries.contains(where: { $0.id == "demo" }) else { return }
        do {
            try await server.saveWatchlistEntry(
                WatchlistEntry(id: "demo", plate: DemoCameras.watchedPlate, reason: "demo: reported stolen", level: .critical)
            )
        } catch {
            logger.warning("could not add the demo watch-list entry", metadata: ["lpr.error": "\(error)"])
        }
    }
}

/// The broker, started before the group (the LPR server needs its port), stopped with it.
struct RunningBroker: Service {
    let broker: MQTTBroker

    func run() async throws {
        try? await gracefulShutdown()
        await broker.shutdown()
    }
}
