import DatabusTestSupport
import EdgeAgents
import Foundation
import LPRModel
import Testing

/// The camera agent's pure rules: the envelope, the filters, configuration and command handling.
@Suite("Camera agent: envelope, filters, configuration and commands")
struct CameraRulesTests {
    let now = Date(timeIntervalSince1970: 1_705_314_600)

    func seed() throws -> JSONObject { try JSONObject.parse(Fixtures.example("lpr-detection.json")) }

    @Test("the envelope fills in message_id, timestamp, camera_id and checkpoint_id, keeping unknown fields and number forms")
    func envelopeFillsIn() throws {
        var json = try seed()
        json["message_id"] = nil
        json["timestamp"] = nil
        json["camera_id"] = nil
        json["checkpoint_id"] = nil
        json["vendor_extension"] = ["frame": 42, "gain": .number("1.50")]
        let detection = try DetectionEnvelope.complete(json, cameraID: "CAM017", checkpointID: "CP004", now: now) { "generated-id" }
        #expect(detection.messageID == "generated-id")
        #expect(detection.timestamp == now)
        #expect(detection.cameraID == "CAM017")
        #expect(detection.checkpointID == "CP004")
        #expect(Array(detection.json.keys.prefix(4)) == ["message_id", "timestamp", "camera_id", "checkpoint_id"])
        #expect(detection.json["vendor_extension"]?["gain"] == .number("1.50"))
        #expect(JSONValue.object(detection.json).jsonText.contains("\"processing_time_ms\":150"))
    }

    @Test("the envelope keeps what the engine gave, and refuses another camera's detection or a broken one with field paths")
    func envelopeKeepsAndRefuses() throws {
        let json = try seed()
        let kept = try DetectionEnvelope.complete(json, cameraID: "CAM001", checkpointID: "CP999", now: now)
        #expect(kept.messageID == "uuid-string")
        #expect(kept.checkpointID == "CP001")
        #expect(RFC3339.string(from: kept.timestamp) == "2024-01-15T10:30:00.000Z")
        #expect(throws: MessageValidationError.self) {
            try DetectionEnvelope.complete(json, cameraID: "CAM002", checkpointID: "CP001", now: now)
        }
        var broken = json
        broken["detection_data"] = ["plates": [["plate_number": 7]]]
        do {
            _ = try DetectionEnvelope.complete(broken, cameraID: "CAM001", checkpointID: "CP001", now: now)
            Issue.record("a plate number that is a number was taken")
        } catch {
            #expect(error.errors.contains { $0.path == "detection_data.plates[0].plate_number" })
        }
    }

    @Test("confidence_threshold holds back detections read with less confidence")
    func confidenceFilter() throws {
        var filter = DetectionFilter(confidenceThreshold: 0.96)
        let detection = try DetectionEnvelope.complete(seed(), cameraID: "CAM001", checkpointID: "CP001", now: now)
        #expect(filter.decide(detection) == .belowConfidence(0.95))
        filter.confidenceThreshold = 0.9
        #expect(filter.decide(detection) == .publish)
    }

    @Test("detection_interval publishes one detection per interval of capture time, but never holds back a watch-list match")
    func intervalFilter() throws {
        var filter = DetectionFilter(minimumInterval: 1)
        func detection(at offset: TimeInterval) throws -> Detection {
            var json = try seed()
            json["timestamp"] = .timestamp(now.addingTimeInterval(offset))
            return try DetectionEnvelope.complete(json, cameraID: "CAM001", checkpointID: "CP001", now: now)
        }
        #expect(try filter.decide(detection(at: 0)) == .publish)
        #expect(try filter.decide(detection(at: 0.5)) == .withinInterval(elapsed: 0.5))
        #expect(try filter.decide(detection(at: 0.6), watchlisted: true) == .publish)
        // The interval counts from the last published detection, the watch-listed one included.
        guard case .withinInterval = try filter.decide(detection(at: 1.2)) else {
            Issue.record("a detection 0.6 s after the last published one went out")
            return
        }
        #expect(try filter.decide(detection(at: 1.7)) == .publish)
    }

    @Test("config/update is applied with every member kept, reported with a new id, and the same update again changes nothing")
    func configuration() throws {
        var state = CameraConfigurationState(cameraID: "CAM001")
        let update = try Fixtures.example("lpr-config.json")
        guard case .applied(let applied) = state.apply(update: update, now: now, messageID: "applied-1") else {
            Issue.record("the seed's configuration was not applied")
            return
        }
        #expect(applied.messageID == "applied-1")
        #expect(applied.confidenceThreshold == 0.8)
        #expect(applied.detectionInterval == 1000)
        #expect(applied.configData["alert_settings"]?["notification_channels"] == ["mqtt", "email"])
        #expect(state.apply(update: update, now: now, messageID: "applied-2") == .unchanged)
        #expect(DetectionFilter(configuration: applied) == DetectionFilter(confidenceThreshold: 0.8, minimumInterval: 1))

        var other = try JSONObject.parse(update)
        other["camera_id"] = "CAM002"
        guard case .refused = state.apply(update: JSONValue.object(other).jsonBytes, now: now, messageID: "x") else {
            Issue.record("another camera's configuration was applied")
            return
        }
        var bad = try JSONObject.parse(update)
        bad["config_data"] = ["confidence_threshold": 3]
        guard case .refused(let error) = state.apply(update: JSONValue.object(bad).jsonBytes, now: now, messageID: "x") else {
            Issue.record("a threshold of 3 was applied")
            return
        }
        #expect(error.errors.first?.path == "config_data.confidence_threshold")
        #expect(state.applied?.messageID == "applied-1")
    }

    @Test("the applied configuration survives in its file")
    func configurationFile() throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        var state = CameraConfigurationState(cameraID: "CAM001")
        _ = state.apply(update: try Fixtures.example("lpr-config.json"), now: now, messageID: "applied-1")
        try state.save(path: folder.file("config.json"))
        let loaded = try CameraConfigurationState.load(path: folder.file("config.json"), cameraID: "CAM001")
        #expect(loaded.applied == state.applied)
        #expect(try CameraConfigurationState.load(path: folder.file("missing.json"), cameraID: "CAM001").applied == nil)
    }

    @Test("without a hook restart_camera, get_status and ping are built in, anything else is unsupported; a repeated command gets its first answer")
    func commandsWithoutHook() throws {
        var planner = CommandPlanner(hasHook: false)
        let ping = ControlCommand(messageID: "m1", timestamp: now, cameraID: "CAM001", command: "ping")
        guard case .builtIn(_, .ping) = planner.plan(payload: JSONValue.object(ping.json).jsonBytes, cameraID: "CAM001", now: now) else {
            Issue.record("ping is not built in")
            return
        }
        #expect(planner.plan(payload: JSONValue.object(ping.json).jsonBytes, cameraID: "CAM001", now: now) == .ignore)
        let answer = ControlResponse(messageID: "m1", status: .ok, result: ["pong": true], timestamp: now)
        planner.finished(answer)
        #expect(planner.plan(payload: JSONValue.object(ping.json).jsonBytes, cameraID: "CAM001", now: now) == .answer(answer))

        let restart = try Fixtures.example("lpr-control.json")
        guard case .builtIn(let command, .restartCamera) = planner.plan(payload: restart, cameraID: "CAM001", now: now) else {
            Issue.record("restart_camera is not built in")
            return
        }
        #expect(command.parameters["delay_seconds"] == 5)

        let zoom = ControlCommand(messageID: "m3", timestamp: now, cameraID: "CAM001", command: "set_zoom")
        guard case .answer(let unsupported) = planner.plan(payload: JSONValue.object(zoom.json).jsonBytes, cameraID: "CAM001", now: now) else {
            Issue.record("set_zoom was not answered")
            return
        }
        #expect(unsupported.status == .unsupported)
        #expect(unsupported.messageID == "m3")
    }

    @Test("with a hook every command runs it; a broken command with a message_id is answered with an error")
    func commandsWithHook() throws {
        var planner = CommandPlanner(hasHook: true)
        let ping = ControlCommand(messageID: "m1", timestamp: now, cameraID: "CAM001", command: "ping")
        guard case .runHook = planner.plan(payload: JSONValue.object(ping.json).jsonBytes, cameraID: "CAM001", now: now) else {
            Issue.record("the hook does not run ping")
            return
        }
        guard case .invalid(let id, _) = planner.plan(payload: Array(#"{"message_id": "m2"}"#.utf8), cameraID: "CAM001", now: now) else {
            Issue.record("a command without command was taken")
            return
        }
        #expect(id == "m2")
        guard case .invalid(nil, _) = planner.plan(payload: Array("not json".utf8), cameraID: "CAM001", now: now) else {
            Issue.record("not JSON was taken")
            return
        }
    }

    @Test("the hook's exit status decides ok, unsupported or error; its JSON output is the result")
    func hookResponses() {
        let command = ControlCommand(messageID: "m1", timestamp: now, cameraID: "CAM001", command: "reboot")
        let ok = CommandPlanner.response(
            to: command,
            hook: HookResult(termination: .exited(0), output: Array(#"{"rebooted": true, "after": 2.50}"#.utf8)),
            now: now
        )
        #expect(ok.status == .ok)
        #expect(ok.result == ["rebooted": true, "after": .number("2.50")])
        let unsupported = CommandPlanner.response(to: command, hook: HookResult(termination: .exited(3)), now: now)
        #expect(unsupported.status == .unsupported)
        let failed = CommandPlanner.response(
            to: command,
            hook: HookResult(termination: .exited(2), output: Array("plain text\n".utf8), errorOutput: Array("boom\n".utf8)),
            now: now
        )
        #expect(failed.status == .error)
        #expect(failed.result == ["output": "plain text", "exit_status": 2, "stderr": "boom"])
        let slow = CommandPlanner.response(to: command, hook: HookResult(termination: .timedOut(1.5)), now: now)
        #expect(slow.status == .error)
        #expect(slow.result["error"]?.stringValue?.contains("1.5") == true)
    }

    @Test("a hook runs with its input, its output, its exit status, and is killed at its timeout")
    func hookRuns() async throws {
        let echo = await Hook(command: #"cat; echo "$CAMERA_ID" >&2; exit 4"#, timeout: 10).run(
            input: Array("{}".utf8),
            environment: ["CAMERA_ID": "CAM009"]
        )
        #expect(echo.termination == .exited(4))
        #expect(echo.output == Array("{}".utf8))
        #expect(String(decoding: echo.errorOutput, as: UTF8.self) == "CAM009\n")
        let slow = await Hook(command: "sleep 30", timeout: 0.3).run(input: [])
        #expect(slow.termination == .timedOut(0.3))
        #expect(slow.duration < 10)
    }
}
