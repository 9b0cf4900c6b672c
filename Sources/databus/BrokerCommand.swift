import ArgumentParser
import Foundation
import Logging
import MQTTBroker
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import UnixSignals

/// `databus broker`: the embedded MQTT broker, configured like mosquitto.
struct BrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broker",
        abstract: "Run the MQTT 3.1.1/5.0 broker, configured with a mosquitto.conf.",
        discussion: """
            Without -c the broker listens on 127.0.0.1 and ::1, port 1883, and allows anonymous \
            clients, as mosquitto 2 does. With -c it reads mosquitto.conf syntax; an unknown key, \
            a bad value or a missing file is an error naming the file, the line and the key. \
            SIGTERM or SIGINT shuts down gracefully (MQTT 5 clients are told 0x8B).

            Examples:
              databus broker
              databus broker -c /etc/mosquitto/mosquitto.conf
              databus broker -c mosquitto.conf --test-config
            """
    )

    @Option(name: [.short, .customLong("config-file")], help: "A configuration file in mosquitto.conf syntax.")
    var config: String?

    @Option(name: .shortAndLong, help: "Listen on this port (replaces the default listener; with -c, adds a listener).")
    var port: Int?

    @Flag(name: .shortAndLong, help: "Log everything (as log_type all).")
    var verbose = false

    @Flag(name: .customLong("test-config"), help: "Check the configuration file and exit: 0 when it is valid, 1 otherwise.")
    var testConfig = false

    func run() async throws {
        let configuration: BrokerConfiguration
        do {
            configuration = try loadConfiguration()
            // Password files, ACLs and JWT keys are read now, so a broken one stops us here.
            try await MQTTBroker.checkSecurityFiles(configuration)
        } catch let error as ConfigurationError {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode.failure
        }
        if testConfig {
            // TLS listeners' certificates, keys, CAs and CRLs must load too.
            do {
                for warning in try MQTTBroker.checkTLSFiles(configuration) { print("warning: \(warning)") }
            } catch {
                FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
                throw ExitCode.failure
            }
            print("\(config ?? "default configuration"): OK")
            return
        }

        // Parked connections give their memory back only with malloc set up for it: this runs
        // the executable again with glibc's tunables (once; DATABUS_MALLOC_TUNING=0 to skip).
        if configuration.parkIdleConnections > 0 { MallocTuning.reexecuteIfNeeded() }
        let logger = BrokerLogging.bootstrap(configuration)
        // Before anything uses the shared event loops.
        if configuration.threads > 0 { NIOSingletons.groupLoopCountSuggestion = configuration.threads }
        let broker = MQTTBroker(configuration: configuration, logger: logger)
        let group = ServiceGroup(
            configuration: .init(services: [broker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        )
        // SIGHUP re-reads the file and applies what can change without a restart. The trap is
        // installed before the broker listens, so an early SIGHUP cannot kill the process.
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let reloader = Task {
            for await _ in hangups {
                guard config != nil else {
                    logger.notice("SIGHUP: there is no configuration file to re-read")
                    continue
                }
                do {
                    let reloaded = try loadConfiguration()
                    try await broker.reload(reloaded)
                    BrokerLogging.setLevel(for: reloaded.logTypes)
                } catch {
                    logger.error("SIGHUP: keeping the current configuration: \(error)")
                }
            }
        }
        defer { reloader.cancel() }
        try await group.run()
    }

    /// The configuration file (or the standalone defaults) with the command-line flags applied.
    private func loadConfiguration() throws -> BrokerConfiguration {
        var configuration = config.map { _ in BrokerConfiguration() } ?? .standalone
        if let config { configuration = try MosquittoConfigParser.parse(fileAt: config) }
        if let port {
            guard (0...65_535).contains(port) else { throw ValidationError("port must be 0-65535") }
            if config == nil {
                for index in configuration.listeners.indices { configuration.listeners[index].port = port }
            } else {
                configuration.listeners.append(.init(port: port))
            }
        }
        if configuration.listeners.isEmpty {
            // mosquitto 2 with a file but no listener: loopback on 1883.
            configuration.listeners = BrokerConfiguration.standalone.listeners
        }
        if verbose { configuration.logTypes = [.all] }
        return configuration
    }
}

/// Sets up swift-log from `log_type` and `log_dest`.
enum BrokerLogging {
    /// The level every broker log handler follows; SIGHUP may change it.
    private static let currentLevel = NIOLockedValueBox(Logger.Level.info)

    static func setLevel(for types: Set<BrokerConfiguration.LogType>) {
        currentLevel.withLockedValue { $0 = level(for: types) }
    }

    static func bootstrap(_ configuration: BrokerConfiguration) -> Logger {
        let level = level(for: configuration.logTypes)
        currentLevel.withLockedValue { $0 = level }
        let destinations = configuration.logDestinations
        LoggingSystem.bootstrap { label in
            var handlers: [any LogHandler] = []
            for destination in destinations {
                switch destination {
                case .stdout: handlers.append(StreamLogHandler.standardOutput(label: label))
                case .stderr: handlers.append(StreamLogHandler.standardError(label: label))
                case .file(let path): handlers.append(FileLogHandler(label: label, path: path))
                case .none: break
                }
            }
            var inner: any LogHandler = handlers.isEmpty ? SwiftLogNoOpLogHandler() : MultiplexLogHandler(handlers)
            inner.logLevel = .trace
            return DynamicLevelLogHandler(inner: inner, level: currentLevel)
        }
        return Logger(label: "databus.broker")
    }

    static func level(for types: Set<BrokerConfiguration.LogType>) -> Logger.Level {
        if types.contains(.all) || types.contains(.debug) { return .debug }
        if types.contains(.information) || types.contains(.subscribe) || types.contains(.unsubscribe) { return .info }
        if types.contains(.notice) { return .notice }
        if types.contains(.warning) { return .warning }
        if types.contains(.error) { return .error }
        return .critical
    }
}

/// Forwards to another handler at a level shared by every broker logger, so that a reload
/// changes it everywhere.
struct DynamicLevelLogHandler: LogHandler {
    var inner: any LogHandler
    let level: NIOLockedValueBox<Logger.Level>

    var logLevel: Logger.Level {
        get { level.withLockedValue { $0 } }
        set { level.withLockedValue { $0 = newValue } }
    }

    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        inner.log(event: event)
    }
}

/// Appends log lines to a file (`log_dest file PATH`).
struct FileLogHandler: LogHandler {
    private let label: String
    private let file: FileHandle?
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, path: String) {
        self.label = label
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        self.file = FileHandle(forWritingAtPath: path)
        _ = try? self.file?.seekToEnd()
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        let fields = all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = "\(Date().ISO8601Format()) \(event.level) \(label): \(event.message)\(fields.isEmpty ? "" : " " + fields)\n"
        file?.write(Data(line.utf8))
    }
}
