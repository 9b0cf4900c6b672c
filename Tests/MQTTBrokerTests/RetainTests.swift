import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Retained messages: store, replace, delete, retain handling, retain-as-published and
/// retain_available (MQTT 3.1.1 section 3.3.1.3, MQTT 5.0 sections 3.3.1.3 and 3.8.3.1).
@Suite("Retain")
struct RetainTests {
    @Test("a retained message is delivered with RETAIN set to a later subscriber", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func storedAndDelivered(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "config-service", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("config/camera-3", #"{"exposure":12}"#, qos: .atLeastOnce, packetIdentifier: 1, retain: true)

            let subscriber = try await connectAccepted(port: port, "camera-3", version: version)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("config/+", qos: .atLeastOnce)
            let message = try await subscriber.receivePublish()
            #expect(message.retain)
            #expect(message.topicName == "config/camera-3")
            #expect(message.payloadString == #"{"exposure":12}"#)
            #expect(message.qos == .atLeastOnce)
            try await subscriber.acknowledge(message)
            try await subscriber.expectNothingPending()
        }
    }

    @Test("a retained message is delivered at the lower of its QoS and the subscription's")
    func retainedQoS() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "config-service")
            defer { Task { await publisher.close() } }
            try await publisher.publish("config/a", "qos2", qos: .exactlyOnce, packetIdentifier: 1, retain: true)
            try await publisher.publish("config/b", "qos0", retain: true)
            _ = try await publisher.roundTrip()

            let subscriber = try await connectAccepted(port: port, "reader")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("config/+", qos: .atLeastOnce)
            var qosByTopic: [String: QoS] = [:]
            for _ in 0..<2 {
                let message = try await subscriber.receivePublish()
                qosByTopic[message.topicName] = message.qos
                try await subscriber.acknowledge(message)
            }
            #expect(qosByTopic == ["config/a": .atLeastOnce, "config/b": .atMostOnce])
        }
    }

    @Test("a new retained message replaces the previous one on its topic")
    func replaced() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/1/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            try await publisher.publish("door/1/state", "closed", qos: .atLeastOnce, packetIdentifier: 2, retain: true)

            let subscriber = try await connectAccepted(port: port, "panel")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("door/#", qos: .atMostOnce)
            let pending = try await subscriber.roundTrip()
            #expect(pending.count == 1)
            guard case .publish(let message) = pending.first else {
                Issue.record("no retained message")
                return
            }
            #expect(message.payloadString == "closed")
            #expect(message.retain)
        }
    }

    @Test("an empty retained payload deletes the retained message and still reaches current subscribers")
    func deleted() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            let current = try await connectAccepted(port: port, "current")
            defer { Task { await current.close() } }
            try await current.subscribe("door/#", qos: .atMostOnce)

            try await publisher.publish("door/2/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            try await publisher.publish("door/2/state", "", qos: .atLeastOnce, packetIdentifier: 2, retain: true)
            let first = try await current.receivePublish()
            let second = try await current.receivePublish()
            #expect(first.payloadString == "open")
            #expect(second.payloadString == "")

            let later = try await connectAccepted(port: port, "later")
            defer { Task { await later.close() } }
            try await later.subscribe("door/#", qos: .atMostOnce)
            try await later.expectNothingPending("a deleted retained message was delivered")
        }
    }

    @Test("live messages to an existing subscriber have RETAIN cleared", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func liveMessagesNotRetained(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "live", version: version)
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("door/#", qos: .atMostOnce)
            let publisher = try await connectAccepted(port: port, "status", version: version)
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/3/state", "open", retain: true)
            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "open")
            #expect(!message.retain)
        }
    }

    @Test("5.0 retain-as-published keeps RETAIN on live messages")
    func retainAsPublished() async throws {
        try await withBroker { port in
            let bridge = try await connectAccepted(port: port, "bridge")
            defer { Task { await bridge.close() } }
            try await bridge.subscribe(["door/#"], options: .init(qos: .atMostOnce, retainAsPublished: true))
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/4/state", "open", retain: true)
            try await publisher.publish("door/4/event", "bell")
            let retained = try await bridge.receivePublish()
            let plain = try await bridge.receivePublish()
            #expect(retained.payloadString == "open" && retained.retain)
            #expect(plain.payloadString == "bell" && !plain.retain)
        }
    }

    @Test("5.0 retain handling 0 sends retained messages on every SUBSCRIBE")
    func retainHandlingAlways() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/5/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            let subscriber = try await connectAccepted(port: port, "panel")
            defer { Task { await subscriber.close() } }
            for packetIdentifier: UInt16 in 1...2 {
                try await subscriber.subscribe(
                    ["door/#"],
                    options: .init(qos: .atMostOnce, retainHandling: .sendOnSubscribe),
                    packetIdentifier: packetIdentifier
                )
                let message = try await subscriber.receivePublish()
                #expect(message.payloadString == "open" && message.retain)
            }
        }
    }

    @Test("5.0 retain handling 1 sends retained messages only when the subscription is new")
    func retainHandlingNewOnly() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/6/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            let subscriber = try await connectAccepted(port: port, "panel")
            defer { Task { await subscriber.close() } }
            let options = SubscriptionOptions(qos: .atMostOnce, retainHandling: .sendOnNewSubscribe)
            try await subscriber.subscribe(["door/#"], options: options, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "open" && message.retain)
            try await subscriber.subscribe(["door/#"], options: options, packetIdentifier: 2)
            try await subscriber.expectNothingPending("retained message re-sent for an existing subscription")
        }
    }

    @Test("5.0 retain handling 2 never sends retained messages")
    func retainHandlingNever() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/7/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            let subscriber = try await connectAccepted(port: port, "panel")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe(["door/#"], options: .init(qos: .atMostOnce, retainHandling: .doNotSend))
            try await subscriber.expectNothingPending("a retained message arrived with retain handling 2")
            // The subscription itself works.
            try await publisher.publish("door/7/state", "closed")
            let live = try await subscriber.receivePublish()
            #expect(live.payloadString == "closed")
        }
    }

    @Test("5.0: a retained message on subscribe carries the subscription identifier")
    func retainedWithSubscriptionIdentifier() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("door/8/state", "open", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            let subscriber = try await connectAccepted(port: port, "panel")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("door/+/state", qos: .atMostOnce, identifier: 99)
            let message = try await subscriber.receivePublish()
            #expect(message.properties.subscriptionIdentifiers == [99])
        }
    }

    @Test("retained messages on $ topics are not sent to a # subscription")
    func retainedDollarTopics() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "status")
            defer { Task { await publisher.close() } }
            try await publisher.publish("$internal/version", "1.0", qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            try await publisher.publish("public/version", "1.0", qos: .atLeastOnce, packetIdentifier: 2, retain: true)
            let subscriber = try await connectAccepted(port: port, "everything")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("#", qos: .atMostOnce)
            let topics = try await subscriber.roundTrip().compactMap { packet -> String? in
                guard case .publish(let message) = packet else { return nil }
                return message.topicName
            }
            #expect(topics == ["public/version"])
        }
    }

    @Test("5.0 retain_available false: CONNACK says so and a retained PUBLISH gets DISCONNECT 0x9A")
    func retainNotAvailable() async throws {
        try await withBroker(.testing { $0.retainAvailable = false }) { port in
            let watcher = try await connectAccepted(port: port, "watcher")
            defer { Task { await watcher.close() } }
            try await watcher.subscribe("door/#", qos: .atMostOnce)

            let (client, connack) = try await connect(port: port, "retainer")
            defer { Task { await client.close() } }
            #expect(connack.properties.retainAvailable == 0)
            try await client.publish("door/9/state", "open", retain: true)
            let reason = try await client.closedByBroker()
            #expect(reason == .retainNotSupported)
            try await watcher.expectNothingPending("the refused retained message was forwarded")

            // Nothing was stored either.
            let later = try await connectAccepted(port: port, "later")
            defer { Task { await later.close() } }
            try await later.subscribe("door/#", qos: .atMostOnce)
            try await later.expectNothingPending("a retained message was stored although retain_available is false")
        }
    }
}
