import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Sessions that outlive their connection: session expiry (5.0), clean session and
/// persistent_client_expiration (3.1.1), messages queued while offline
/// (MQTT 3.1.1 section 3.1.2.4, MQTT 5.0 sections 3.1.2.11, 3.14.2.2.2 and 4.1).
@Suite("Sessions")
struct SessionTests {
    /// Publishes QoS 1 messages to `topic` from a 5.0 client until the broker answers 0x10
    /// (no matching subscribers), that is until the session that subscribed has ended.
    private func waitUntilNobodySubscribes(port: Int, topic: String, within seconds: Double = 10) async throws {
        let probe = try await connectAccepted(port: port, "probe-\(UInt32.random(in: 0...UInt32.max))")
        defer { Task { await probe.close() } }
        let deadline = ContinuousClock.now + .seconds(seconds)
        var identifier: UInt16 = 1
        while ContinuousClock.now < deadline {
            let reason = try await probe.publish(topic, "probe", qos: .atLeastOnce, packetIdentifier: identifier)
            if reason == .noMatchingSubscribers { return }
            identifier += 1
            try await Task.sleep(for: .milliseconds(100))
        }
        throw InteropError("the subscription to \(topic) was still there after \(seconds) s")
    }

    @Test("5.0 session expiry 0: the session ends with the connection")
    func expiryZero() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "short-lived", cleanStart: false)
            try await first.subscribe("jobs/#", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()

            try await waitUntilNobodySubscribes(port: port, topic: "jobs/1")
            let (second, connack) = try await connect(port: port, "short-lived", cleanStart: false)
            defer { Task { await second.close() } }
            #expect(!connack.sessionPresent)
            try await second.expectNothingPending()
        }
    }

    @Test(
        "a kept session keeps its subscriptions and queues QoS 1 and 2 messages, not QoS 0, while offline",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func keptSession(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let keep: Properties = version == .v5 ? [.sessionExpiryInterval(60)] : []
            let first = try await connectAccepted(port: port, "worker", version: version, cleanStart: false, properties: keep)
            try await first.subscribe("jobs/#", qos: .exactlyOnce)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()

            let publisher = try await connectAccepted(port: port, "scheduler")
            defer { Task { await publisher.close() } }
            let qos1 = try await publisher.publish("jobs/1", "job one", qos: .atLeastOnce, packetIdentifier: 1)
            try await publisher.publish("jobs/0", "job zero")
            let qos2 = try await publisher.publish("jobs/2", "job two", qos: .exactlyOnce, packetIdentifier: 2)
            #expect(qos1 == .success && qos2 == .success)  // a subscriber exists, even if offline

            let (second, connack) = try await connect(port: port, "worker", version: version, cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            let one = try await second.receivePublish()
            try await second.acknowledge(one)
            let two = try await second.receivePublish()
            try await second.acknowledge(two)
            #expect([one.payloadString, two.payloadString] == ["job one", "job two"])
            #expect([one.qos, two.qos] == [.atLeastOnce, .exactlyOnce])
            try await second.expectNothingPending("a QoS 0 message was queued for an offline client")

            // The subscription is still in place for live messages.
            try await publisher.publish("jobs/3", "job three", qos: .atLeastOnce, packetIdentifier: 3)
            let three = try await second.receivePublish()
            #expect(three.payloadString == "job three")
        }
    }

    @Test("5.0: a session ends after its expiry interval")
    func expires() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "brief", cleanStart: false, properties: [.sessionExpiryInterval(1)])
            try await first.subscribe("brief/#", qos: .atLeastOnce)
            await first.close()

            try await waitUntilNobodySubscribes(port: port, topic: "brief/x")
            let (second, connack) = try await connect(port: port, "brief", cleanStart: false, properties: [.sessionExpiryInterval(1)])
            defer { Task { await second.close() } }
            #expect(!connack.sessionPresent)
            try await second.expectNothingPending("an expired session's messages were delivered")
        }
    }

    @Test("5.0: DISCONNECT with session expiry 0 ends a session that would have been kept")
    func disconnectShortensExpiry() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "changer", cleanStart: false, properties: [.sessionExpiryInterval(600)])
            try await first.subscribe("changer/#", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(0)])))
            _ = try await first.packetsUntilClosed()

            try await waitUntilNobodySubscribes(port: port, topic: "changer/x")
            let (second, connack) = try await connect(port: port, "changer", cleanStart: false)
            defer { Task { await second.close() } }
            #expect(!connack.sessionPresent)
        }
    }

    @Test("5.0: DISCONNECT may lengthen a non-zero session expiry")
    func disconnectLengthensExpiry() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "changer", cleanStart: false, properties: [.sessionExpiryInterval(1)])
            try await first.subscribe("changer/#", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(600)])))
            _ = try await first.packetsUntilClosed()
            // Well past the first interval; the second one keeps the session.
            try await Task.sleep(for: .milliseconds(2000))
            let publisher = try await connectAccepted(port: port, "publisher")
            defer { Task { await publisher.close() } }
            let reason = try await publisher.publish("changer/x", "kept", qos: .atLeastOnce, packetIdentifier: 1)
            #expect(reason == .success)
            let (second, connack) = try await connect(port: port, "changer", cleanStart: false, properties: [.sessionExpiryInterval(600)])
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            let message = try await second.receivePublish()
            #expect(message.payloadString == "kept")
        }
    }

    @Test("5.0: a DISCONNECT that sets a session expiry after CONNECT set 0 is a protocol error (0x82)")
    func disconnectCannotCreateExpiry() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "sneaky")
            defer { Task { await client.close() } }
            try await client.send(.disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(60)])))
            let reason = try await client.closedByBroker()
            #expect(reason == .protocolError)
        }
    }

    @Test("3.1.1: a persistent session ends after persistent_client_expiration")
    func persistentClientExpiration() async throws {
        try await withBroker(.testing { $0.persistentClientExpiration = .seconds(1) }) { port in
            let first = try await connectAccepted(port: port, "legacy", version: .v3_1_1, cleanStart: false)
            try await first.subscribe("legacy/#", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()

            try await waitUntilNobodySubscribes(port: port, topic: "legacy/x")
            let (second, connack) = try await connect(port: port, "legacy", version: .v3_1_1, cleanStart: false)
            defer { Task { await second.close() } }
            #expect(!connack.sessionPresent)
        }
    }

    @Test("3.1.1: a clean session client's session ends with the connection")
    func cleanSessionV311() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "legacy", version: .v3_1_1, cleanStart: true)
            try await first.subscribe("legacy/#", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()
            try await waitUntilNobodySubscribes(port: port, topic: "legacy/x")
            let (second, connack) = try await connect(port: port, "legacy", version: .v3_1_1, cleanStart: false)
            defer { Task { await second.close() } }
            #expect(!connack.sessionPresent)
        }
    }

    @Test("queued messages arrive in publish order before later live ones")
    func queuedOrder() async throws {
        try await withBroker { port in
            let keep: Properties = [.sessionExpiryInterval(60)]
            let first = try await connectAccepted(port: port, "worker", cleanStart: false, properties: keep)
            try await first.subscribe("jobs/#", qos: .atLeastOnce)
            try await first.disconnect()
            let publisher = try await connectAccepted(port: port, "scheduler")
            defer { Task { await publisher.close() } }
            for number in 1...10 {
                try await publisher.publish("jobs/\(number)", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }
            let second = try await connectAccepted(port: port, "worker", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            try await publisher.publish("jobs/11", "11", qos: .atLeastOnce, packetIdentifier: 11)
            var received: [String] = []
            for _ in 1...11 {
                let message = try await second.receivePublish()
                received.append(message.payloadString)
                try await second.acknowledge(message)
            }
            #expect(received == (1...11).map(String.init))
        }
    }
}
