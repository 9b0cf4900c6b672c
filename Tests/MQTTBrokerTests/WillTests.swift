import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Will messages: when they go out, when they don't, their delay, retain flag, QoS and
/// properties (MQTT 3.1.1 section 3.1.2.5, MQTT 5.0 sections 3.1.2.5 and 3.1.3.2).
@Suite("Will")
struct WillTests {
    /// A subscriber to `filter` at QoS 2.
    private func watcher(port: Int, _ filter: String = "fleet/+/status") async throws -> CodecConnection {
        let watcher = try await connectAccepted(port: port, "watcher")
        try await watcher.subscribe(filter, qos: .exactlyOnce)
        return watcher
    }

    private func will(_ payload: String = "offline", qos: QoS = .atMostOnce, retain: Bool = false, properties: Properties = []) -> ConnectPacket.Will
    {
        ConnectPacket.Will(topic: "fleet/truck-1/status", payload: ByteBuffer(string: payload), qos: qos, retain: retain, properties: properties)
    }

    @Test("a connection closed without DISCONNECT publishes the will", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func abnormalClose(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", version: version, will: will())
            await truck.close()
            let message = try await watcher.receivePublish()
            #expect(message.topicName == "fleet/truck-1/status")
            #expect(message.payloadString == "offline")
            #expect(!message.retain)
        }
    }

    @Test("a normal DISCONNECT discards the will", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func normalDisconnect(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", version: version, will: will())
            try await truck.send(.disconnect(DisconnectPacket()))
            _ = try await truck.packetsUntilClosed()
            // A later message on the same topic is the first thing the watcher sees.
            try await Task.sleep(for: .milliseconds(100))
            let other = try await connectAccepted(port: port, "truck-2", version: version)
            defer { Task { await other.close() } }
            try await other.publish("fleet/truck-2/status", "online", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "online")
        }
    }

    @Test("5.0 DISCONNECT with reason 0x04 publishes the will")
    func disconnectWithWill() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", will: will("parked"))
            try await truck.send(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)))
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "parked")
        }
    }

    @Test("a keep alive timeout publishes the will", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func keepAliveTimeout(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", version: version, keepAlive: 1, will: will("lost"))
            defer { Task { await truck.close() } }
            let message = try await watcher.receivePublish(within: 10)
            #expect(message.payloadString == "lost")
        }
    }

    @Test("a client closed for a protocol error has its will published")
    func protocolErrorPublishesWill() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", will: will("crashed"))
            defer { Task { await truck.close() } }
            try await truck.send(.pingresp)  // server-only packet
            _ = try await truck.packetsUntilClosed()
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "crashed")
        }
    }

    @Test("the will keeps its QoS, capped by the subscription", arguments: [QoS.atMostOnce, .atLeastOnce, .exactlyOnce])
    func willQoS(qos: QoS) async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let capped = try await connectAccepted(port: port, "capped")
            defer { Task { await capped.close() } }
            try await capped.subscribe("fleet/+/status", qos: .atLeastOnce)

            let truck = try await connectAccepted(port: port, "truck-1", will: will(qos: qos))
            await truck.close()
            let full = try await watcher.receivePublish()
            #expect(full.qos == qos)
            let limited = try await capped.receivePublish()
            #expect(limited.qos == min(qos, .atLeastOnce))
        }
    }

    @Test("a will with retain set is stored as the topic's retained message", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func willRetain(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let truck = try await connectAccepted(port: port, "truck-1", version: version, will: will("gone", qos: .atLeastOnce, retain: true))
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            await truck.close()
            let live = try await watcher.receivePublish()
            #expect(live.payloadString == "gone")
            try await watcher.acknowledge(live)

            let later = try await connectAccepted(port: port, "later", version: version)
            defer { Task { await later.close() } }
            try await later.subscribe("fleet/+/status", qos: .atLeastOnce)
            let retained = try await later.receivePublish()
            #expect(retained.payloadString == "gone")
            #expect(retained.retain)
        }
    }

    @Test("5.0 will properties reach the subscriber unchanged, without the will delay")
    func willProperties() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let properties: Properties = [
                .payloadFormatIndicator(1), .contentType("application/json"), .responseTopic("fleet/truck-1/ping"),
                .correlationData(bytes([0x00, 0xFF, 0x10])), .userProperty("depot", "north"), .userProperty("depot", "south"),
                .messageExpiryInterval(600), .willDelayInterval(0),
            ]
            let truck = try await connectAccepted(port: port, "truck-1", will: will(#"{"state":"offline"}"#, properties: properties))
            await truck.close()
            let message = try await watcher.receivePublish()
            #expect(message.properties.payloadFormatIndicator == 1)
            #expect(message.properties.contentType == "application/json")
            #expect(message.properties.responseTopic == "fleet/truck-1/ping")
            #expect(message.properties.correlationData == bytes([0x00, 0xFF, 0x10]))
            #expect(message.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["depot=north", "depot=south"])
            let expiry = try #require(message.properties.messageExpiryInterval)
            #expect(expiry > 0 && expiry <= 600)
            #expect(message.properties.willDelayInterval == nil)
        }
    }

    @Test("5.0: a will delay holds the will back for its interval")
    func willDelay() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(
                port: port,
                "truck-1",
                will: will("late", properties: [.willDelayInterval(1)]),
                properties: [.sessionExpiryInterval(60)]
            )
            let closed = ContinuousClock.now
            await truck.close()
            let message = try await watcher.receivePublish(within: 10)
            #expect(message.payloadString == "late")
            // Causal: the broker saw the close after we made it, and waits a whole second from then.
            #expect(ContinuousClock.now - closed >= .seconds(1))
        }
    }

    @Test("5.0: reconnecting within the will delay suppresses the will")
    func willDelaySuppressedByReconnect() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let delayedWill = will("should not arrive", properties: [.willDelayInterval(2)])
            let first = try await connectAccepted(
                port: port,
                "truck-1",
                cleanStart: false,
                will: delayedWill,
                properties: [.sessionExpiryInterval(60)]
            )
            await first.close()
            let (second, connack) = try await connect(port: port, "truck-1", cleanStart: false, properties: [.sessionExpiryInterval(60)])
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            // Past the delay, the first message on the topic is a later one, not the will.
            try await Task.sleep(for: .milliseconds(2500))
            try await second.publish("fleet/truck-1/status", "back", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "back")
        }
    }

    @Test("5.0: a will delay longer than the session expiry sends the will when the session ends")
    func willDelayCutBySessionExpiry() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(
                port: port,
                "truck-1",
                will: will("session over", properties: [.willDelayInterval(3600)]),
                properties: [.sessionExpiryInterval(1)]
            )
            await truck.close()
            let message = try await watcher.receivePublish(within: 10)
            #expect(message.payloadString == "session over")
        }
    }

    @Test("5.0: with session expiry 0 a delayed will goes out when the connection closes")
    func willDelayWithoutSession() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let truck = try await connectAccepted(port: port, "truck-1", will: will("now", properties: [.willDelayInterval(3600)]))
            await truck.close()
            let message = try await watcher.receivePublish(within: 10)
            #expect(message.payloadString == "now")
        }
    }

    @Test("5.0: a clean start reconnect within the will delay ends the old session and sends its will")
    func willDelayCleanStartReconnect() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let first = try await connectAccepted(
                port: port,
                "truck-1",
                cleanStart: false,
                will: will("replaced", properties: [.willDelayInterval(3600)]),
                properties: [.sessionExpiryInterval(3600)]
            )
            // 0x04 keeps the will; waiting for the close makes sure the broker has the connection ended.
            try await first.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage))
            let second = try await connectAccepted(port: port, "truck-1", cleanStart: true)
            defer { Task { await second.close() } }
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "replaced")
        }
    }

    @Test(
        "5.0: a clean start takeover of a connection with a delayed will ends the session and sends the will"
    )
    func takeoverWithDelayedWill() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let first = try await connectAccepted(
                port: port,
                "truck-1",
                cleanStart: false,
                will: will("taken over", properties: [.willDelayInterval(3600)]),
                properties: [.sessionExpiryInterval(3600)]
            )
            defer { Task { await first.close() } }
            let second = try await connectAccepted(port: port, "truck-1", cleanStart: true)
            defer { Task { await second.close() } }
            let reason = try await first.closedByBroker()
            #expect(reason == .sessionTakenOver)
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "taken over")
        }
    }

    @Test(
        "5.0: a takeover of a connection with a delayed will and session expiry 0 sends the will"
    )
    func takeoverWithDelayedWillNoSession() async throws {
        try await withBroker { port in
            let watcher = try await watcher(port: port)
            defer { Task { await watcher.close() } }
            let first = try await connectAccepted(port: port, "truck-1", will: will("taken over", properties: [.willDelayInterval(3600)]))
            defer { Task { await first.close() } }
            let second = try await connectAccepted(port: port, "truck-1")
            defer { Task { await second.close() } }
            _ = try await first.closedByBroker()
            let message = try await watcher.receivePublish()
            #expect(message.payloadString == "taken over")
        }
    }
}
