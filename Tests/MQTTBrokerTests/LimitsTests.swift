import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Limits from mosquitto.conf: max_inflight_messages, the client's receive maximum,
/// max_queued_messages, max_queued_bytes, max_packet_size, message_size_limit and
/// max_connections.
@Suite("Limits")
struct LimitsTests {
    @Test("max_inflight_messages: only that many unacknowledged messages are sent until the subscriber acknowledges")
    func inflightWindow() async throws {
        try await withBroker(.testing { $0.maxInflightMessages = 2 }) { port in
            let subscriber = try await connectAccepted(port: port, "slow-reader", version: .v3_1_1)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("work/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            for number in 1...5 {
                try await publisher.publish("work/\(number)", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }

            let window = try await subscriber.roundTrip().compactMap { packet -> PublishPacket? in
                guard case .publish(let message) = packet else { return nil }
                return message
            }
            #expect(window.map(\.payloadString) == ["1", "2"])
            guard window.count == 2 else { return }

            try await subscriber.acknowledge(window[0])
            let third = try await subscriber.receivePublish()
            #expect(third.payloadString == "3")
            try await subscriber.expectNothingPending("more than 2 messages in flight")

            var rest = [third]
            try await subscriber.acknowledge(window[1])
            try await subscriber.acknowledge(third)
            rest.append(try await subscriber.receivePublish())
            rest.append(try await subscriber.receivePublish())
            #expect(rest.map(\.payloadString) == ["3", "4", "5"])
        }
    }

    @Test("5.0: the client's receive maximum limits the messages in flight to it")
    func clientReceiveMaximum() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "tiny-window", properties: [.receiveMaximum(1)])
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("work/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            for number in 1...3 {
                try await publisher.publish("work/\(number)", "\(number)", qos: .exactlyOnce, packetIdentifier: UInt16(number))
            }
            var received: [String] = []
            for _ in 1...3 {
                let pending = try await subscriber.roundTrip()
                #expect(pending.count == 1, "exactly one message in flight at a time")
                guard case .publish(let message) = pending.first else { return }
                received.append(message.payloadString)
                // In flight until PUBCOMP: nothing else may come between PUBREC and PUBREL either.
                let identifier = try #require(message.packetIdentifier)
                try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
                try await subscriber.expectPacket(.pubrel(PubRelPacket(packetIdentifier: identifier)))
                try await subscriber.expectNothingPending("a message was sent before PUBCOMP freed the window")
                try await subscriber.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
            }
            #expect(received == ["1", "2", "3"])
        }
    }

    @Test(
        "5.0: messages re-sent on session resume respect the new connection's receive maximum"
    )
    func resumeRespectsReceiveMaximum() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "worker", cleanStart: false, properties: [.sessionExpiryInterval(60)])
            try await first.subscribe("work/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            for number in 1...3 {
                try await publisher.publish("work/\(number)", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }
            for _ in 1...3 { _ = try await first.receivePublish() }  // all three in flight, none acknowledged
            await first.close()

            let second = try await connectAccepted(
                port: port,
                "worker",
                cleanStart: false,
                properties: [.sessionExpiryInterval(60), .receiveMaximum(1)]
            )
            defer { Task { await second.close() } }
            var received: [String] = []
            for _ in 1...3 {
                let pending = try await second.roundTrip()
                #expect(pending.count == 1, "the broker may have one message in flight, sent \(pending.count)")
                guard case .publish(let message) = pending.first else { return }
                received.append(message.payloadString)
                try await second.acknowledge(message)
            }
            #expect(received == ["1", "2", "3"])
        }
    }

    @Test("max_queued_messages: an offline session keeps that many QoS 1 messages and drops the rest")
    func maxQueuedMessages() async throws {
        try await withBroker(.testing { $0.maxQueuedMessages = 3 }) { port in
            let keep: Properties = [.sessionExpiryInterval(60)]
            let first = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            try await first.subscribe("work/#", qos: .atLeastOnce)
            try await first.disconnect()

            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            for number in 1...6 {
                try await publisher.publish("work/\(number)", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }
            let second = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            let delivered = try await second.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.payloadString
            }
            #expect(delivered == ["1", "2", "3"])
        }
    }

    @Test("max_queued_bytes: an offline session keeps messages up to that many payload bytes")
    func maxQueuedBytes() async throws {
        try await withBroker(.testing { $0.maxQueuedBytes = 10 }) { port in
            let keep: Properties = [.sessionExpiryInterval(60)]
            let first = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            try await first.subscribe("work/#", qos: .atLeastOnce)
            try await first.disconnect()

            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            for payload in ["aaaaa", "bbbbb", "ccccc", "ddddd"] {
                try await publisher.publish("work/x", payload, qos: .atLeastOnce, packetIdentifier: 1)
            }
            let second = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            let delivered = try await second.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.payloadString
            }
            // Two five-byte payloads fill the ten bytes; the rest are dropped.
            #expect(delivered == ["aaaaa", "bbbbb"])
        }
    }

    @Test("a full queue drops a queued QoS 0 message before any QoS 1 message")
    func qos0DroppedFirst() async throws {
        try await withBroker(
            .testing {
                $0.maxInflightMessages = 1
                $0.maxQueuedMessages = 2
            }
        ) { port in
            let subscriber = try await connectAccepted(port: port, "slow-reader")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("work/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            try await publisher.publish("work/a", "a", qos: .atLeastOnce, packetIdentifier: 1)  // in flight
            try await publisher.publish("work/b", "b", qos: .atLeastOnce, packetIdentifier: 2)  // queued
            try await publisher.publish("work/c", "c")  // queued behind b
            try await publisher.publish("work/d", "d", qos: .atLeastOnce, packetIdentifier: 3)  // queue full: c goes
            _ = try await publisher.roundTrip()

            var received: [String] = []
            var pending = try await subscriber.roundTrip()
            while let packet = pending.first {
                pending.removeFirst()
                guard case .publish(let message) = packet else { continue }
                received.append(message.payloadString)
                try await subscriber.acknowledge(message)
                if pending.isEmpty { pending = try await subscriber.roundTrip() }
            }
            #expect(received == ["a", "b", "d"])
        }
    }

    @Test("max_packet_size: CONNACK announces it and a larger packet gets DISCONNECT 0x95 while others carry on")
    func maxPacketSize() async throws {
        try await withBroker(.testing { $0.maxPacketSize = 100 }) { port in
            let subscriber = try await connectAccepted(port: port, "subscriber")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("data/#", qos: .atLeastOnce)
            let (publisher, connack) = try await connect(port: port, "oversized")
            defer { Task { await publisher.close() } }
            #expect(connack.properties.maximumPacketSize == 100)
            try await publisher.send(
                .publish(
                    PublishPacket(topicName: "data/big", payload: ByteBuffer(repeating: 0x78, count: 200), qos: .atLeastOnce, packetIdentifier: 1)
                )
            )
            let reason = try await publisher.closedByBroker()
            #expect(reason == .packetTooLarge)

            let good = try await connectAccepted(port: port, "good")
            defer { Task { await good.close() } }
            try await good.publish("data/small", "fits", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "fits")
        }
    }

    @Test("message_size_limit: a larger payload is refused (5.0 PUBACK failure) and not delivered; smaller ones are")
    func messageSizeLimit() async throws {
        try await withBroker(.testing { $0.messageSizeLimit = 10 }) { port in
            let subscriber = try await connectAccepted(port: port, "subscriber")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("data/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "publisher")
            defer { Task { await publisher.close() } }
            let refused = try await publisher.publish("data/big", String(repeating: "x", count: 11), qos: .atLeastOnce, packetIdentifier: 1)
            #expect(refused.isFailure)
            let refusedQoS2 = try await publisher.publish("data/big", String(repeating: "y", count: 11), qos: .exactlyOnce, packetIdentifier: 2)
            #expect(refusedQoS2.isFailure)
            let accepted = try await publisher.publish("data/small", String(repeating: "z", count: 10), qos: .atLeastOnce, packetIdentifier: 3)
            #expect(accepted == .success)
            let message = try await subscriber.receivePublish()
            #expect(message.topicName == "data/small")
            // The refused QoS 2 flow is over: its packet identifier is free again.
            let reused = try await publisher.publish("data/small", "again", qos: .exactlyOnce, packetIdentifier: 2)
            #expect(reused == .success)
        }
    }

    @Test("max_connections on a listener closes connections beyond the limit")
    func maxConnections() async throws {
        try await withBroker(.testing { $0.listeners[0].maxConnections = 1 }) { port in
            let first = try await connectAccepted(port: port, "first")
            let second = try await RawConnection.connect(port: port)
            defer { Task { await second.close() } }
            let packets = try await second.packetsUntilClosed()
            #expect(packets.isEmpty)
            let pending = try await first.roundTrip()
            #expect(pending.isEmpty)

            // Once the first one leaves, there is room again.
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()
            let deadline = ContinuousClock.now + .seconds(5)
            var accepted = false
            while !accepted && ContinuousClock.now < deadline {
                if let (third, connack) = try? await connect(port: port, "third") {
                    accepted = connack.reasonCode == .success
                    await third.close()
                } else {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(accepted)
        }
    }
}
