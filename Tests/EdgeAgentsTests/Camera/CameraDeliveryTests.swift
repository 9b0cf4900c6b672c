import DatabusTestSupport
import EdgeAgents
import Foundation
import LPRModel
import MQTTClient
import NIOCore
import Testing

/// `databus camera` as integrators run it, against `databus broker` and mosquitto, with a real
/// `databus server` storing what it delivers.
@Suite("databus camera: every detection arrives, each stored once", .serialized, .timeLimit(.minutes(6)))
struct CameraDeliveryTests {
    @Test(
        "detections fed by HTTP and standard input while the broker is down, the agent killed with SIGKILL in between and again while delivering, all stored once",
        arguments: BrokerKind.allCases
    )
    func deliveredThroughOutageAndKills(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // An empty settings file: nothing from a .env of the working directory.
        try folder.write("none.env", "")
        try await kind.with { broker in
            // The broker goes down before the camera starts: everything is fed during the outage.
            await broker.terminate()
            let httpPort = try await Mosquitto.freePort()
            let common = [
                "--broker", "mqtt://127.0.0.1:\(broker.port)", "--camera-id", "CAM001", "--checkpoint-id", "CP001",
                "--data-dir", folder.file("camera"), "--ack-timeout", "1", "--env-file", folder.file("none.env"),
            ]
            let first = try CameraProcess(
                arguments: common + ["--listen", "127.0.0.1:\(httpPort)"],
                logPath: folder.file("camera-1.log")
            )
            #expect(await CameraHTTP.waitUntilListening(port: httpPort))
            var ids: [String] = []
            // 300 by HTTP in batches of 50; half without envelope (the agent fills it in).
            for batch in 0..<6 {
                var documents: [JSONValue] = []
                for index in 0..<50 {
                    let id = "http-\(batch)-\(index)"
                    ids.append(id)
                    documents.append(.object(try seedDetection(id: id, plate: "HT\(batch)\(index)", envelope: index % 2 == 0)))
                }
                let answer = try await CameraHTTP.post(port: httpPort, JSONValue.array(documents).jsonText, in: folder)
                #expect(answer.status == 202, "\(String(describing: answer.body))")
            }
            // A broken one is refused with its field paths and not taken.
            let broken = try await CameraHTTP.post(port: httpPort, #"{"message_id": "bad-1", "detection_data": {"plates": "none"}}"#, in: folder)
            #expect(broken.status == 422)
            #expect(broken.body?["errors"]?.arrayValue?.contains { $0["path"] == "detection_data.plates" } == true)

            // Killed with everything journaled and nothing sent.
            await first.kill()

            // Started again, still without a broker: 300 more as JSON lines on standard input.
            var lines = ""
            for index in 0..<300 {
                let id = "stdin-\(index)"
                ids.append(id)
                lines += JSONValue.object(try seedDetection(id: id, plate: "SI\(index)", envelope: index % 3 != 0)).jsonText + "\n"
            }
            lines += "this line is not JSON\n"
            let input = try folder.write("detections.jsonl", lines)
            let second = try CameraProcess(
                arguments: common + ["--listen", "127.0.0.1:\(httpPort)", "--input", input],
                logPath: folder.file("camera-2.log")
            )
            #expect(await CameraHTTP.waitUntilListening(port: httpPort))
            let journaled = await eventually {
                (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 600
            }
            #expect(journaled, "the agent did not journal 600 detections: \(second.log.suffix(1500))")

            // The broker and the server come; the agent delivers, and is killed once more while it does.
            try await broker.restart()
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            _ = await eventually(within: .seconds(30)) { ((try? await stored([], in: server.database))?.total ?? 0) > 0 }
            await second.kill()
            let third = try CameraProcess(arguments: common + ["--listen", "127.0.0.1:\(httpPort)"], logPath: folder.file("camera-3.log"))
            let delivered = await eventually(within: .seconds(90)) {
                (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 0
            }
            #expect(delivered, "not everything was acknowledged: \(third.log.suffix(2000))")
            let result = try await stored(ids, in: server.database)
            #expect(result.found == 600)
            #expect(result.total == 600)
            #expect(await third.stop() == 0)
            await server.stop()
            print("camera delivery (\(kind.testDescription)): 600 of 600 stored once; server log: \(server.log.count) bytes")
        }
    }

    @Test("--watch takes one file per detection, removes it once acknowledged, and sets invalid ones aside", arguments: [BrokerKind.mosquitto])
    func watchedFolder(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        // An empty settings file: nothing from a .env of the working directory.
        try folder.write("none.env", "")
        try await kind.with { broker in
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            let spool = try folder.makeWritableFolder("spool")
            var ids: [String] = []
            for index in 0..<20 {
                let id = "file-\(index)"
                ids.append(id)
                try folder.write("spool/\(id).json", JSONValue.object(try seedDetection(id: id, envelope: false)).jsonText)
            }
            try folder.write("spool/broken.json", #"{"detection_data": 5}"#)
            try folder.write("spool/notes.txt", "not a detection")
            let camera = try CameraProcess(
                arguments: [
                    "--broker", "mqtt://127.0.0.1:\(broker.port)", "--data-dir", folder.file("camera"), "--watch", spool,
                    "--env-file", folder.file("none.env"),
                ],
                logPath: folder.file("camera.log")
            )
            let emptied = await eventually(within: .seconds(60)) {
                // `.taken/` holds the files taken until their ack: empty at the end.
                let names = (try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? []
                let held = (try? FileManager.default.contentsOfDirectory(atPath: "\(spool)/.taken")) ?? []
                return names.sorted() == [".taken", "notes.txt", "rejected"] && held.isEmpty
            }
            #expect(emptied, "\(String(describing: try? FileManager.default.contentsOfDirectory(atPath: spool))) \(camera.log.suffix(1000))")
            let rejected = try FileManager.default.contentsOfDirectory(atPath: "\(spool)/rejected").sorted()
            #expect(rejected == ["broken.json", "broken.json.error"])
            let result = try await stored(ids, in: server.database)
            #expect(result.found == 20)
            #expect(await camera.stop() == 0)
            await server.stop()
        }
    }

    @Test(
        "--watch: a file renamed in again under the same name while its first detection waits for the ack is not deleted unread",
        arguments: [BrokerKind.mosquitto]
    )
    func sameNameWrittenAgain(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("none.env", "")
        try await kind.with { broker in
            let spool = try folder.makeWritableFolder("spool")
            let httpPort = try await Mosquitto.freePort()
            let camera = try CameraProcess(
                arguments: [
                    "--broker", "mqtt://127.0.0.1:\(broker.port)", "--data-dir", folder.file("camera"), "--watch", spool,
                    "--listen", "127.0.0.1:\(httpPort)", "--ack-timeout", "0.5", "--env-file", folder.file("none.env"),
                ],
                logPath: folder.file("camera.log")
            )
            #expect(await CameraHTTP.waitUntilListening(port: httpPort))
            // An engine that names its files by camera and second, written elsewhere and renamed
            // in as `databus camera --help` advises; two detections in the same second.
            let name = "\(spool)/CAM001_20261207_101500.json"
            func drop(_ id: String, plate: String) throws {
                let staging = try folder.write(
                    "staging-\(id).json",
                    JSONValue.object(try seedDetection(id: id, plate: plate, envelope: false)).jsonText
                )
                #expect(rename(staging, name) == 0)
            }
            // No server yet: the first waits for its ack.
            try drop("same-second-1", plate: "FIRST1")
            #expect(await eventually { (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 1 })
            try drop("same-second-2", plate: "SECOND2")
            // The agent has a few scans of the folder to notice the new file (it takes none today).
            _ = await eventually(within: .seconds(3)) { (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 2 }
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            let settled = await eventually(within: .seconds(60)) {
                (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 0
                    && !FileManager.default.fileExists(atPath: name)
            }
            #expect(settled, "\(camera.log.suffix(1000))")
            let result = try await stored(["same-second-1", "same-second-2"], in: server.database)
            #expect(result.found == 2, "the second detection's file was removed with the first one's ack, unread")
            #expect(await camera.stop() == 0)
            await server.stop()
        }
    }

    @Test(
        "detections without a message_id, taken again (the agent restarted on its --input file, an engine re-posting after a lost answer), are stored once",
        arguments: [BrokerKind.databus]
    )
    func envelopeLessTakenAgain(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("none.env", "")
        try await kind.with { broker in
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            // 20 detections as the engine writes them: no envelope, so the agent makes each message_id.
            var lines = ""
            for index in 0..<20 {
                var json = try seedDetection(id: "", plate: "IN\(index)", envelope: false)
                json["message_id"] = nil
                json["timestamp"] = .string("2026-12-07T01:00:\(index < 10 ? "0" : "")\(index)Z")
                lines += JSONValue.object(json).jsonText + "\n"
            }
            let input = try folder.write("detections.jsonl", lines)
            let common = [
                "--broker", "mqtt://127.0.0.1:\(broker.port)", "--data-dir", folder.file("camera"), "--env-file", folder.file("none.env"),
            ]
            // Run to the end, then again on the same file (as after a crash or a reboot half-way).
            for run in 1...2 {
                let camera = try CameraProcess(
                    arguments: common + ["--input", input, "--exit-when-done"],
                    logPath: folder.file("camera-\(run).log")
                )
                #expect(await camera.wait(timeout: .seconds(60)) == 0, "\(camera.log.suffix(1000))")
            }
            let afterRestart = try await stored([], in: server.database).total
            #expect(afterRestart == 20, "20 detections, stored \(afterRestart) times")

            // An engine whose POST got no answer (the agent had journaled it) posts it again.
            let httpPort = try await Mosquitto.freePort()
            let listener = try CameraProcess(arguments: common + ["--listen", "127.0.0.1:\(httpPort)"], logPath: folder.file("camera-http.log"))
            #expect(await CameraHTTP.waitUntilListening(port: httpPort))
            var retried = try seedDetection(id: "", plate: "RETRY1", envelope: false)
            retried["message_id"] = nil
            retried["timestamp"] = .string("2026-12-07T01:01:00Z")
            for _ in 1...2 { #expect(try await CameraHTTP.post(port: httpPort, JSONValue.object(retried).jsonText, in: folder).status == 202) }
            #expect(await eventually { (try? await CameraHTTP.status(port: httpPort))?["pending_detections"]?.intValue == 0 })
            let afterRetry = try await stored([], in: server.database).total
            #expect(afterRetry == 21, "21 detections, stored \(afterRetry) times")
            #expect(await listener.stop() == 0)
            await server.stop()
        }
    }
}

@Suite("databus camera --simulate", .serialized, .timeLimit(.minutes(3)))
struct CameraSimulateTests {
    @Test("N simulated cameras deliver their seeded detections, the same ones the library makes from the seed", arguments: [BrokerKind.databus])
    func simulatedFleet(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("none.env", "")
        try await kind.with { broker in
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            let fleet = try CameraProcess(
                arguments: [
                    "--broker", "mqtt://127.0.0.1:\(broker.port)", "--simulate", "3", "--rate", "50", "--count", "20", "--seed", "5",
                    "--data-dir", folder.file("fleet"), "--exit-when-done", "--env-file", folder.file("none.env"),
                ],
                logPath: folder.file("fleet.log")
            )
            #expect(await fleet.wait(timeout: .seconds(90)) == 0, "\(fleet.log.suffix(1500))")
            var expected: [String] = []
            for camera in CameraSimulator.cameraIDs(count: 3) {
                var simulator = CameraSimulator(cameraID: camera, checkpointID: "CP001", seed: 5)
                expected += (0..<20).map { _ in simulator.nextDetection(at: Date()).messageID }
            }
            let result = try await stored(expected, in: server.database)
            #expect(result.found == 60)
            #expect(result.total == 60)
            #expect(fleet.log.contains("delivered 60 (stored 60, duplicate 0)"))
            await server.stop()
        }
    }
}

@Suite("databus camera: rejected detections", .serialized, .timeLimit(.minutes(3)))
struct CameraRejectionTests {
    @Test(
        "a rejected ack is logged with its errors, the detection is not sent again, and its file goes to rejected/",
        arguments: [BrokerKind.mosquitto]
    )
    func rejectedNotRetried(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("none.env", "")
        try await kind.with { broker in
            // A server of our own making: it rejects every detection (a stricter server version would).
            let server = MQTTClient(
                configuration: .init(host: "127.0.0.1", port: broker.port, clientIdentifier: "strict-server"),
                logger: cameraTestLogger
            )
            try await server.connect()
            let detections = MessageLog(try await server.subscribe(to: "lprserver/cameras/+/detection"))
            let answering = Task {
                var answered = 0
                while !Task.isCancelled {
                    let messages = detections.messages
                    for message in messages.dropFirst(answered) {
                        let id = (try? JSONObject.parse(message.payload.readableBytesView))?["message_id"]?.stringValue ?? ""
                        let ack = DetectionAck(
                            messageID: id,
                            status: .rejected,
                            errors: [FieldError(path: "metadata.image_path", reason: "outside the allowed storage")],
                            timestamp: Date()
                        )
                        _ = try? await server.publish(
                            topic: "lprserver/cameras/CAM001/detection/ack",
                            payload: ByteBuffer(bytes: JSONValue.object(ack.json).jsonBytes),
                            qos: .atLeastOnce
                        )
                    }
                    answered = messages.count
                    try? await Task.sleep(for: .milliseconds(20))
                }
            }
            let spool = try folder.makeWritableFolder("spool")
            try folder.write("spool/one.json", JSONValue.object(try seedDetection(id: "strict-1", envelope: false)).jsonText)
            let camera = try CameraProcess(
                arguments: [
                    "--broker", "mqtt://127.0.0.1:\(broker.port)", "--data-dir", folder.file("camera"), "--watch", spool, "--ack-timeout", "0.5",
                    "--env-file", folder.file("none.env"),
                ],
                logPath: folder.file("camera.log")
            )
            #expect(await eventually { FileManager.default.fileExists(atPath: "\(spool)/rejected/one.json") }, "\(camera.log.suffix(1000))")
            #expect(!FileManager.default.fileExists(atPath: "\(spool)/one.json"))
            // Several ack timeouts later: sent once, never again.
            try await Task.sleep(for: .seconds(3))
            #expect(detections.messages.count == 1)
            #expect(camera.log.contains("the server rejected a detection"))
            #expect(camera.log.contains("outside the allowed storage"))
            #expect(await camera.stop() == 0)
            answering.cancel()
            await server.disconnect()
        }
    }

    @Test(
        "a detection over the server's 1 MiB limit is refused at intake or rejected by the server, never accepted and re-sent forever",
        arguments: [BrokerKind.databus]
    )
    func oversizedDetection(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        try folder.write("none.env", "")
        try await kind.with { broker in
            let server = try await ServerProcess.start(brokerPort: broker.port, folder: folder)
            let httpPort = try await Mosquitto.freePort()
            let camera = try CameraProcess(
                arguments: [
                    "--broker", "mqtt://127.0.0.1:\(broker.port)", "--data-dir", folder.file("camera"), "--listen", "127.0.0.1:\(httpPort)",
                    "--ack-timeout", "0.5", "--env-file", folder.file("none.env"),
                ],
                logPath: folder.file("camera.log")
            )
            #expect(await CameraHTTP.waitUntilListening(port: httpPort))
            // A seed detection with a 1.2 MB thumbnail in its metadata: well under the agent's
            // 8 MiB HTTP limit, over the server's 1 MiB (DetectionIntake.maximumPayloadBytes).
            var big = try seedDetection(id: "big-1")
            big["metadata"] = ["thumbnail": .string(String(repeating: "A", count: 1_200_000))]
            let answer = try await CameraHTTP.post(port: httpPort, JSONValue.object(big).jsonText, in: folder)
            let small = try await CameraHTTP.post(port: httpPort, JSONValue.object(try seedDetection(id: "small-1")).jsonText, in: folder)
            #expect(small.status == 202)
            #expect(await eventually { (try? await stored(["small-1"], in: server.database))?.found == 1 })
            if answer.status == 202 {
                // Taken: then the server must say `rejected`, before or after a few re-sends.
                _ = await eventually {
                    let status = try? await CameraHTTP.status(port: httpPort)
                    return (status?["rejected"]?.intValue ?? 0) >= 1 || (status?["resent"]?.intValue ?? 0) >= 3
                }
                let status = try await CameraHTTP.status(port: httpPort)
                #expect(
                    status?["rejected"]?.intValue == 1 && status?["pending_detections"]?.intValue == 0,
                    "the agent took a detection the server refuses for its size, and re-sends it without end: \(String(describing: status))"
                )
            } else {
                #expect(answer.status == 413 || answer.status == 422, "\(answer.status) \(String(describing: answer.body))")
            }
            #expect((try await stored(["big-1"], in: server.database)).found == 0)
            #expect(await camera.stop() == 0)
            await server.stop()
        }
    }
}
