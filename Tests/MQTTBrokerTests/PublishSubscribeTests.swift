import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Topic matching, overlapping subscriptions, no-local, SUBACK and UNSUBACK
/// (MQTT 3.1.1 sections 3.8-3.11 and 4.7, MQTT 5.0 sections 3.8-3.11 and 4.7-4.8).
@Suite("Publish and subscribe")
struct PublishSubscribeTests {
    @Test("a QoS 0 message reaches the subscriber with its topic and payload unchanged", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func qos0(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "display", version: version)
            defer { Task { await subscriber.close() } }
            let codes = try await subscriber.subscribe("hall/+/temperature", qos: .atMostOnce)
            #expect(codes == [.grantedQoS0])
            let publisher = try await connectAccepted(port: port, "thermometer", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("hall/north/temperature", "19.5 °C")
            let message = try await subscriber.receivePublish()
            #expect(message.topicName == "hall/north/temperature")
            #expect(message.payloadString == "19.5 °C")
            #expect(message.qos == .atMostOnce)
            #expect(message.packetIdentifier == nil)
            #expect(!message.retain && !message.dup)
        }
    }

    @Test("SUBACK grants the QoS each subscription asked for", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func grantedQoS(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "granted", version: version)
            defer { Task { await client.close() } }
            try await client.send(
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 42,
                        subscriptions: [
                            Subscription(topicFilter: "q/0", options: .init(qos: .atMostOnce)),
                            Subscription(topicFilter: "q/1", options: .init(qos: .atLeastOnce)),
                            Subscription(topicFilter: "q/2", options: .init(qos: .exactlyOnce)),
                        ]
                    )
                )
            )
            try await client.expectPacket(.suback(SubAckPacket(packetIdentifier: 42, reasonCodes: [.grantedQoS0, .grantedQoS1, .grantedQoS2])))
        }
    }

    @Test("+ and # match as the specification says, and nothing else arrives")
    func wildcards() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "matcher")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe(["site/+/door", "alarm/#", "+"], options: .init(qos: .atMostOnce))
            let publisher = try await connectAccepted(port: port, "source")
            defer { Task { await publisher.close() } }
            let topics = [
                "site/a/door",  // site/+/door
                "site/a/b/door",  // no: + is one level
                "site//door",  // site/+/door: an empty level matches +
                "site/a/window",  // no
                "alarm",  // alarm/#: # matches the parent level too
                "alarm/fire/zone-2",  // alarm/#
                "alarms/fire",  // no
                "top",  // +
                "/top",  // no: two levels
            ]
            for topic in topics { try await publisher.publish(topic, topic) }
            _ = try await publisher.roundTrip()
            let received = try await subscriber.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.topicName
            }
            #expect(received == ["site/a/door", "site//door", "alarm", "alarm/fire/zone-2", "top"])
        }
    }

    @Test("topics starting with $ are not matched by # or +/..., only by filters that start with $")
    func dollarTopics() async throws {
        try await withBroker { port in
            let everything = try await connectAccepted(port: port, "everything")
            defer { Task { await everything.close() } }
            try await everything.subscribe(["#", "+/status", "+/+/status"], options: .init(qos: .atMostOnce))
            let insider = try await connectAccepted(port: port, "internal")
            defer { Task { await insider.close() } }
            try await insider.subscribe("$internal/#", qos: .atMostOnce)

            let publisher = try await connectAccepted(port: port, "source")
            defer { Task { await publisher.close() } }
            try await publisher.publish("$internal/status", "hidden")
            try await publisher.publish("$internal/x/status", "hidden too")
            try await publisher.publish("public/status", "visible")
            _ = try await publisher.roundTrip()

            let seenByEverything = try await everything.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.topicName
            }
            #expect(seenByEverything == ["public/status"])
            let seenByInsider = try await insider.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.topicName
            }
            #expect(seenByInsider == ["$internal/status", "$internal/x/status"])
        }
    }

    @Test("3.1.1: overlapping subscriptions deliver one copy at the highest granted QoS")
    func overlappingV311() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "overlap", version: .v3_1_1)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("line/#", qos: .atMostOnce, packetIdentifier: 1)
            try await subscriber.subscribe("line/+/speed", qos: .exactlyOnce, packetIdentifier: 2)
            try await subscriber.subscribe("line/4/speed", qos: .atLeastOnce, packetIdentifier: 3)
            let publisher = try await connectAccepted(port: port, "drive", version: .v3_1_1)
            defer { Task { await publisher.close() } }
            try await publisher.publish("line/4/speed", "1200 rpm", qos: .exactlyOnce, packetIdentifier: 9)

            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "1200 rpm")
            #expect(message.qos == .exactlyOnce)
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending("a second copy arrived")
        }
    }

    @Test("5.0: overlapping subscriptions deliver one copy with every matching subscription identifier")
    func overlappingV5() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "overlap")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("line/#", qos: .atLeastOnce, identifier: 11, packetIdentifier: 1)
            try await subscriber.subscribe("line/+/speed", qos: .atMostOnce, identifier: 22, packetIdentifier: 2)
            try await subscriber.subscribe("other/#", qos: .atMostOnce, identifier: 33, packetIdentifier: 3)
            let publisher = try await connectAccepted(port: port, "drive")
            defer { Task { await publisher.close() } }
            try await publisher.publish("line/4/speed", "1200 rpm", qos: .atLeastOnce, packetIdentifier: 9)

            let message = try await subscriber.receivePublish()
            #expect(message.qos == .atLeastOnce)
            #expect(message.properties.subscriptionIdentifiers.sorted() == [11, 22])
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending("a second copy arrived")
        }
    }

    @Test("5.0: a subscription identifier is sent with matching messages, and is gone after re-subscribing without one")
    func subscriptionIdentifier() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "tagged")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("meter/+", qos: .atMostOnce, identifier: 268_435_455, packetIdentifier: 1)
            let publisher = try await connectAccepted(port: port, "meter")
            defer { Task { await publisher.close() } }
            try await publisher.publish("meter/1", "5 kWh")
            let tagged = try await subscriber.receivePublish()
            #expect(tagged.properties.subscriptionIdentifiers == [268_435_455])

            try await subscriber.subscribe("meter/+", qos: .atMostOnce, packetIdentifier: 2)
            try await publisher.publish("meter/1", "6 kWh")
            let untagged = try await subscriber.receivePublish()
            #expect(untagged.payloadString == "6 kWh")
            #expect(untagged.properties.subscriptionIdentifiers.isEmpty)
        }
    }

    @Test("re-subscribing to the same filter replaces its QoS and delivers one copy")
    func resubscribeReplaces() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "changer")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("valve/7", qos: .atMostOnce, packetIdentifier: 1)
            let codes = try await subscriber.subscribe("valve/7", qos: .atLeastOnce, packetIdentifier: 2)
            #expect(codes == [.grantedQoS1])
            let publisher = try await connectAccepted(port: port, "controller")
            defer { Task { await publisher.close() } }
            try await publisher.publish("valve/7", "open", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.qos == .atLeastOnce)
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending("a second copy arrived")
        }
    }

    @Test("5.0 no-local: a client does not get its own messages back on a no-local subscription; others do")
    func noLocal() async throws {
        try await withBroker { port in
            let chatty = try await connectAccepted(port: port, "chatty")
            defer { Task { await chatty.close() } }
            try await chatty.subscribe(["room/1"], options: .init(qos: .atMostOnce, noLocal: true))
            let listener = try await connectAccepted(port: port, "listener")
            defer { Task { await listener.close() } }
            try await listener.subscribe(["room/1"], options: .init(qos: .atMostOnce, noLocal: true))

            try await chatty.publish("room/1", "from chatty")
            let heard = try await listener.receivePublish()
            #expect(heard.payloadString == "from chatty")
            try await chatty.expectNothingPending("chatty got its own message back")

            try await listener.publish("room/1", "from listener")
            let answer = try await chatty.receivePublish()
            #expect(answer.payloadString == "from listener")
        }
    }

    @Test("3.1.1: a client gets its own messages back (no-local does not exist)")
    func ownMessagesV311() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "echo", version: .v3_1_1)
            defer { Task { await client.close() } }
            try await client.subscribe("echo/#", qos: .atMostOnce)
            try await client.publish("echo/1", "hello")
            let message = try await client.receivePublish()
            #expect(message.payloadString == "hello")
        }
    }

    @Test("5.0 SUBACK: invalid filters get 0x8F while valid ones in the same SUBSCRIBE are granted")
    func invalidFiltersV5() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "filters")
            defer { Task { await client.close() } }
            let codes = try await client.subscribe(["a/#/b", "a/b#", "ok/+/fine", "a+/b", "#/x"], options: .init(qos: .atLeastOnce))
            #expect(codes == [.topicFilterInvalid, .topicFilterInvalid, .grantedQoS1, .topicFilterInvalid, .topicFilterInvalid])
            // The connection stays usable.
            let pending = try await client.roundTrip()
            #expect(pending.isEmpty)
        }
    }

    @Test("3.1.1 SUBACK: invalid filters get 0x80 while valid ones in the same SUBSCRIBE are granted")
    func invalidFiltersV311() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "filters", version: .v3_1_1)
            defer { Task { await client.close() } }
            let codes = try await client.subscribe(["a/#/b", "ok/#", "a+"], options: .init(qos: .exactlyOnce))
            #expect(codes == [.unspecifiedError, .grantedQoS2, .unspecifiedError])
        }
    }

    @Test("5.0 UNSUBACK: 0x00 for a removed subscription, 0x11 for none; messages stop")
    func unsubscribeV5() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "leaver")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("news/+", qos: .atMostOnce)
            try await subscriber.send(.unsubscribe(UnsubscribePacket(packetIdentifier: 7, topicFilters: ["news/+", "never/subscribed"])))
            try await subscriber.expectPacket(.unsuback(UnsubAckPacket(packetIdentifier: 7, reasonCodes: [.success, .noSubscriptionExisted])))

            let publisher = try await connectAccepted(port: port, "newsroom")
            defer { Task { await publisher.close() } }
            let reason = try await publisher.publish("news/today", "headline", qos: .atLeastOnce, packetIdentifier: 1)
            #expect(reason == .noMatchingSubscribers)
            try await subscriber.expectNothingPending("a message arrived after UNSUBSCRIBE")
        }
    }

    @Test("3.1.1 UNSUBACK carries only the packet identifier; messages stop")
    func unsubscribeV311() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "leaver", version: .v3_1_1)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("news/+", qos: .atMostOnce)
            try await subscriber.send(.unsubscribe(UnsubscribePacket(packetIdentifier: 8, topicFilters: ["news/+"])))
            try await subscriber.expectPacket(.unsuback(UnsubAckPacket(packetIdentifier: 8)))
            let publisher = try await connectAccepted(port: port, "newsroom", version: .v3_1_1)
            defer { Task { await publisher.close() } }
            try await publisher.publish("news/today", "headline")
            _ = try await publisher.roundTrip()
            try await subscriber.expectNothingPending("a message arrived after UNSUBSCRIBE")
        }
    }

    @Test("messages from one publisher arrive in the order they were published")
    func ordering() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "ordered")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("seq/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "counter")
            defer { Task { await publisher.close() } }
            for number in 1...30 {
                try await publisher.publish("seq/\(number % 3)", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
            }
            var received: [String] = []
            for _ in 1...30 {
                let message = try await subscriber.receivePublish()
                received.append(message.payloadString)
                try await subscriber.acknowledge(message)
            }
            #expect(received == (1...30).map(String.init))
        }
    }

    @Test("a subscriber on a wildcard gets messages from several publishers, each on its own topic")
    func fanIn() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "collector")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("fleet/+/position", qos: .atLeastOnce)
            var publishers: [CodecConnection] = []
            for index in 0..<4 {
                let publisher = try await connectAccepted(port: port, "truck-\(index)", version: index % 2 == 0 ? .v5 : .v3_1_1)
                publishers.append(publisher)
                try await publisher.publish("fleet/truck-\(index)/position", "\(index)", qos: .atLeastOnce, packetIdentifier: 1)
            }
            var topics: Set<String> = []
            for _ in 0..<4 {
                let message = try await subscriber.receivePublish()
                topics.insert(message.topicName)
                try await subscriber.acknowledge(message)
            }
            #expect(topics == Set((0..<4).map { "fleet/truck-\($0)/position" }))
            for publisher in publishers { await publisher.close() }
        }
    }

    @Test("a 1 MB payload arrives intact", arguments: [QoS.atMostOnce, .exactlyOnce])
    func largePayload(qos: QoS) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "archive")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("images/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "camera")
            defer { Task { await publisher.close() } }
            let payload = ByteBuffer(bytes: (0..<1_048_576).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            try await publisher.send(
                .publish(PublishPacket(topicName: "images/1", payload: payload, qos: qos, packetIdentifier: qos == .atMostOnce ? nil : 1))
            )
            let message = try await subscriber.receivePublish(within: 10)
            #expect(message.payload == payload)
        }
    }

    @Test("a message with an empty payload is delivered")
    func emptyPayload() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "listener")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("ping/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "pinger")
            defer { Task { await publisher.close() } }
            try await publisher.publish("ping/1", "", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.topicName == "ping/1")
            #expect(message.payload.readableBytes == 0)
        }
    }
}
