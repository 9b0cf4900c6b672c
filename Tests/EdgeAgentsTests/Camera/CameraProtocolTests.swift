import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import Testing

/// Configuration, control, health requests and the edge watch-list, end to end: `databus camera`
/// processes, the LPR server (in this process) sending them, and a paho-mqtt subscriber
/// decoding everything the cameras publish.
@Suite("databus camera: configuration, control, health and the edge watch-list", .serialized, .timeLimit(.minutes(6)))
struct CameraProtocolTests {
    /// Starts an LPR server in this process against `broker`, runs `body`, stops it.
    func withServer(_ broker: any TestBroker, in folder: TemporaryDirectory, _ body: (LPRServer) async throws -> Void) async throws {
        var mqtt = MQTTClient.Configuration(host: "127.0.0.1", port: broker.port, clientIdentifier: "lprserver_v3")
        mqtt.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
        var configuration = LPRServerConfiguration(mqtt: mqtt)
        configuration.systemInterval = .seconds(1)
        let server = LPRServer(
            configuration: configuration,
            repository: try SQLiteLPRRepository(path: folder.file("lpr.sqlite"), durability: .processCrash),
            logger: cameraTestLogger
        )
        let running = Task { try await server.run() }
        do {
            try await withDeadline(.seconds(20), "the LPR server to be ready") { try await server.waitUntilReady() }
            try await body(server)
        } catch {
            await server.shutdown()
            _ = await running.result
            throw error
        }
        await server.shutdown()
        _ = await running.result
    }

    static let commandHook = #"""
        input=$(cat)
        echo "$input" > "$HOOK_DIR/command-$COMMAND.json"
        case "$COMMAND" in
          set_zoom) printf '{"zoom": %s, "camera": "%s"}\n' "$(echo "$input" | sed 's/.*"level":\([0-9]*\).*/\1/')" "$CAMERA_ID" ;;
          reboot_sensor) echo "sensor not responding" >&2; exit 1 ;;
          *) exit 3 ;;
        esac
        """#

    static let matchHook = #"""
        date +%s.%N > "$HOOK_DIR/match-time"
        cat > "$HOOK_DIR/match.tmp" && mv "$HOOK_DIR/match.tmp" "$HOOK_DIR/match.json"
        """#

    @Test(
        "config applied, reported and filtering; commands through the hook and built in; health on request; the watch-list hook while the broker is down",
        arguments: BrokerKind.allCases
    )
    func protocolRoundTrips(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // An empty settings file: nothing from a .env of the working directory.
        try folder.write("none.env", "")
        let hooks = try folder.makeWritableFolder("hooks")
        let commandHook = try folder.write("command-hook.sh", Self.commandHook)
        let matchHook = try folder.write("match-hook.sh", Self.matchHook)
        try await kind.with { broker in
            try await withServer(broker, in: folder) { server in
                let paho = try await PahoSubscriber.start(port: broker.port, topic: "lprserver/cameras/#", protocolLevel: 5, in: folder, name: "paho")
                defer { Task { await paho.stop() } }
                let httpPort = try await Mosquitto.freePort()
                let environment = ["HOOK_DIR=\(hooks)"]
                let hooked = try CameraProcess(
                    arguments: [
                        "--broker", "mqtt://127.0.0.1:\(broker.port)", "--camera-id", "CAM001", "--checkpoint-id", "CP001",
                        "--data-dir", folder.file("cam1"), "--listen", "127.0.0.1:\(httpPort)", "--health-interval", "3600",
                        "--on-command", "sh \(commandHook)", "--on-match", "sh \(matchHook)", "--env-file", folder.file("none.env"),
                    ],
                    environment: environment,
                    logPath: folder.file("cam1.log")
                )
                let builtIn = try CameraProcess(
                    arguments: [
                        "--broker", "mqtt://127.0.0.1:\(broker.port)", "--camera-id", "CAM002", "--checkpoint-id", "CP001",
                        "--data-dir", folder.file("cam2"), "--health-interval", "3600", "--mqtt-version", "3.1.1",
                        "--env-file", folder.file("none.env"),
                    ],
                    logPath: folder.file("cam2.log")
                )
                #expect(await CameraHTTP.waitUntilListening(port: httpPort))
                let online = await eventually {
                    // `online` is not JSON: paho reports it as the raw payload.
                    let statuses = paho.received.filter { $0["payload"] == "online" }
                    return Set(statuses.compactMap { $0["topic"]?.stringValue }) == [
                        "lprserver/cameras/CAM001/status", "lprserver/cameras/CAM002/status",
                    ]
                }
                #expect(online, "\(paho.received.suffix(5)) \(paho.errors)")

                // Configuration: applied, reported retained, and filtering what is published.
                var data = try JSONObject.parse(Fixtures.example("lpr-config.json"))["config_data"]?.objectValue ?? [:]
                data["confidence_threshold"] = 0.9
                data["vendor_option"] = ["keep": true]
                _ = try await server.setConfiguration(camera: "CAM001", configType: "detection_settings", configData: data)
                let reported = await eventually {
                    paho.received.contains {
                        $0["topic"] == "lprserver/cameras/CAM001/config" && $0["metadata"]?["config_data"]?["confidence_threshold"] == 0.9
                    }
                }
                #expect(reported)
                let reportedConfig = paho.received.last { $0["topic"] == "lprserver/cameras/CAM001/config" }?["metadata"]?.objectValue ?? [:]
                let parsedConfig = try CameraConfiguration(validating: reportedConfig, topicCamera: "CAM001")
                #expect(parsedConfig.configData["vendor_option"] == ["keep": true])
                #expect(await eventually { (try? await CameraHTTP.status(port: httpPort))?["configuration"]?["confidence_threshold"] == 0.9 })
                let low = try await CameraHTTP.post(
                    port: httpPort,
                    JSONValue.object(try seedDetection(id: "low-1", confidence: 0.85)).jsonText,
                    in: folder
                )
                #expect(low.body?["status"] == "filtered")
                let high = try await CameraHTTP.post(
                    port: httpPort,
                    JSONValue.object(try seedDetection(id: "high-1", confidence: 0.95)).jsonText,
                    in: folder
                )
                #expect(high.body?["status"] == "accepted")
                #expect(
                    await eventually {
                        paho.received.contains { $0["topic"] == "lprserver/cameras/CAM001/detection" && $0["metadata"]?["message_id"] == "high-1" }
                    }
                )
                #expect(!paho.received.contains { $0["metadata"]?["message_id"] == "low-1" })
                #expect(await eventually { (try? await CameraHTTP.status(port: httpPort))?["delivered"]?.intValue == 1 })

                // Commands: through the hook (MQTT 5 camera) and built in (MQTT 3.1.1 camera).
                guard case .answered(let zoom) = try await server.sendCommand(camera: "CAM001", command: "set_zoom", parameters: ["level": 3]) else {
                    Issue.record("set_zoom was not answered: \(hooked.log.suffix(800))")
                    return
                }
                #expect(zoom.status == .ok)
                #expect(zoom.result == ["zoom": 3, "camera": "CAM001"])
                let hookInput = try JSONObject.parse(Data(contentsOf: URL(fileURLWithPath: "\(hooks)/command-set_zoom.json")))
                #expect(hookInput["parameters"] == ["level": 3])
                guard case .answered(let failing) = try await server.sendCommand(camera: "CAM001", command: "reboot_sensor") else {
                    Issue.record("reboot_sensor was not answered")
                    return
                }
                #expect(failing.status == .error)
                #expect(failing.result["stderr"] == "sensor not responding")
                guard case .answered(let unknown) = try await server.sendCommand(camera: "CAM001", command: "self_destruct") else {
                    Issue.record("self_destruct was not answered")
                    return
                }
                #expect(unknown.status == .unsupported)
                for (command, expected) in [
                    ("ping", ControlResponse.Status.ok), ("get_status", .ok), ("restart_camera", .ok), ("set_zoom", .unsupported),
                ] {
                    guard
                        case .answered(let answer) = try await server.sendCommand(
                            camera: "CAM002",
                            command: command,
                            parameters: ["delay_seconds": 0]
                        )
                    else {
                        Issue.record("\(command) was not answered by the built-in commands: \(builtIn.log.suffix(800))")
                        continue
                    }
                    #expect(answer.status == expected, "\(command)")
                    if command == "get_status" { #expect(answer.result["camera_id"] == "CAM002") }
                }
                #expect(await eventually { paho.received.filter { $0["topic"] == "lprserver/cameras/CAM002/control/response" }.count >= 4 })

                // Health on request: a fresh message at once (the interval is an hour).
                let before = paho.received.filter { $0["topic"] == "lprserver/cameras/CAM002/health" }.count
                try await server.requestHealth(camera: "CAM002")
                #expect(await eventually { paho.received.filter { $0["topic"] == "lprserver/cameras/CAM002/health" }.count > before })
                let health = paho.received.last { $0["topic"] == "lprserver/cameras/CAM002/health" }?["metadata"]?.objectValue ?? [:]
                let parsedHealth = try CameraHealth(validating: health, topicCamera: "CAM002")
                #expect(parsedHealth.memoryUsage != nil && parsedHealth.diskUsage != nil && parsedHealth.uptimeSeconds != nil)

                // The edge watch-list: kept by the camera, matched while the broker is down.
                _ = try await server.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "WNT-4242", reason: "stolen"))
                #expect(await eventually { (try? await CameraHTTP.status(port: httpPort))?["watchlist_entries"]?.intValue == 1 })
                await broker.terminate()
                let posted = Date()
                let hit = try await CameraHTTP.post(
                    port: httpPort,
                    JSONValue.object(try seedDetection(id: "hit-1", plate: "WNT 4Z42", confidence: 0.97)).jsonText,
                    in: folder
                )
                #expect(hit.body?["status"] == "accepted")
                #expect(await eventually(within: .seconds(10)) { FileManager.default.fileExists(atPath: "\(hooks)/match.json") })
                let match = try JSONObject.parse(Data(contentsOf: URL(fileURLWithPath: "\(hooks)/match.json")))
                #expect(match["matched_plate"] == "WNT-4242")
                #expect(match["plate_number"] == "WNT 4Z42")
                #expect(match["match"] == "confusable")
                #expect(match["detection_message_id"] == "hit-1")
                if let text = try? String(contentsOfFile: "\(hooks)/match-time", encoding: .utf8),
                    let ran = Double(text.trimmingCharacters(in: .whitespacesAndNewlines))
                {
                    print(
                        String(
                            format: "camera edge watch-list (%@): --on-match ran %.1f ms after the POST, broker down",
                            kind.testDescription,
                            (ran - posted.timeIntervalSince1970) * 1000
                        )
                    )
                }
                try await broker.restart()
                #expect(await eventually(within: .seconds(60)) { (try? await CameraHTTP.status(port: httpPort))?["delivered"]?.intValue == 2 })

                // What paho decoded: every message the cameras published is valid.
                for message in paho.received {
                    let topic = message["topic"]?.stringValue ?? ""
                    if topic.hasSuffix("/status") {
                        #expect(["online", "offline"].contains(message["payload"]?.stringValue ?? ""))
                        continue
                    }
                    #expect(message["error"] == nil, "\(topic): \(message)")
                    guard let object = message["metadata"]?.objectValue else { continue }
                    switch LPRTopic(parsing: topic) {
                    case .detection(let camera)?: _ = try Detection(validating: object, topicCamera: camera)
                    case .health(let camera)?: _ = try CameraHealth(validating: object, topicCamera: camera)
                    case .config(let camera)?: _ = try CameraConfiguration(validating: object, topicCamera: camera)
                    case .controlResponse?: _ = try ControlResponse(validating: object)
                    default: break
                    }
                }
                #expect(await hooked.stop() == 0)
                #expect(await builtIn.stop() == 0)
            }
        }
    }
}
