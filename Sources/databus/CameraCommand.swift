import ArgumentParser
import EdgeAgents
import Foundation
import LPRModel
import Logging
import MQTTClient

/// `databus camera`: the LPR camera agent, or a fleet of simulated cameras.
struct CameraCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "camera",
        abstract: "Run the LPR camera agent: deliver every detection to the LPR server, report health, take configuration and commands.",
        discussion: """
            The camera side of the LPR Server v3 protocol (topics lprserver/cameras/{id}/...), against \
            any MQTT broker. The AI engine hands detections over as JSON lines (--input FILE or - for \
            standard input), by HTTP (--listen 127.0.0.1:8088: POST /detections, GET /status) or as \
            one JSON file each in a folder (--watch DIR; a file waits in DIR/.taken until the server has it). \
            The agent fills in message_id, timestamp, camera_id and checkpoint_id when missing, \
            journals each detection in its data folder and publishes it (QoS 1) until the server \
            acknowledges it on detection/ack, sending it again when no ack comes (--ack-timeout, \
            doubling to 5 minutes). A camera offline for hours, or an agent killed, still delivers \
            every detection; the server stores each once. A rejected detection is logged and not \
            sent again.

            Health (CPU, memory, disk, uptime from /proc; temperature from /sys/class/thermal) goes \
            out every --health-interval seconds and on health/request; status is online (retained) \
            with offline as the will. config/update is applied (confidence_threshold and \
            detection_interval filter what is published), kept in the data folder and reported on \
            config. The edge watch-list (lprserver/blacklist/updates) is kept in the data folder and \
            --on-match CMD runs at once for a matching plate, broker or no broker.

            Commands on control run --on-command CMD (the command JSON on its standard input; a JSON \
            object on its standard output is the result; exit status 0 answers ok, 3 unsupported, \
            anything else error; killed after --command-timeout). Without a hook restart_camera, \
            get_status and ping are built in and anything else is unsupported.

            --simulate N runs N simulated cameras (CAM001, CAM002, ...) in one process, each making \
            --rate detections a second (seeded by --seed: the same seed makes the same detections), \
            with health, configuration and commands as real cameras have; about 1 % of their \
            plates are taken from the edge watch-list, so that the server raises alerts.

            Settings come from the flags, then the environment (MQTT_BROKER_HOST, MQTT_BROKER_PORT, \
            MQTT_USERNAME, MQTT_PASSWORD, MQTT_TLS_ENABLED, MQTT_CA_CERT, MQTT_CLIENT_CERT, \
            MQTT_CLIENT_KEY, MQTT_CLIENT_ID, MQTT_KEEPALIVE, MQTT_RECONNECT_DELAY, \
            MQTT_MAX_RECONNECT_DELAY, MQTT_MAX_RECONNECT_ATTEMPTS, MQTT_CONNECTION_TIMEOUT, MQTT_PROTOCOL_VERSION, MQTT_LOG_LEVEL, \
            CAMERA_ID, CHECKPOINT_ID, CAMERA_DATA_DIR, CAMERA_HEALTH_INTERVAL, CAMERA_ACK_TIMEOUT, \
            CAMERA_ON_COMMAND, CAMERA_COMMAND_TIMEOUT, CAMERA_ON_MATCH, CAMERA_MATCH_TIMEOUT, \
            CAMERA_WATCHLIST_MAX_DISTANCE), then the --env-file (.env when present). A wrong setting \
            stops the agent with one line naming it. SIGTERM or SIGINT stops it gracefully.

            Examples:
              my-engine | databus camera --camera-id CAM017 --checkpoint-id CP004 --input -
              databus camera --camera-id CAM017 --listen 127.0.0.1:8088 --on-match /opt/barrier/close.sh
              databus camera --watch /var/spool/lpr --broker mqtts://broker.site:8883 --cafile ca.crt
              databus camera --simulate 20 --rate 2 --seed 42
            """
    )

    @Option(name: .customLong("camera-id"), help: "The camera's id (default: CAMERA_ID, else CAM001).")
    var cameraID: String?

    @Option(name: .customLong("checkpoint-id"), help: "The camera's checkpoint (default: CHECKPOINT_ID, else CP001).")
    var checkpointID: String?

    @OptionGroup var login: BrokerLoginOptions

    @Option(name: .customLong("client-id"), help: "The MQTT client id (default: camera-{camera id}).")
    var clientID: String?

    @Option(name: .customLong("mqtt-version"), help: "5 (default) or 3.1.1.")
    var mqttVersion: String?

    @Option(help: ArgumentHelp("Detections as JSON lines from this file; - for standard input.", valueName: "file"))
    var input: String?

    @Option(help: ArgumentHelp("Take detections by HTTP here: POST /detections.", valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp("Take each *.json file in this folder as a detection.", valueName: "dir"))
    var watch: String?

    @Option(help: ArgumentHelp("Run this many simulated cameras (CAM001...).", valueName: "n"))
    var simulate: Int?

    @Option(help: "Detections per second per simulated camera.")
    var rate = 1.0

    @Option(help: "The simulation's seed: the same seed makes the same detections.")
    var seed: UInt64 = 1

    @Option(help: ArgumentHelp("Stop each simulated camera after this many detections.", valueName: "n"))
    var count: Int?

    @Option(name: .customLong("health-interval"), help: ArgumentHelp("Seconds between health messages (default 30).", valueName: "s"))
    var healthInterval: Double?

    @Option(
        name: .customLong("ack-timeout"),
        help: ArgumentHelp("Seconds to wait for the server's ack before sending again (default 10).", valueName: "s")
    )
    var ackTimeout: Double?

    @Option(name: .customLong("data-dir"), help: ArgumentHelp("Where the journal, outbox, configuration and watch-list are kept.", valueName: "dir"))
    var dataDirectory: String?

    @Option(name: .customLong("on-command"), help: ArgumentHelp("Run this shell command for each control command.", valueName: "cmd"))
    var onCommand: String?

    @Option(name: .customLong("command-timeout"), help: ArgumentHelp("Seconds --on-command may run (default 30).", valueName: "s"))
    var commandTimeout: Double?

    @Option(name: .customLong("on-match"), help: ArgumentHelp("Run this shell command for each edge watch-list match.", valueName: "cmd"))
    var onMatch: String?

    @Option(name: .customLong("match-timeout"), help: ArgumentHelp("Seconds --on-match may run (default 10).", valueName: "s"))
    var matchTimeout: Double?

    @Flag(
        name: .customLong("exit-when-done"),
        help: "Exit once the input has ended (or --count is made) and the server has acknowledged every detection."
    )
    var exitWhenDone = false

    @Option(name: .customLong("env-file"), help: ArgumentHelp("A file of NAME=value settings (default: .env when present).", valueName: "file"))
    var environmentFile: String?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical (default: MQTT_LOG_LEVEL, else info).")
    var logLevel: String?

    func validate() throws {
        if let simulate, simulate < 1 { throw ValidationError("--simulate needs 1 or more cameras.") }
        if simulate != nil && (input != nil || watch != nil) {
            throw ValidationError("--simulate makes its own detections: drop --input and --watch.")
        }
        if rate < 0 { throw ValidationError("--rate must be 0 or more.") }
        if let count, count < 0 { throw ValidationError("--count must be 0 or more.") }
        if exitWhenDone && input == nil && (simulate == nil || count == nil) {
            throw ValidationError("--exit-when-done needs --input, or --simulate with --count.")
        }
        if let listen, Self.hostAndPort(listen) == nil { throw ValidationError("--listen wants HOST:PORT, e.g. 127.0.0.1:8088.") }
        if let logLevel, Logger.Level(rawValue: logLevel) == nil { throw ValidationError("Invalid --log-level \(logLevel).") }
    }

    func run() async throws {
        let settings: CameraSettings
        do {
            if let environmentFile, !FileManager.default.fileExists(atPath: environmentFile) {
                throw AgentSettingsError(name: "--env-file", "\(environmentFile) does not exist")
            }
            settings = try await CameraSettings.load(flags: try flags(), environmentFile: environmentFile ?? ".env")
        } catch {
            AgentLogging.fail("databus camera: \(error)")
            throw ExitCode(2)
        }
        let logger = AgentLogging.bootstrap(label: "databus.camera", level: logLevel ?? settings.logLevel.rawValue)
        let cameras: [(id: String, checkpoint: String)]
        if let simulate {
            cameras = (0..<simulate).map { (CameraSimulator.cameraID(index: $0), checkpointID ?? CameraSimulator.checkpointID(index: $0)) }
        } else {
            cameras = [(settings.cameraID, settings.checkpointID)]
        }
        var opened: [CameraAgent] = []
        do {
            for (index, camera) in cameras.enumerated() {
                var mqtt = settings.mqtt
                if simulate != nil {
                    mqtt.clientIdentifier = settings.mqtt.clientIdentifier.isEmpty ? "" : "\(settings.mqtt.clientIdentifier)-\(index + 1)"
                }
                let options = CameraAgent.Options(
                    cameraID: camera.id,
                    checkpointID: camera.checkpoint,
                    dataDirectory: settings.dataDirectory(for: camera.id, cameras: cameras.count),
                    healthInterval: settings.healthInterval,
                    tracking: DetectionTracker.Policy(ackTimeout: settings.ackTimeout),
                    commandHook: settings.commandHook,
                    matchHook: settings.matchHook,
                    watchlistMaximumDistance: settings.watchlistMaximumDistance,
                    simulatedHealthSeed: simulate != nil ? seed : nil
                )
                opened.append(try await CameraAgent.open(options: options, mqtt: mqtt, logger: logger))
            }
        } catch {
            AgentLogging.fail("databus camera: \(error)")
            throw ExitCode.failure
        }
        let listener: DetectionHTTPListener?
        do {
            if let listen, let address = Self.hostAndPort(listen) {
                let bound = try await DetectionHTTPListener.bind(host: address.host, port: address.port, agent: opened[0], logger: logger)
                listener = bound
                logger.notice("taking detections by HTTP", metadata: ["http.address": "\(address.host):\(bound.port)"])
            } else {
                listener = nil
            }
        } catch {
            AgentLogging.fail("databus camera: cannot listen on \(listen ?? ""): \(error)")
            throw ExitCode.failure
        }
        logger.info(
            "camera agent starting",
            metadata: ["mqtt.broker": "\(settings.mqtt.host):\(settings.mqtt.port)", "camera.count": "\(opened.count)"]
        )

        let agents = opened
        let exitWhenDone = self.exitWhenDone
        let input = self.input
        let watch = self.watch
        let rate = self.rate
        let count = self.count
        let seed = self.seed
        let simulated = simulate != nil
        var failure: (any Error)?
        await withTaskGroup(of: (any Error)?.self) { group in
            let running = agents.map { agent in Task { await agent.run() } }
            // The inputs; `done` ends the run when --exit-when-done is given.
            group.addTask {
                do {
                    try await withThrowingTaskGroup(of: Void.self) { inputs in
                        if let listener { inputs.addTask { await listener.run() } }
                        if let watch { inputs.addTask { try await DetectionInputs.watch(watch, into: agents[0], logger: logger) } }
                        if let input {
                            inputs.addTask {
                                let (taken, refused) = try await DetectionInputs.readLines(input, into: agents[0], logger: logger)
                                logger.info("the input ended", metadata: ["camera.taken": "\(taken)", "camera.refused": "\(refused)"])
                            }
                        }
                        if simulated {
                            for agent in agents {
                                inputs.addTask {
                                    var phase = SimulatorRandom(seed: seed, stream: "phase-\(agent.options.cameraID)")
                                    let simulator = CameraSimulator(
                                        cameraID: agent.options.cameraID,
                                        checkpointID: agent.options.checkpointID,
                                        seed: seed
                                    )
                                    await CameraSimulation.drive(
                                        agent,
                                        simulator: simulator,
                                        rate: rate,
                                        limit: count,
                                        phase: phase.unit(),
                                        logger: logger
                                    )
                                }
                            }
                        }
                        if exitWhenDone {
                            // Only the finite inputs end; wait for them, then for every ack.
                            var finished = 0
                            let finite = (input != nil ? 1 : 0) + (simulated ? agents.count : 0)
                            while finished < finite, try await inputs.next() != nil { finished += 1 }
                            for agent in agents { await agent.waitUntilDelivered() }
                            inputs.cancelAll()
                        } else {
                            try await inputs.waitForAll()
                            // Inputs ended (standard input closed): keep serving the protocol.
                            while !Task.isCancelled { try await Task.sleep(for: .seconds(3600)) }
                        }
                    }
                    return nil
                } catch is CancellationError {
                    return nil
                } catch {
                    return error
                }
            }
            group.addTask {
                await AgentSignals.waitForTermination()
                return nil
            }
            group.addTask {
                // Every agent stopped by itself: its client gave up reconnecting.
                for task in running { await task.value }
                return AgentSettingsError(name: nil, "the MQTT client gave up reconnecting (MQTT_MAX_RECONNECT_ATTEMPTS)")
            }
            failure = await group.next() ?? nil
            group.cancelAll()
            for task in running { task.cancel() }
            for task in running { await task.value }
        }
        var total = CameraAgent.Statistics()
        for agent in agents { total.add(await agent.counts) }
        AgentLogging.report("databus camera: \(total)")
        if let failure {
            AgentLogging.fail("databus camera: \(failure)")
            throw ExitCode.failure
        }
    }

    static func hostAndPort(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    /// The flags as settings, by variable name.
    private func flags() throws -> [String: String] {
        let keys = BrokerLoginOptions.Keys(
            host: "MQTT_BROKER_HOST",
            port: "MQTT_BROKER_PORT",
            tls: "MQTT_TLS_ENABLED",
            username: "MQTT_USERNAME",
            password: "MQTT_PASSWORD",
            caFile: "MQTT_CA_CERT",
            certificate: "MQTT_CLIENT_CERT",
            privateKey: "MQTT_CLIENT_KEY"
        )
        var values = try login.values(keys) { url in
            AgentSettingsError(name: "--broker", "\"\(url)\": expected mqtt://HOST:PORT or mqtts://HOST:PORT")
        }
        if let clientID { values["MQTT_CLIENT_ID"] = clientID }
        if let mqttVersion { values["MQTT_PROTOCOL_VERSION"] = mqttVersion }
        if let cameraID { values["CAMERA_ID"] = cameraID }
        if let checkpointID { values["CHECKPOINT_ID"] = checkpointID }
        if let dataDirectory { values["CAMERA_DATA_DIR"] = dataDirectory }
        if let healthInterval { values["CAMERA_HEALTH_INTERVAL"] = String(healthInterval) }
        if let ackTimeout { values["CAMERA_ACK_TIMEOUT"] = String(ackTimeout) }
        if let onCommand { values["CAMERA_ON_COMMAND"] = onCommand }
        if let commandTimeout { values["CAMERA_COMMAND_TIMEOUT"] = String(commandTimeout) }
        if let onMatch { values["CAMERA_ON_MATCH"] = onMatch }
        if let matchTimeout { values["CAMERA_MATCH_TIMEOUT"] = String(matchTimeout) }
        return values
    }
}
