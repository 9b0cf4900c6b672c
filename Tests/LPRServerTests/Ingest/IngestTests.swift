import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Detections in, acks out, stored exactly once: against mosquitto and databus broker.
@Suite("Ingest: detections stored once and acknowledged", .serialized, .timeLimit(.minutes(3)))
struct IngestTests {
    @Test("the seed's detection is stored and acked; sent again it is a duplicate, stored once", arguments: TestBrokerKind.allCases)
    func storedThenDuplicate(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/CAM001/detection/ack")
                var detection = try JSONObject.parse(Fixtures.example("lpr-detection.json"))
                detection["message_id"] = "seed-1"
                try await camera.publish(json: detection, to: "lprserver/cameras/CAM001/detection")
                let first = try await acks.firstObject(topic: "lprserver/cameras/CAM001/detection/ack", "the first ack")
                #expect(first["message_id"] == "seed-1")
                #expect(first["status"] == "stored")
                #expect(first["errors"] == [])
                #expect(first["timestamp"]?.stringValue.flatMap(RFC3339.date(from:)) != nil)

                try await camera.publish(json: detection, to: "lprserver/cameras/CAM001/detection")
                let second = try await acks.firstObject(topic: "lprserver/cameras/CAM001/detection/ack", "the duplicate ack") {
                    $0["status"] == "duplicate"
                }
                #expect(second["message_id"] == "seed-1")
                #expect(second["errors"] == [])
            }
            #expect(try await harness.repository.detectionCount() == 1)
            let stored = try #require(try await harness.repository.detection(messageID: "seed-1"))
            #expect(stored.cameraID == "CAM001")
            #expect(stored.checkpointID == "CP001")
            #expect(stored.plates == ["ABC1234"])
            // Stored as received: every field, the metadata included.
            let payload = try JSONObject.parse(Array(stored.payload.utf8))
            #expect(payload["metadata"]?["image_path"] == "/storage/images/CAM001_20240115_103000.jpg")
            let camera = try #require(try await harness.repository.camera("CAM001"))
            #expect(camera.lastDetectionID == "seed-1")
            #expect(camera.checkpointID == "CP001")
        }
    }

    @Test("a detection whose message_id another camera's detection has is rejected with the reason, not acked as a duplicate")
    func messageIDOfAnotherCamera() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/+/detection/ack")
                try await camera.publish(json: try seedDetection(id: "counter-7"), to: "lprserver/cameras/CAM001/detection")
                let first = try await acks.firstObject(topic: "lprserver/cameras/CAM001/detection/ack", "the first camera's ack")
                #expect(first["status"] == "stored")
                let other = try seedDetection(id: "counter-7", camera: "CAM002", plate: "XYZ987")
                try await camera.publish(json: other, to: "lprserver/cameras/CAM002/detection")
                let refused = try await acks.firstObject(topic: "lprserver/cameras/CAM002/detection/ack", "the second camera's ack")
                #expect(refused["message_id"] == "counter-7")
                #expect(refused["status"] == "rejected")
                #expect(refused["errors"]?.arrayValue?.first?["path"] == "message_id")
            }
            #expect(try await harness.repository.detectionCount() == 1)
        }
    }

    @Test("unknown fields are kept, not refused")
    func unknownFieldsKept() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/+/detection/ack")
                var detection = try seedDetection(id: "extra-1")
                detection["firmware_version"] = "2.4.1"
                detection["edge"] = ["gpu": "jetson", "fps": .number("12.50")]
                try await camera.publish(json: detection, to: "lprserver/cameras/CAM001/detection")
                let ack = try await acks.firstObject(topic: "lprserver/cameras/CAM001/detection/ack", "the ack")
                #expect(ack["status"] == "stored")
            }
            let stored = try #require(try await harness.repository.detection(messageID: "extra-1"))
            #expect(stored.payload.contains(#""firmware_version":"2.4.1""#))
            #expect(stored.payload.contains(#""fps":12.50"#))
        }
    }

    @Test("bad detections are refused precisely, raise a warning alert each, and do not stop the next", arguments: TestBrokerKind.allCases)
    func refusals(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/+/detection/ack")
                let alerts = try await Inbox.subscribe(camera, to: "lprserver/system/alerts")
                // Not JSON: no message_id, so no ack, but an alert.
                try await camera.publish(topic: "lprserver/cameras/CAM001/detection", payload: "{not json", qos: .atLeastOnce)
                // A missing field and a wrong type.
                var missing = try seedDetection(id: "bad-1")
                missing["checkpoint_id"] = nil
                missing["timestamp"] = 1_705_314_600
                try await camera.publish(json: missing, to: "lprserver/cameras/CAM001/detection")
                // camera_id disagreeing with the topic: the ack goes to the topic's camera.
                let other = try seedDetection(id: "bad-2", camera: "CAM999")
                try await camera.publish(json: other, to: "lprserver/cameras/CAM001/detection")
                // A plate whose number is a number.
                var wrongPlate = try seedDetection(id: "bad-3")
                var data = try #require(wrongPlate["detection_data"]?.objectValue)
                data["plates"] = [["plate_number": 1234, "confidence": 0.9]]
                wrongPlate["detection_data"] = .object(data)
                try await camera.publish(json: wrongPlate, to: "lprserver/cameras/CAM001/detection")
                // And a good one after all that.
                try await camera.publish(json: try seedDetection(id: "good-1"), to: "lprserver/cameras/CAM001/detection")

                let topic = "lprserver/cameras/CAM001/detection/ack"
                let bad1 = try await acks.firstObject(topic: topic, "the ack of bad-1") { $0["message_id"] == "bad-1" }
                #expect(bad1["status"] == "rejected")
                let bad1Errors = Dictionary(
                    (bad1["errors"]?.arrayValue ?? []).map { ($0["path"]?.stringValue ?? "?", $0["reason"]?.stringValue ?? "?") },
                    uniquingKeysWith: { a, _ in a }
                )
                #expect(bad1Errors["checkpoint_id"] == "missing")
                #expect(bad1Errors["timestamp"] == "expected a string, found number")
                let bad2 = try await acks.firstObject(topic: topic, "the ack of bad-2") { $0["message_id"] == "bad-2" }
                #expect(bad2["status"] == "rejected")
                #expect(bad2["errors"]?.arrayValue?.first?["path"] == "camera_id")
                let bad3 = try await acks.firstObject(topic: topic, "the ack of bad-3") { $0["message_id"] == "bad-3" }
                #expect(bad3["errors"]?.arrayValue?.first?["path"] == "detection_data.plates[0].plate_number")
                let good = try await acks.firstObject(topic: topic, "the ack of good-1") { $0["message_id"] == "good-1" }
                #expect(good["status"] == "stored")

                try await alerts.wait(count: 4, "message_rejected alerts") { $0.object["kind"] == "message_rejected" }
                let rejectedAlerts = alerts.objects().filter { $0["kind"] == "message_rejected" }
                #expect(rejectedAlerts.allSatisfy { $0["level"] == "warning" && $0["camera_id"] == "CAM001" })
                #expect(acks.objects().count == 4)
            }
            #expect(try await harness.repository.detectionCount() == 1)
            let stored = try await harness.repository.alerts(since: nil, level: .warning, limit: 100)
            #expect(stored.filter { $0.kind == .messageRejected }.count == 4)
        }
    }

    @Test("a paho-mqtt camera publishes the seed's exact JSON and reads its ack", arguments: TestBrokerKind.allCases)
    func pahoCamera(kind: TestBrokerKind) async throws {
        try await withLPRServer(kind) { harness in
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let script = try directory.write(
                "camera.py",
                """
                import json, sys, threading
                import paho.mqtt.client as mqtt
                port, path = int(sys.argv[1]), sys.argv[2]
                detection = json.load(open(path))
                done = threading.Event()
                def on_connect(client, userdata, flags, rc, properties=None):
                    client.subscribe("lprserver/cameras/CAM001/detection/ack", qos=1)
                def on_subscribe(client, userdata, mid, granted, properties=None):
                    client.publish("lprserver/cameras/CAM001/detection", json.dumps(detection), qos=1)
                def on_message(client, userdata, message):
                    ack = json.loads(message.payload)
                    if ack.get("message_id") == detection["message_id"]:
                        print(json.dumps(ack)); done.set()
                try:
                    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="CAM001-paho")
                except AttributeError:
                    client = mqtt.Client(client_id="CAM001-paho")
                client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
                client.connect("127.0.0.1", port)
                client.loop_start()
                ok = done.wait(15)
                client.loop_stop()
                sys.exit(0 if ok else 1)
                """
            )
            let result = try await runProgram(
                "/usr/bin/env",
                ["python3", script, "\(harness.broker.port)", Fixtures.examplesDirectory.appendingPathComponent("lpr-detection.json").path]
            )
            #expect(result.status == 0)
            let ack = try JSONObject.parse(Array(result.output.utf8))
            #expect(ack["message_id"] == "uuid-string")
            #expect(ack["status"] == "stored")
            #expect(try await harness.repository.detection(messageID: "uuid-string") != nil)
        }
    }

    @Test("a thousand detections from 10 cameras are each stored once and acked once")
    func manyCameras() async throws {
        try await withLPRServer(.databus) { harness in
            try await withClient(.test(harness.broker, id: "watcher")) { watcher in
                let acks = try await Inbox.subscribe(watcher, to: "lprserver/cameras/+/detection/ack")
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for cameraIndex in 0..<10 {
                        group.addTask {
                            try await withClient(.test(harness.broker, id: "CAM\(cameraIndex)")) { camera in
                                var tickets: [PublishTicket] = []
                                for index in 0..<100 {
                                    let json = try seedDetection(id: "c\(cameraIndex)-\(index)", camera: "CAM\(cameraIndex)", plate: "PL\(index)")
                                    tickets.append(
                                        try await camera.enqueue(
                                            topic: "lprserver/cameras/CAM\(cameraIndex)/detection",
                                            payload: ByteBuffer(bytes: JSONValue.object(json).jsonBytes),
                                            qos: .atLeastOnce
                                        )
                                    )
                                }
                                for ticket in tickets { _ = try await ticket.result() }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                try await acks.wait(count: 1000, "acks") { _ in true }
                let ids = acks.objects().compactMap { $0["message_id"]?.stringValue }
                #expect(Set(ids).count == 1000)
                #expect(acks.objects().allSatisfy { $0["status"] == "stored" })
            }
            #expect(try await harness.repository.detectionCount() == 1000)
        }
    }
    @Test(
        "text a store cannot keep (a NUL character, an identifier longer than an index row, a plate of thousands of characters) is refused with its path and does not hold up the next detection",
        arguments: StoreKind.allCases
    )
    func unstorableText(store: StoreKind) async throws {
        try await store.with { repository in
            try await TestBrokerKind.databus.with { broker in
                try await withLPRServer(broker: broker, repository: repository) { harness in
                    // A watch-list entry, so plates are matched (and fuzzy variants computed) before storing.
                    try await harness.server.saveWatchlistEntry(WatchlistEntry(id: "w1", plate: "XYZ999", reason: "test", level: .critical))
                    try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                        let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/+/detection/ack")
                        let topic = "lprserver/cameras/CAM001/detection"
                        try await camera.publish(json: try seedDetection(id: "nul-1", plate: "AB\u{0}1234"), to: topic)
                        try await camera.publish(json: try seedDetection(id: "long-cp", checkpoint: String(repeating: "C", count: 5000)), to: topic)
                        try await camera.publish(json: try seedDetection(id: "long-plate", plate: String(repeating: "7K", count: 1500)), to: topic)
                        try await camera.publish(json: try seedDetection(id: String(repeating: "m", count: 5000)), to: topic)
                        try await camera.publish(json: try seedDetection(id: "good-after"), to: topic)

                        let ackTopic = "lprserver/cameras/CAM001/detection/ack"
                        let good = try await acks.firstObject(topic: ackTopic, timeout: .seconds(20), "the ack of good-after") {
                            $0["message_id"] == "good-after"
                        }
                        #expect(good["status"] == "stored")
                        for (id, path) in [
                            ("nul-1", "detection_data.plates[0].plate_number"), ("long-cp", "checkpoint_id"),
                            ("long-plate", "detection_data.plates[0].plate_number"), (String(repeating: "m", count: 5000), "message_id"),
                        ] {
                            let ack = try await acks.firstObject(topic: ackTopic, "the ack of \(id.prefix(20))") {
                                $0["message_id"]?.stringValue == id
                            }
                            #expect(ack["status"] == "rejected", "\(id.prefix(20))")
                            #expect(ack["errors"]?.arrayValue?.first?["path"]?.stringValue == path, "\(id.prefix(20))")
                        }
                    }
                    #expect(try await harness.repository.detectionCount() == 1)
                }
            }
        }
    }

    @Test(
        "a detection the store refuses for a reason nobody foresaw is rejected with the store's error once others are stored; it does not hold up the rest"
    )
    func unforeseenStoreFailure() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("lpr.sqlite")
        let repository = try SQLiteLPRRepository(path: path)
        try await TestBrokerKind.databus.with { broker in
            try await withLPRServer(broker: broker, repository: repository) { harness in
                // A fault of the store's own, in the real file: SQLite refuses this one row.
                let trigger = """
                    import sqlite3, sys
                    db = sqlite3.connect(sys.argv[1])
                    db.execute("CREATE TRIGGER refuse_one BEFORE INSERT ON detection WHEN NEW.message_id = 'refused-by-store' BEGIN SELECT RAISE(ABORT, 'this row is refused'); END")
                    db.commit()
                    """
                let python = try ChildProcess.spawn("python3", ["-c", trigger, path], errorPath: directory.file("python.log"))
                #expect(await python.wait() == 0)
                try await withClient(.test(harness.broker, id: "CAM001")) { camera in
                    let acks = try await Inbox.subscribe(camera, to: "lprserver/cameras/+/detection/ack")
                    let topic = "lprserver/cameras/CAM001/detection"
                    for id in ["before-1", "refused-by-store", "after-1", "after-2"] {
                        try await camera.publish(json: try seedDetection(id: id), to: topic)
                    }
                    let ackTopic = "lprserver/cameras/CAM001/detection/ack"
                    for id in ["before-1", "after-1", "after-2"] {
                        let ack = try await acks.firstObject(topic: ackTopic, timeout: .seconds(20), "the ack of \(id)") {
                            $0["message_id"]?.stringValue == id
                        }
                        #expect(ack["status"] == "stored", "\(id)")
                    }
                    let refused = try await acks.firstObject(topic: ackTopic, timeout: .seconds(20), "the ack of the refused one") {
                        $0["message_id"] == "refused-by-store"
                    }
                    #expect(refused["status"] == "rejected")
                    #expect(refused["errors"]?.arrayValue?.first?["reason"]?.stringValue?.contains("this row is refused") == true)
                }
                #expect(try await harness.repository.detectionCount() == 3)
            }
        }
    }
}
