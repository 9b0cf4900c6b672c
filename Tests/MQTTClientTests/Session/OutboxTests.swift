import DatabusTestSupport
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import MQTTClient

/// An outbox persistence that keeps entries in memory, to check what the client tells a persistence.
final class RecordingPersistence: OutboxPersistence {
    let entries = NIOLockedValueBox<[UInt64: OutboxEntry]>([:])
    init(_ initial: [OutboxEntry] = []) { entries.withLockedValue { for entry in initial { $0[entry.sequence] = entry } } }
    func loadEntries() throws -> [OutboxEntry] { entries.withLockedValue { Array($0.values) } }
    func append(_ entry: OutboxEntry) throws { entries.withLockedValue { $0[entry.sequence] = entry } }
    func update(_ entry: OutboxEntry) throws { entries.withLockedValue { $0[entry.sequence] = entry } }
    func remove(sequence: UInt64) throws { _ = entries.withLockedValue { $0.removeValue(forKey: sequence) } }
}

/// The outbox: order, limits, overflow policies, persistence calls; and against mosquitto,
/// messages published while disconnected.
@Suite("Outbox", .serialized, .timeLimit(.minutes(2)))
struct OutboxTests {
    static func append(
        _ outbox: inout Outbox,
        _ payload: String,
        qos: QoS = .atLeastOnce
    ) throws(MQTTClientError) -> (entry: OutboxEntry, dropped: [OutboxEntry]) {
        try outbox.append(topic: "t", payload: ByteBuffer(string: payload), qos: qos, retain: false, properties: [])
    }

    @Test("reject-newest refuses a message over the count limit and counts it")
    func rejectNewest() throws {
        var outbox = Outbox(configuration: OutboxConfiguration(maximumMessages: 2, overflowPolicy: .rejectNewest))
        _ = try Self.append(&outbox, "1")
        _ = try Self.append(&outbox, "2")
        #expect(throws: MQTTClientError.self) { try Self.append(&outbox, "3") }
        #expect(outbox.statistics == OutboxStatistics(messages: 2, bytes: 4, dropped: 0, rejected: 1))
    }

    @Test("drop-oldest drops the oldest unsent message, never one in flight, and counts it")
    func dropOldest() throws {
        var outbox = Outbox(configuration: OutboxConfiguration(maximumMessages: 2, overflowPolicy: .dropOldest))
        let first = try Self.append(&outbox, "1").entry
        _ = outbox.popQueued()
        outbox.setState(.published(packetIdentifier: 1), of: first.sequence)
        _ = try Self.append(&outbox, "2")
        let third = try Self.append(&outbox, "3")
        #expect(third.dropped.map { String(buffer: $0.payload) } == ["2"])
        #expect(outbox.statistics.dropped == 1)
        // Only the message in flight is left besides the newest: nothing can be dropped, so reject.
        _ = outbox.popQueued()
        #expect(throws: MQTTClientError.self) { try Self.append(&outbox, "4") }
        #expect(outbox.entriesInMemory.map(\.sequence) == [first.sequence, third.entry.sequence])
    }

    @Test("the byte limit counts topics and payloads")
    func byteLimit() throws {
        var outbox = Outbox(configuration: OutboxConfiguration(maximumBytes: 10, overflowPolicy: .dropOldest))
        _ = try Self.append(&outbox, "1234")  // 1 + 4 bytes
        _ = try Self.append(&outbox, "1234")
        let third = try Self.append(&outbox, "12")
        #expect(third.dropped.count == 1)
        #expect(outbox.byteCount == 8)
        // A message bigger than the whole outbox is refused even when dropping.
        #expect(throws: MQTTClientError.self) { try Self.append(&outbox, "0123456789") }
    }

    @Test("the changes a persistence is given hold every change, and a restored outbox resends with the same packet identifiers")
    func persistence() throws {
        let persistence = RecordingPersistence()
        var session = ClientSession(
            version: .v5,
            receiveMaximum: 10,
            topicAliasMaximum: 0,
            outbox: OutboxConfiguration(persistence: persistence)
        )
        for payload in ["a", "b", "c"] {
            _ = try session.enqueue(topic: "t", payload: ByteBuffer(string: payload), qos: .atLeastOnce, retain: false, properties: [])
        }
        _ = session.connected(ConnAckPacket(properties: [.receiveMaximum(2)]))
        while session.nextOutgoing() != nil {}
        _ = session.receive(.puback(PubAckPacket(packetIdentifier: 1)))
        // The session does no I/O: the client hands its changes to the persistence (group commit).
        try persistence.apply(session.takeOutboxChanges())
        let stored = persistence.entries.withLockedValue { $0 }.values.sorted { $0.sequence < $1.sequence }
        #expect(stored.map(\.state) == [.published(packetIdentifier: 2), .queued])

        // A new process: the restored session resumes the flow of "b" and sends "c" after it.
        var restored = ClientSession(version: .v5, receiveMaximum: 10, topicAliasMaximum: 0, outbox: OutboxConfiguration(persistence: persistence))
        try restored.restoreOutbox()
        let resumed = restored.connected(ConnAckPacket(sessionPresent: true))
        guard case .send(.publish(let resent)) = resumed.first else {
            Issue.record("nothing resent: \(resumed)")
            return
        }
        #expect(resent.packetIdentifier == 2 && resent.dup && String(buffer: resent.payload) == "b")
        guard case .publish(.publish(let next), _, _) = restored.nextOutgoing() else {
            Issue.record("c was not sent")
            return
        }
        #expect(String(buffer: next.payload) == "c")
        #expect(next.packetIdentifier != 2)
    }

    @Test(
        "messages published before the first connection and while the broker is down arrive in order",
        arguments: TestBrokerKind.allCases,
        [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func publishedWhileDisconnected(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        let directory = try TemporaryDirectory(prefix: "databus-outbox")
        defer { directory.remove() }
        let persistence = try directory.makeWritableFolder("persistence")
        try await kind.with(extraConfiguration: "persistence true\npersistence_location \(persistence)/") { broker in
            var serverConfiguration = MQTTClient.Configuration.test(broker, id: "lpr-server", version: version)
            // A durable subscriber: mosquitto 2.0 saves only sessions begun without clean start.
            serverConfiguration.cleanStart = false
            serverConfiguration.sessionExpiry = .seconds(600)
            try await withClient(serverConfiguration) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/2/detection", qos: .exactlyOnce)

                try await withClient(.test(broker, id: "camera-2", version: version), connect: false) { camera in
                    var tickets: [PublishTicket] = []
                    // One QoS per stretch: brokers keep the order of messages of the same QoS only.
                    for number in 0..<50 {
                        tickets.append(
                            try await camera.enqueue(
                                topic: "lprserver/cameras/2/detection",
                                payload: ByteBuffer(string: "\(number)"),
                                qos: .exactlyOnce
                            )
                        )
                    }
                    let waiting = await camera.outboxStatistics
                    #expect(waiting.messages == 50)
                    try await camera.connect()
                    let beforeRestart = try await collect(detections, count: 50)
                    expectNumbered(beforeRestart.map(\.payloadString), 0..<50)

                    // The broker goes away (and saves its sessions); the camera keeps publishing.
                    let cameraStates = camera.states
                    await broker.terminate()
                    try await waitForState(cameraStates) { $0.isBackingOff }
                    for number in 50..<100 {
                        tickets.append(
                            try await camera.enqueue(
                                topic: "lprserver/cameras/2/detection",
                                payload: ByteBuffer(string: "\(number)"),
                                qos: .atLeastOnce
                            )
                        )
                    }
                    try await broker.restart()
                    for ticket in tickets {
                        let result = try await ticket.result()
                        #expect(result.isSuccess)
                    }
                }

                // A QoS 1 message whose PUBACK the broker had not read when it stopped comes again (allowed).
                let afterRestart = try await withDeadline(.seconds(20), "messages after the restart") {
                    var numbers: [Int] = []
                    for await message in detections {
                        let number = Int(message.payloadString) ?? -1
                        if number >= 50 { numbers.append(number) }
                        if number == 99 { break }
                    }
                    return numbers
                }
                #expect(afterRestart == Array(50..<100))
            }
        }
    }

    @Test("drop-oldest against a broker: the newest messages arrive, the dropped ones fail their publish", arguments: TestBrokerKind.allCases)
    func dropOldestDelivery(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server")) { server in
                let frames = try await server.subscribe(to: "pipeline/metadata", qos: .atLeastOnce)
                var configuration = MQTTClient.Configuration.test(broker, id: "pipeline")
                configuration.outbox = OutboxConfiguration(maximumMessages: 5, overflowPolicy: .dropOldest)
                try await withClient(configuration, connect: false) { pipeline in
                    var tickets: [PublishTicket] = []
                    for number in 0..<8 {
                        tickets.append(
                            try await pipeline.enqueue(topic: "pipeline/metadata", payload: ByteBuffer(string: "\(number)"), qos: .atLeastOnce)
                        )
                    }
                    let statistics = await pipeline.outboxStatistics
                    #expect(statistics.dropped == 3)
                    try await pipeline.connect()
                    var outcomes: [String] = []
                    for ticket in tickets {
                        do {
                            _ = try await ticket.result()
                            outcomes.append("sent")
                        } catch let error as MQTTClientError {
                            outcomes.append(error.code == .droppedFromOutbox ? "dropped" : "\(error)")
                        }
                    }
                    #expect(outcomes == ["dropped", "dropped", "dropped", "sent", "sent", "sent", "sent", "sent"])
                }
                let received = try await collect(frames, count: 5)
                #expect(received.map(\.payloadString) == ["3", "4", "5", "6", "7"])
            }
        }
    }
}
