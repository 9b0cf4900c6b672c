import DatabusTestSupport
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing

@testable import MQTTBroker

@Suite("Back-pressure")
struct BackPressureTests {
    /// The last `autoRead` value the handler set on the channel.
    private func autoRead(_ channel: EmbeddedChannel) -> Bool? {
        channel.options.last { $0.option is ChannelOptions.Types.AutoReadOption }?.value as? Bool
    }

    @Test("a client that does not read what we send stops being read from, until its buffer drains")
    func readingFollowsWritability() throws {
        let core = BrokerCore(configuration: .standalone, logger: Logger(label: "test.backpressure"), authenticator: nil)
        let channel = EmbeddedChannel(handler: ConnectionHandler(core: core, listener: SharedListener(index: 0, .init(port: 0))))
        defer { _ = try? channel.finish() }
        #expect(autoRead(channel) == nil)

        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(autoRead(channel) == false)

        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        #expect(autoRead(channel) == true)
    }

    @Test("a QoS 0 message for a client that does not read what we send waits in its session until the channel is writable again")
    func messagesWaitWhileUnwritable() throws {
        var configuration = BrokerConfiguration.standalone
        configuration.allowAnonymous = true
        let core = BrokerCore(configuration: configuration, logger: Logger(label: "test.backpressure"), authenticator: nil)
        let channel = EmbeddedChannel(handler: ConnectionHandler(core: core, listener: SharedListener(index: 0, .init(port: 0))))
        defer { _ = try? channel.finish() }
        func send(_ packet: MQTTPacket) throws {
            var buffer = ByteBuffer()
            try packet.write(to: &buffer, version: .v5)
            try channel.writeInbound(buffer)
            channel.embeddedEventLoop.run()
        }
        func written() throws -> [MQTTPacket] {
            var packets: [MQTTPacket] = []
            while var buffer = try channel.readOutbound(as: ByteBuffer.self) {
                while let packet = try MQTTPacket.read(from: &buffer, version: .v5) { packets.append(packet) }
            }
            return packets
        }
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1883)).wait()
        try send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "slow-reader")))
        try send(
            .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "w/#", options: .init(qos: .atMostOnce))]))
        )
        #expect(try written().count == 2, "CONNACK and SUBACK")

        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        _ = core.distributor.publish(
            ApplicationMessage(topic: "w/1", payload: ByteBuffer(string: "held"), qos: .atMostOnce, retain: false),
            now: .now()
        )
        channel.embeddedEventLoop.run()
        #expect(try written().isEmpty, "nothing is written to a channel that is not writable")

        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.run()
        let packets = try written()
        #expect(packets.count == 1)
        guard case .publish(let publish) = packets.first else {
            Issue.record("expected the held PUBLISH, got \(packets)")
            return
        }
        #expect(publish.topicName == "w/1")
    }
}

/// Publishes `count` numbered QoS 1 messages on `topic`, keeping up to 100 unacknowledged, and
/// counts the acknowledgements in `acknowledged` as they come.
private func publishCounting(
    _ connection: CodecConnection,
    topic: String,
    count: Int,
    acknowledged: NIOLockedValueBox<Int>
) async throws {
    var next = 1
    var inFlight = 0
    while next <= count || inFlight > 0 {
        var batch: [MQTTPacket] = []
        while next <= count && inFlight < 100 {
            batch.append(
                .publish(
                    PublishPacket(
                        topicName: topic,
                        payload: ByteBuffer(string: "\(next)"),
                        qos: .atLeastOnce,
                        packetIdentifier: UInt16(next % 65_535 + 1)
                    )
                )
            )
            next += 1
            inFlight += 1
        }
        if !batch.isEmpty { try await connection.send(batch) }
        if case .puback = try await connection.receive(within: 30) {
            inFlight -= 1
            acknowledged.withLockedValue { $0 += 1 }
        }
    }
}

/// Reads and acknowledges PUBLISH packets until none arrives for `quiet` seconds; returns their payloads.
private func readAll(_ connection: CodecConnection, quiet: Double = 2) async throws -> [String] {
    var payloads: [String] = []
    while let first = try? await connection.receive(within: quiet) {
        var packets = [first]
        while let more = try? await connection.receive(within: 0.001) { packets.append(more) }
        var acknowledgements: [MQTTPacket] = []
        for case .publish(let publish) in packets {
            payloads.append(publish.payloadString)
            if let identifier = publish.packetIdentifier { acknowledgements.append(.puback(PubAckPacket(packetIdentifier: identifier))) }
        }
        if !acknowledgements.isEmpty { try await connection.send(acknowledgements) }
    }
    return payloads
}

@Suite("Back-pressure towards publishers", .serialized)
struct PublisherBackPressureTests {
    @Test("a publisher feeding a subscriber that reads nothing is held back; when it reads, every message arrives and none is dropped")
    func slowSubscriberHoldsPublisherBack() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "slow-dashboard")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("lpr/#", qos: .atLeastOnce)

            let publisher = try await connectAccepted(port: port, "camera-1")
            defer { Task { await publisher.close() } }
            let acknowledged = NIOLockedValueBox(0)
            let publishing = Task { try await publishCounting(publisher, topic: "lpr/cam-1", count: 5000, acknowledged: acknowledged) }
            // Until the publisher's acknowledgements stop coming (a second without one).
            var whileHeld = 0
            for _ in 0..<60 {
                try await Task.sleep(for: .seconds(1))
                let now = acknowledged.withLockedValue { $0 }
                if now > 0 && now == whileHeld { break }
                whileHeld = now
            }
            // 20 in flight to the subscriber, its backlog up to the high-water mark (256), a few
            // more routed before the publisher's flow stopped.
            #expect(whileHeld > 200 && whileHeld < 600, "acknowledged while the subscriber read nothing: \(whileHeld)")

            let received = try await readAll(subscriber)
            try await publishing.value
            #expect(received.count == 5000)
            #expect(Set(received).count == 5000)
            #expect(acknowledged.withLockedValue { $0 } == 5000)
        }
    }

    @Test("a slow subscriber does not hold back a publisher that feeds only another subscriber")
    func othersGoOn() async throws {
        try await withBroker { port in
            let stuck = try await connectAccepted(port: port, "stuck-dashboard")
            defer { Task { await stuck.close() } }
            try await stuck.subscribe("gate-a/#", qos: .atLeastOnce)
            let reader = try await connectAccepted(port: port, "gate-b-server")
            defer { Task { await reader.close() } }
            try await reader.subscribe("gate-b/#", qos: .atLeastOnce)

            let heldBack = try await connectAccepted(port: port, "camera-a")
            defer { Task { await heldBack.close() } }
            let heldCount = NIOLockedValueBox(0)
            let blocked = Task { try await publishCounting(heldBack, topic: "gate-a/plates", count: 3000, acknowledged: heldCount) }
            try await Task.sleep(for: .seconds(1))

            let free = try await connectAccepted(port: port, "camera-b")
            defer { Task { await free.close() } }
            let freeCount = NIOLockedValueBox(0)
            let reading = Task { try await readAll(reader) }
            try await publishCounting(free, topic: "gate-b/plates", count: 2000, acknowledged: freeCount)
            #expect(freeCount.withLockedValue { $0 } == 2000)
            #expect(try await reading.value.count == 2000)
            #expect(heldCount.withLockedValue { $0 } < 600, "camera-a is still held back")
            blocked.cancel()
        }
    }

    @Test("backpressure false: as in mosquitto, nobody is held back and messages over max_queued_messages are dropped")
    func mosquittoDropping() async throws {
        try await withBroker(
            .testing {
                $0.backpressure = false
                $0.maxQueuedMessages = 100
            }
        ) { port in
            let subscriber = try await connectAccepted(port: port, "slow-dashboard")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("lpr/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "camera-1")
            defer { Task { await publisher.close() } }
            let acknowledged = NIOLockedValueBox(0)
            try await publishCounting(publisher, topic: "lpr/cam-1", count: 1000, acknowledged: acknowledged)
            #expect(acknowledged.withLockedValue { $0 } == 1000)
            // 20 in flight and 100 queued; the rest were dropped.
            #expect(try await readAll(subscriber).count == 120)
        }
    }
}
