import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// A 600-byte detection that carries its number first.
private func detection(_ number: Int, size: Int = 600) -> ByteBuffer {
    var text = "\(number)|"
    text += String(repeating: "x", count: max(0, size - text.utf8.count))
    return ByteBuffer(string: text)
}

private func number(of publish: PublishPacket) -> Int? {
    Int(String(buffer: publish.payload).prefix { $0 != "|" })
}

/// Publishes `numbers` at QoS 1 on `connection`, keeping up to `window` unacknowledged, and
/// returns the reason code of every acknowledgement that came back. Stops early (without
/// throwing) when the connection goes away.
private func publishNumbered(
    _ connection: CodecConnection,
    _ numbers: [Int],
    topic: (Int) -> String = { "lprserver/cameras/\($0 % 100)/detection" },
    window: Int = 100,
    size: Int = 600
) async -> [Int: ReasonCode] {
    var answers: [Int: ReasonCode] = [:]
    var inFlight: [UInt16: Int] = [:]
    var next = 0
    while next < numbers.count || !inFlight.isEmpty {
        var batch: [MQTTPacket] = []
        while next < numbers.count && inFlight.count < window {
            let number = numbers[next]
            let identifier = UInt16(number % 65_535 + 1)
            inFlight[identifier] = number
            batch.append(
                .publish(
                    PublishPacket(topicName: topic(number), payload: detection(number, size: size), qos: .atLeastOnce, packetIdentifier: identifier)
                )
            )
            next += 1
        }
        if !batch.isEmpty {
            do { try await connection.send(batch) } catch { return answers }
        }
        guard let packet = try? await connection.receive(within: 10) else { return answers }
        if case .puback(let ack) = packet, let number = inFlight.removeValue(forKey: ack.packetIdentifier) {
            answers[number] = ack.reasonCode
        }
    }
    return answers
}

/// Receives PUBLISH packets until none arrives for `quiet` seconds, acknowledging them a
/// window at a time. Returns them in arrival order.
private func receivePublishes(_ connection: CodecConnection, quiet: Double = 3) async throws -> [PublishPacket] {
    var publishes: [PublishPacket] = []
    while true {
        guard let first = try? await connection.receive(within: quiet) else { return publishes }
        var packets = [first]
        while let more = try? await connection.receive(within: 0.001) { packets.append(more) }
        var acknowledgements: [MQTTPacket] = []
        for case .publish(let publish) in packets {
            publishes.append(publish)
            if let identifier = publish.packetIdentifier { acknowledgements.append(.puback(PubAckPacket(packetIdentifier: identifier))) }
        }
        if !acknowledgements.isEmpty { try await connection.send(acknowledgements) }
    }
}

/// The numbers of the detections received, in arrival order (see ``receivePublishes(_:quiet:)``).
private func receiveNumbered(_ connection: CodecConnection, quiet: Double = 3) async throws -> [Int] {
    try await receivePublishes(connection, quiet: quiet).compactMap(number(of:))
}

/// Connects a persistent subscriber to `filter` at QoS 1 and disconnects it, so that its
/// messages queue while it is away.
private func leaveSubscribed(port: Int, _ clientID: String, filter: String, version: MQTTProtocolVersion = .v3_1_1) async throws {
    let subscriber = try await CodecConnection.connect(port: port, version: version)
    let properties: Properties = version == .v5 ? [.sessionExpiryInterval(3600)] : []
    _ = try await subscriber.handshake(clientIdentifier: clientID, cleanStart: false, properties: properties)
    try await subscriber.subscribe(filter, qos: .atLeastOnce)
    try await subscriber.disconnect()
    await subscriber.close()
}

@Suite("Offline queues in the store", .serialized)
struct OfflineQueueTests {
    /// Messages for the offline-subscriber scenario: 36,000 (an hour of 100 cameras scaled down
    /// tenfold); `DATABUS_OFFLINE_MESSAGES=360000` runs the full hour.
    static let offlineMessages = ProcessInfo.processInfo.environment["DATABUS_OFFLINE_MESSAGES"].flatMap(Int.init) ?? 36_000

    @Test("default settings: a persistent QoS 1 subscriber offline while 36,000 detections arrive gets every one, across a SIGKILL of the broker")
    func offlineSubscriberAcrossKill() async throws {
        let total = Self.offlineMessages
        let configuration = "persistence true\npersistence_location {DIRECTORY}/store/\nsys_interval 0\n"
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            try await leaveSubscribed(port: broker.port, "lpr-server", filter: "lprserver/cameras/+/detection")

            let cameras = try await connectAccepted(port: broker.port, "cameras")
            var answers = await publishNumbered(cameras, Array(1...(total / 2)))
            #expect(answers.count == total / 2)
            // Mid-stream: more messages on their way, and the broker dies.
            let inFlight = (total / 2 + 1)...(total / 2 + 500)
            try await cameras.send(
                inFlight.map {
                    .publish(
                        PublishPacket(
                            topicName: "lprserver/cameras/7/detection",
                            payload: detection($0),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16($0 % 65_535 + 1)
                        )
                    )
                }
            )
            await broker.kill()
            await cameras.close()

            try await broker.restart()
            let again = try await connectAccepted(port: broker.port, "cameras")
            defer { Task { await again.close() } }
            for (number, reason) in await publishNumbered(again, Array((total / 2 + 1)...total)) { answers[number] = reason }
            let acknowledged = Set(answers.filter { !$0.value.isFailure }.keys)
            #expect(acknowledged.count == total, "every message was acknowledged")

            let resumed = try await CodecConnection.connect(port: broker.port, version: .v3_1_1)
            defer { Task { await resumed.close() } }
            let connack = try await resumed.handshake(clientIdentifier: "lpr-server", cleanStart: false)
            #expect(connack.sessionPresent)
            let received = Set(try await receiveNumbered(resumed))
            let missing = acknowledged.subtracting(received)
            #expect(missing.isEmpty, "\(missing.count) acknowledged messages never arrived, e.g. \(missing.sorted().prefix(10))")
        }
    }

    @Test("a store written before queues moved to disk (schema v1) opens, and the messages it queued arrive")
    func migratesVersionOneStore() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-v1-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // The v1 schema and a session with two queued messages, as the previous release stored them.
        let schema = """
            CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
            INSERT INTO grdb_migrations VALUES ('v1');
            CREATE TABLE session (client_id TEXT PRIMARY KEY NOT NULL, expiry_interval INTEGER NOT NULL);
            CREATE TABLE subscription (client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                filter TEXT NOT NULL, options INTEGER NOT NULL, identifier INTEGER, PRIMARY KEY (client_id, filter));
            CREATE TABLE message (sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                packet_identifier INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,
                released INTEGER NOT NULL DEFAULT 0, subscription_identifiers TEXT NOT NULL, topic TEXT NOT NULL,
                payload BLOB NOT NULL, properties BLOB NOT NULL, expires_at REAL, UNIQUE (client_id, packet_identifier));
            CREATE TABLE incoming (client_id TEXT NOT NULL REFERENCES session(client_id) ON DELETE CASCADE,
                packet_identifier INTEGER NOT NULL, PRIMARY KEY (client_id, packet_identifier));
            CREATE TABLE retained (topic TEXT PRIMARY KEY NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL,
                properties BLOB NOT NULL, expires_at REAL);
            INSERT INTO session VALUES ('lpr-server', 4294967295);
            INSERT INTO subscription VALUES ('lpr-server', 'lpr/#', 1, NULL);
            INSERT INTO message (client_id, packet_identifier, qos, retain, subscription_identifiers, topic, payload, properties)
                VALUES ('lpr-server', 1, 1, 0, '', 'lpr/cam-1', X'31', X'00'), ('lpr-server', 2, 1, 0, '', 'lpr/cam-1', X'32', X'00');
            """
        let script = "import sqlite3, sys\ndb = sqlite3.connect(sys.argv[1])\ndb.executescript(sys.argv[2])\ndb.commit()\n"
        let created = try await runProgram("python3", ["-c", script, folder + "/broker.db", schema])
        #expect(created.status == 0, "\(created.output)")
        let configuration = BrokerConfiguration.testing {
            $0.persistence = true
            $0.persistenceLocation = folder
        }
        try await withBroker(configuration) { port in
            let resumed = try await CodecConnection.connect(port: port, version: .v3_1_1)
            defer { Task { await resumed.close() } }
            let connack = try await resumed.handshake(clientIdentifier: "lpr-server", cleanStart: false)
            #expect(connack.sessionPresent)
            #expect(try await receivePublishes(resumed, quiet: 1).map(\.payloadString) == ["1", "2"])
            // New messages queue behind them under the new schema.
            let camera = try await connectAccepted(port: port, "camera")
            defer { Task { await camera.close() } }
            #expect(try await camera.publish("lpr/cam-1", "3", qos: .atLeastOnce, packetIdentifier: 1) == .success)
            #expect(try await receivePublishes(resumed, quiet: 1).map(\.payloadString) == ["3"])
        }
    }

    @Test("without back-pressure, an online subscriber with a backlog larger than its memory window gets every message in order")
    func backlogInOrder() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-backlog-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // With back-pressure (the default) the publisher would be held back long before.
        let configuration = BrokerConfiguration.testing {
            $0.persistence = true
            $0.persistenceLocation = folder
            $0.backpressure = false
        }
        try await withBroker(configuration) { port in
            let subscriber = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await subscriber.close() } }
            _ = try await subscriber.handshake(clientIdentifier: "slow-dashboard", cleanStart: true, properties: [.sessionExpiryInterval(600)])
            try await subscriber.subscribe("lpr/#", qos: .atLeastOnce)

            // The subscriber reads nothing while 3,000 messages arrive: 20 go in flight, a window
            // waits in memory, the rest in the store.
            let publisher = try await connectAccepted(port: port, "camera")
            defer { Task { await publisher.close() } }
            let answers = await publishNumbered(publisher, Array(1...3000), topic: { _ in "lpr/cam-1/plate" })
            #expect(answers.count == 3000 && answers.values.allSatisfy { $0 == .success })

            let received = try await receiveNumbered(subscriber)
            #expect(received.count == 3000)
            #expect(received == Array(1...3000), "in order")
        }
    }

    @Test("max_queued_messages reached for a persistent session: 5.0 publishers get 0x97, the drops are counted per client in /metrics")
    func quotaExceeded() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-quota-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let configuration = BrokerConfiguration.testing {
            $0.persistence = true
            $0.persistenceLocation = folder
            $0.maxQueuedMessages = 3
            $0.metricsListener = .init(port: 0, address: "127.0.0.1")
        }
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let port = try await broker.start()[0].port!
        let metricsPort = try #require(broker.metricsAddress?.port)
        do {
            try await leaveSubscribed(port: port, "night-shift", filter: "alerts/#", version: .v5)
            let v5 = try await connectAccepted(port: port, "watch-list")
            var codes: [ReasonCode] = []
            for identifier in 1...5 {
                codes.append(try await v5.publish("alerts/plate", "AB-\(identifier)", qos: .atLeastOnce, packetIdentifier: UInt16(identifier)))
            }
            #expect(codes == [.success, .success, .success, .quotaExceeded, .quotaExceeded])
            let v311 = try await connectAccepted(port: port, "old-camera", version: .v3_1_1)
            #expect(try await v311.publish("alerts/plate", "CD-1", qos: .atLeastOnce, packetIdentifier: 1) == .success, "3.1.1 has no way to say it")
            await v5.close()
            await v311.close()

            let result = try await runProgram(
                "python3",
                [
                    "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
                    "http://127.0.0.1:\(metricsPort)/metrics",
                ]
            )
            let lines = Set(result.output.split(separator: "\n").map(String.init))
            #expect(lines.contains(#"databus_client_messages_dropped_total{client="night-shift",reason="queue_full"} 3"#), "\(result.output)")
            #expect(lines.contains(#"databus_messages_dropped_total{reason="queue_full"} 3"#))

            let returning = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await returning.close() } }
            _ = try await returning.handshake(clientIdentifier: "night-shift", cleanStart: false, properties: [.sessionExpiryInterval(3600)])
            let received = try await receivePublishes(returning, quiet: 1).map(\.payloadString)
            #expect(received == ["AB-1", "AB-2", "AB-3"])
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    @Test("a store at persistence_max_bytes refuses further copies with 0x97 and counts them as store_full; those it kept arrive")
    func storeBudget() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-budget-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let configuration = BrokerConfiguration.testing {
            $0.persistence = true
            $0.persistenceLocation = folder
            $0.persistenceMaxBytes = 400 << 10
        }
        try await withBroker(configuration) { port in
            try await leaveSubscribed(port: port, "archive", filter: "frames/#", version: .v5)
            let camera = try await connectAccepted(port: port, "camera-9")
            defer { Task { await camera.close() } }
            var accepted: [Int] = []
            var refused = 0
            for number in 1...400 {
                try await camera.send(
                    .publish(
                        PublishPacket(
                            topicName: "frames/9",
                            payload: detection(number, size: 4096),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(number)
                        )
                    )
                )
                guard case .puback(let ack) = try await camera.receive() else { continue }
                if ack.reasonCode == .quotaExceeded { refused += 1 } else { accepted.append(number) }
            }
            #expect(refused > 0, "400 frames of 4 KB do not fit 400 KB")
            #expect(accepted.count > 20, "frames were kept until the budget was reached")

            let archive = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await archive.close() } }
            _ = try await archive.handshake(clientIdentifier: "archive", cleanStart: false, properties: [.sessionExpiryInterval(3600)])
            #expect(try await receiveNumbered(archive, quiet: 1) == accepted)
        }
    }
}
