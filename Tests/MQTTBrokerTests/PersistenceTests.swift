import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import NIOPosix
import Testing

/// A fresh folder for one test's store.
private func makeStoreFolder() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("databus-store-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

private func persistentConfiguration(folder: String, port: Int = 0) -> BrokerConfiguration {
    var configuration = BrokerConfiguration()
    configuration.listeners = [.init(port: port, address: "127.0.0.1")]
    configuration.allowAnonymous = true
    configuration.sysInterval = 0
    configuration.persistence = true
    configuration.persistenceLocation = folder
    configuration.maxQueuedMessages = 0
    return configuration
}

/// Receives PUBLISH packets until none arrives for `quiet` seconds, completing every QoS flow.
/// - Returns: the payloads in arrival order with their QoS.
private func drainMessages(_ connection: CodecConnection, quiet: Double = 1.5) async throws -> [(String, QoS)] {
    var received: [(String, QoS)] = []
    while true {
        let packet: MQTTPacket
        do {
            packet = try await connection.receive(within: quiet)
        } catch {
            return received
        }
        switch packet {
        case .publish(let publish):
            received.append((String(buffer: publish.payload), publish.qos))
            if let identifier = publish.packetIdentifier {
                if publish.qos == .atLeastOnce {
                    try await connection.send(.puback(PubAckPacket(packetIdentifier: identifier)))
                } else {
                    try await connection.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
                }
            }
        case .pubrel(let release):
            try await connection.send(.pubcomp(PubCompPacket(packetIdentifier: release.packetIdentifier)))
        default:
            break
        }
    }
}

@Suite("Persistence", .serialized)
struct PersistenceTests {
    @Test("sessions, subscriptions, queued QoS 1/2 messages and retained messages survive a restart")
    func survivesRestart() async throws {
        let folder = try makeStoreFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }

        let first = MQTTBroker(configuration: persistentConfiguration(folder: folder), logger: Logger(label: "test.persistence"))
        let port = try await first.start()[0].port!
        let subscriber = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await subscriber.handshake(clientIdentifier: "server-1", cleanStart: true, properties: [.sessionExpiryInterval(3600)])
        try await subscriber.send(
            .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "lpr/#", options: .init(qos: .exactlyOnce))]))
        )
        try await subscriber.expectNext(.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS2])))
        try await subscriber.send(.disconnect(DisconnectPacket()))
        await subscriber.close()

        let camera = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await camera.handshake(clientIdentifier: "camera-1")
        for number in 1...10 {
            let qos: QoS = number % 2 == 0 ? .exactlyOnce : .atLeastOnce
            try await camera.send(
                .publish(PublishPacket(topicName: "lpr/plates", payload: ByteBuffer(string: "\(number)"), qos: qos, packetIdentifier: UInt16(number)))
            )
            let answer = try await camera.receive()
            if qos == .exactlyOnce {
                #expect(answer == .pubrec(PubRecPacket(packetIdentifier: UInt16(number))))
                try await camera.send(.pubrel(PubRelPacket(packetIdentifier: UInt16(number))))
                try await camera.expectNext(.pubcomp(PubCompPacket(packetIdentifier: UInt16(number))))
            } else {
                #expect(answer == .puback(PubAckPacket(packetIdentifier: UInt16(number))))
            }
        }
        try await camera.send(
            .publish(
                PublishPacket(topicName: "lpr/status", payload: ByteBuffer(string: "online"), qos: .atLeastOnce, retain: true, packetIdentifier: 11)
            )
        )
        _ = try await camera.receive()
        await camera.close()
        await first.shutdown()

        let second = MQTTBroker(configuration: persistentConfiguration(folder: folder), logger: Logger(label: "test.persistence"))
        let port2 = try await second.start()[0].port!
        let resumed = try await CodecConnection.connect(port: port2, version: .v5)
        let connack = try await resumed.handshake(clientIdentifier: "server-1", cleanStart: false, properties: [.sessionExpiryInterval(3600)])
        #expect(connack.sessionPresent)
        let received = try await drainMessages(resumed)
        #expect(received.map(\.0) == (1...10).map(String.init) + ["online"])
        #expect(received.prefix(10).map(\.1) == (1...10).map { $0 % 2 == 0 ? QoS.exactlyOnce : .atLeastOnce })

        let late = try await CodecConnection.connect(port: port2, version: .v3_1_1)
        _ = try await late.handshake(clientIdentifier: "dashboard")
        try await late.send(.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "lpr/status")])))
        _ = try await late.receive()
        guard case .publish(let retained) = try await late.receive() else {
            Issue.record("the retained message did not survive the restart")
            return
        }
        #expect(String(buffer: retained.payload) == "online" && retained.retain)
        await late.close()
        await resumed.close()
        await second.shutdown()
    }

    @Test("a damaged store is refused with a message naming it")
    func damagedStore() async throws {
        let folder = try makeStoreFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: folder + "/broker.db"))
        let broker = MQTTBroker(configuration: persistentConfiguration(folder: folder), logger: Logger(label: "test.persistence"))
        let error = await #expect(throws: PersistenceError.self) { try await broker.start() }
        #expect(error?.description.contains("broker.db") == true)
    }

    @Test("after kill -9 mid-stream every acknowledged message arrives, QoS 2 exactly once")
    func crashMidStream() async throws {
        let executable = try databusExecutable()
        let folder = try makeStoreFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let configurationFile = folder + "/databus.conf"
        let (broker, port) = try await startBrokerProcess(
            configuration: """
                listener {PORT} 127.0.0.1
                allow_anonymous true
                persistence true
                persistence_location \(folder)/store
                max_queued_messages 0
                sys_interval 0
                """,
            file: configurationFile
        )

        // A persistent subscriber goes offline before the messages flow.
        let subscriber = try await CodecConnection.connect(port: port, version: .v3_1_1)
        _ = try await subscriber.handshake(clientIdentifier: "lpr-server", cleanStart: false)
        try await subscriber.send(
            .subscribe(
                SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "lprserver/#", options: .init(qos: .exactlyOnce))])
            )
        )
        try await subscriber.expectNext(.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS2])))
        try await subscriber.send(.disconnect(DisconnectPacket()))
        await subscriber.close()

        // Numbered messages, odd QoS 1 and even QoS 2, 16 at a time; the broker dies mid-batch.
        let camera = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await camera.handshake(clientIdentifier: "camera-7")
        var acknowledged = Set<Int>()
        let batches = 40
        let killAfterBatch = 25
        outer: for batch in 0..<batches {
            for offset in 1...16 {
                let number = batch * 16 + offset
                let qos: QoS = number % 2 == 0 ? .exactlyOnce : .atLeastOnce
                try? await camera.send(
                    .publish(
                        PublishPacket(
                            topicName: "lprserver/cameras/7/detection",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: qos,
                            packetIdentifier: UInt16(number)
                        )
                    )
                )
            }
            if batch == killAfterBatch {
                kill(broker.pid, SIGKILL)
                await broker.wait()
            }
            var answers = 0
            while answers < 16 {
                guard let packet = try? await camera.receive(within: 2) else { break outer }
                switch packet {
                case .puback(let ack) where !ack.reasonCode.isFailure:
                    acknowledged.insert(Int(ack.packetIdentifier))
                    answers += 1
                case .pubrec(let received) where !received.reasonCode.isFailure:
                    acknowledged.insert(Int(received.packetIdentifier))
                    try? await camera.send(.pubrel(PubRelPacket(packetIdentifier: received.packetIdentifier)))
                    answers += 1
                default:
                    continue
                }
            }
        }
        await camera.close()
        #expect(acknowledged.count >= killAfterBatch * 16, "the broker acknowledged \(acknowledged.count) messages before it was killed")

        let restarted = try ChildProcess.spawn(executable, ["broker", "-c", configurationFile])
        defer { Task { await restarted.terminate() } }
        try await waitForPort(port)
        let resumed = try await CodecConnection.connect(port: port, version: .v3_1_1)
        let connack = try await resumed.handshake(clientIdentifier: "lpr-server", cleanStart: false)
        #expect(connack.sessionPresent)
        let received = try await drainMessages(resumed, quiet: 2)
        await resumed.close()

        var counts: [Int: Int] = [:]
        for (payload, _) in received { counts[Int(payload) ?? -1, default: 0] += 1 }
        let missing = acknowledged.filter { counts[$0] == nil }.sorted()
        let duplicatedQoS2 = counts.filter { $0.key % 2 == 0 && $0.value > 1 }.keys.sorted()
        #expect(missing.isEmpty, "acknowledged but never delivered: \(missing)")
        #expect(duplicatedQoS2.isEmpty, "QoS 2 messages delivered more than once: \(duplicatedQoS2)")
        #expect(counts[-1] == nil)
    }
}
