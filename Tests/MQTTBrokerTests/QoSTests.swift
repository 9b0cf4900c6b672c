import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// QoS 1 and 2 flows in both directions, packet identifiers, redelivery with DUP and exactly
/// once delivery (MQTT 3.1.1 section 4.3-4.4, MQTT 5.0 section 4.3-4.4 and 4.9).
@Suite("QoS")
struct QoSTests {
    @Test("QoS 1: PUBACK to the publisher, PUBLISH with a packet identifier to the subscriber", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func qos1Flow(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "billing", version: version)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("orders/new", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "shop", version: version)
            defer { Task { await publisher.close() } }

            try await publisher.send(
                .publish(PublishPacket(topicName: "orders/new", payload: ByteBuffer(string: "order 1"), qos: .atLeastOnce, packetIdentifier: 300))
            )
            try await publisher.expectPacket(.puback(PubAckPacket(packetIdentifier: 300)))

            let message = try await subscriber.receivePublish()
            #expect(message.qos == .atLeastOnce)
            #expect(message.payloadString == "order 1")
            #expect(!message.dup)
            let identifier = try #require(message.packetIdentifier)
            #expect(identifier != 0)
            try await subscriber.send(.puback(PubAckPacket(packetIdentifier: identifier)))
            try await subscriber.expectNothingPending("the acknowledged message came again")
        }
    }

    @Test("QoS 2: PUBREC, PUBREL, PUBCOMP in both directions", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func qos2Flow(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "ledger", version: version)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("payments/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "terminal", version: version)
            defer { Task { await publisher.close() } }

            try await publisher.send(
                .publish(
                    PublishPacket(topicName: "payments/42", payload: ByteBuffer(string: "12.50 EUR"), qos: .exactlyOnce, packetIdentifier: 77)
                )
            )
            try await publisher.expectPacket(.pubrec(PubRecPacket(packetIdentifier: 77)))
            try await publisher.send(.pubrel(PubRelPacket(packetIdentifier: 77)))
            try await publisher.expectPacket(.pubcomp(PubCompPacket(packetIdentifier: 77)))

            let message = try await subscriber.receivePublish()
            #expect(message.qos == .exactlyOnce)
            #expect(message.payloadString == "12.50 EUR")
            let identifier = try #require(message.packetIdentifier)
            try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            try await subscriber.expectPacket(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            try await subscriber.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
            try await subscriber.expectNothingPending("something arrived after PUBCOMP")
        }
    }

    @Test(
        "the delivered QoS is the lower of the published and the subscribed QoS",
        arguments: [
            (QoS.atMostOnce, QoS.exactlyOnce, QoS.atMostOnce),
            (.atLeastOnce, .exactlyOnce, .atLeastOnce),
            (.exactlyOnce, .atLeastOnce, .atLeastOnce),
            (.exactlyOnce, .atMostOnce, .atMostOnce),
            (.exactlyOnce, .exactlyOnce, .exactlyOnce),
        ]
    )
    func downgrade(published: QoS, subscribed: QoS, delivered: QoS) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "sub")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("qos/test", qos: subscribed)
            let publisher = try await connectAccepted(port: port, "pub")
            defer { Task { await publisher.close() } }
            try await publisher.publish("qos/test", "x", qos: published, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.qos == delivered)
            #expect((message.packetIdentifier == nil) == (delivered == .atMostOnce))
        }
    }

    @Test(
        "QoS 2 exactly once: a PUBLISH re-sent with the same identifier before PUBREL is not delivered twice",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func qos2ResendBeforeRelease(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "ledger", version: version)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("payments/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "terminal", version: version)
            defer { Task { await publisher.close() } }

            let original = PublishPacket(topicName: "payments/7", payload: ByteBuffer(string: "once"), qos: .exactlyOnce, packetIdentifier: 5)
            try await publisher.send(.publish(original))
            try await publisher.expectPacket(.pubrec(PubRecPacket(packetIdentifier: 5)))
            var resent = original
            resent.dup = true
            try await publisher.send(.publish(resent))
            try await publisher.expectPacket(.pubrec(PubRecPacket(packetIdentifier: 5)))
            try await publisher.send(.pubrel(PubRelPacket(packetIdentifier: 5)))
            try await publisher.expectPacket(.pubcomp(PubCompPacket(packetIdentifier: 5)))

            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "once")
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending("the re-sent QoS 2 message was delivered twice")
        }
    }

    @Test("QoS 2: after PUBCOMP the same packet identifier starts a new message")
    func qos2IdentifierReuse() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "ledger")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("payments/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "terminal")
            defer { Task { await publisher.close() } }
            try await publisher.publish("payments/1", "first", qos: .exactlyOnce, packetIdentifier: 9)
            try await publisher.publish("payments/1", "second", qos: .exactlyOnce, packetIdentifier: 9)
            let first = try await subscriber.receivePublish()
            let second = try await subscriber.receivePublish()
            #expect([first.payloadString, second.payloadString] == ["first", "second"])
            try await subscriber.acknowledge(first)
            try await subscriber.acknowledge(second)
            try await subscriber.expectNothingPending()
        }
    }

    @Test("PUBREL for an unknown packet identifier is answered with PUBCOMP (5.0: reason 0x92)", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func unknownPubRel(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "confused", version: version)
            defer { Task { await client.close() } }
            try await client.send(.pubrel(PubRelPacket(packetIdentifier: 1234)))
            let expected =
                version == .v5 ? PubCompPacket(packetIdentifier: 1234, reasonCode: .packetIdentifierNotFound) : PubCompPacket(packetIdentifier: 1234)
            try await client.expectPacket(.pubcomp(expected))
        }
    }

    @Test("in-flight QoS 1/2 messages to a subscriber use distinct non-zero packet identifiers")
    func distinctIdentifiers() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "collector")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("data/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "source")
            defer { Task { await publisher.close() } }
            for number in 1...10 {
                try await publisher.publish("data/\(number)", "\(number)", qos: number % 2 == 0 ? .exactlyOnce : .atLeastOnce, packetIdentifier: 1)
            }
            var identifiers: [UInt16] = []
            for _ in 1...10 {
                let message = try await subscriber.receivePublish()
                identifiers.append(try #require(message.packetIdentifier))
            }
            #expect(Set(identifiers).count == 10)
            #expect(!identifiers.contains(0))
        }
    }

    @Test(
        "an unacknowledged QoS 1 message is re-sent with DUP and the same identifier when the session resumes",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func redeliverQoS1(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let keep: Properties = version == .v5 ? [.sessionExpiryInterval(300)] : []
            let first = try await connectAccepted(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            try await first.subscribe("logs/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "app", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("logs/app", "line 1", qos: .atLeastOnce, packetIdentifier: 1)
            let original = try await first.receivePublish()
            #expect(!original.dup)
            await first.close()  // no PUBACK, no DISCONNECT

            let (second, connack) = try await connect(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            let again = try await second.receivePublish()
            #expect(again.dup)
            #expect(again.packetIdentifier == original.packetIdentifier)
            #expect(again.topicName == "logs/app")
            #expect(again.payloadString == "line 1")
            #expect(again.qos == .atLeastOnce)
            try await second.acknowledge(again)
            try await second.expectNothingPending("the message came a third time")
        }
    }

    @Test("an unacknowledged QoS 2 PUBLISH is re-sent with DUP when the session resumes", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func redeliverQoS2Publish(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let keep: Properties = version == .v5 ? [.sessionExpiryInterval(300)] : []
            let first = try await connectAccepted(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            try await first.subscribe("logs/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "app", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("logs/app", "line 2", qos: .exactlyOnce, packetIdentifier: 1)
            let original = try await first.receivePublish()
            await first.close()

            let (second, connack) = try await connect(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            let again = try await second.receivePublish()
            #expect(again.dup)
            #expect(again.qos == .exactlyOnce)
            #expect(again.packetIdentifier == original.packetIdentifier)
            #expect(again.payloadString == "line 2")
            try await second.acknowledge(again)
            try await second.expectNothingPending()
        }
    }

    @Test("after PUBREC the broker re-sends PUBREL, not the PUBLISH, when the session resumes", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func redeliverPubRel(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let keep: Properties = version == .v5 ? [.sessionExpiryInterval(300)] : []
            let first = try await connectAccepted(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            try await first.subscribe("logs/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "app", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("logs/app", "line 3", qos: .exactlyOnce, packetIdentifier: 1)
            let original = try await first.receivePublish()
            let identifier = try #require(original.packetIdentifier)
            try await first.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            try await first.expectPacket(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            await first.close()  // no PUBCOMP

            let (second, connack) = try await connect(port: port, "archiver", version: version, cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            try await second.expectPacket(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            try await second.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
            try await second.expectNothingPending("the message was sent again after PUBREC")
        }
    }

    @Test("a publisher's QoS 2 message survives its reconnect between PUBREC and PUBREL and is delivered once")
    func incomingQoS2AcrossReconnect() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "ledger")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("payments/#", qos: .exactlyOnce)

            let keep: Properties = [.sessionExpiryInterval(300)]
            let first = try await connectAccepted(port: port, "terminal", cleanStart: false, properties: keep)
            let publish = PublishPacket(topicName: "payments/9", payload: ByteBuffer(string: "9.99"), qos: .exactlyOnce, packetIdentifier: 3)
            try await first.send(.publish(publish))
            try await first.expectPacket(.pubrec(PubRecPacket(packetIdentifier: 3)))
            await first.close()

            let (second, connack) = try await connect(port: port, "terminal", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            #expect(connack.sessionPresent)
            var resent = publish
            resent.dup = true
            try await second.send(.publish(resent))
            try await second.expectPacket(.pubrec(PubRecPacket(packetIdentifier: 3)))
            try await second.send(.pubrel(PubRelPacket(packetIdentifier: 3)))
            try await second.expectPacket(.pubcomp(PubCompPacket(packetIdentifier: 3)))

            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "9.99")
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending("the QoS 2 message was delivered twice")
        }
    }

    @Test(
        "5.0: a client with more unreleased QoS 2 messages than our receive maximum is not disconnected: they are taken and released, as in mosquitto 2.0"
    )
    func receiveMaximumExceeded() async throws {
        try await withBroker(.testing { $0.maxInflightMessages = 2 }) { port in
            let (subscriber, _) = try await connect(port: port, "flood-reader")
            defer { Task { await subscriber.close() } }
            try await subscriber.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "flood", options: .init(qos: .atMostOnce))]))
            )
            _ = try await subscriber.receive()  // SUBACK
            let (client, connack) = try await connect(port: port, "flooder")
            defer { Task { await client.close() } }
            #expect(connack.properties.receiveMaximum == 2)
            for identifier: UInt16 in 1...4 {
                try await client.send(
                    .publish(
                        PublishPacket(
                            topicName: "flood",
                            payload: ByteBuffer(string: "\(identifier)"),
                            qos: .exactlyOnce,
                            packetIdentifier: identifier
                        )
                    )
                )
                #expect(try await client.receive() == .pubrec(PubRecPacket(packetIdentifier: identifier)))
            }
            for identifier: UInt16 in 1...4 {
                try await client.send(.pubrel(PubRelPacket(packetIdentifier: identifier)))
                #expect(try await client.receive() == .pubcomp(PubCompPacket(packetIdentifier: identifier)))
            }
            var delivered: [String] = []
            for _ in 1...4 {
                guard case .publish(let publish) = try await subscriber.receive() else { continue }
                delivered.append(String(buffer: publish.payload))
            }
            #expect(delivered == ["1", "2", "3", "4"])
        }
    }

    @Test("5.0: a PUBREC with a failure reason ends the QoS 2 flow: no PUBREL, and the window is free again")
    func pubrecFailure() async throws {
        try await withBroker(.testing { $0.maxInflightMessages = 1 }) { port in
            let subscriber = try await connectAccepted(port: port, "picky")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("orders/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "shop")
            defer { Task { await publisher.close() } }
            try await publisher.publish("orders/1", "refused", qos: .exactlyOnce, packetIdentifier: 1)
            try await publisher.publish("orders/2", "accepted", qos: .exactlyOnce, packetIdentifier: 2)

            let refused = try await subscriber.receivePublish()
            #expect(refused.payloadString == "refused")
            let identifier = try #require(refused.packetIdentifier)
            try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier, reasonCode: .implementationSpecificError)))
            let next = try await subscriber.receivePublish()
            #expect(next.payloadString == "accepted")
            try await subscriber.acknowledge(next)
            try await subscriber.expectNothingPending("a PUBREL followed a failed PUBREC")
        }
    }
}
