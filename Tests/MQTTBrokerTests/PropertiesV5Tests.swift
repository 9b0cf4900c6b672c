import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// MQTT 5.0 properties on the way through the broker: application properties, message
/// expiry, topic aliases from clients and the client's maximum packet size
/// (MQTT 5.0 sections 3.1.2.11, 3.3.2.3 and 4.10).
@Suite("5.0 properties")
struct PropertiesV5Tests {
    @Test("user properties, content type, correlation data, response topic and payload format pass through unchanged")
    func applicationProperties() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "consumer")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("events/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            let correlation = bytes([0x00, 0x01, 0xFE, 0xFF, 0x7F])
            let properties: Properties = [
                .payloadFormatIndicator(1),
                .contentType("application/cbor; version=2"),
                .responseTopic("events/replies/producer"),
                .correlationData(correlation),
                .userProperty("trace", "abc"),
                .userProperty("Trace", "ABC"),
                .userProperty("trace", "second value"),
                .userProperty("empty", ""),
            ]
            try await publisher.publish("events/door", "opened", qos: .atLeastOnce, packetIdentifier: 1, properties: properties)
            let message = try await subscriber.receivePublish()
            #expect(message.properties.payloadFormatIndicator == 1)
            #expect(message.properties.contentType == "application/cbor; version=2")
            #expect(message.properties.responseTopic == "events/replies/producer")
            #expect(message.properties.correlationData == correlation)
            #expect(
                message.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["trace=abc", "Trace=ABC", "trace=second value", "empty="]
            )
            #expect(message.properties.messageExpiryInterval == nil)
            #expect(message.properties.topicAlias == nil)
        }
    }

    @Test("request/response: the responder answers on the response topic with the same correlation data")
    func requestResponse() async throws {
        try await withBroker { port in
            let responder = try await connectAccepted(port: port, "thermostat")
            defer { Task { await responder.close() } }
            try await responder.subscribe("thermostat/get", qos: .atLeastOnce)
            let requester = try await connectAccepted(port: port, "app")
            defer { Task { await requester.close() } }
            try await requester.subscribe("app/responses/+", qos: .atLeastOnce)

            let correlation = bytes(Array("request-17".utf8))
            try await requester.publish(
                "thermostat/get",
                "setpoint",
                qos: .atLeastOnce,
                packetIdentifier: 1,
                properties: [.responseTopic("app/responses/thermostat"), .correlationData(correlation)]
            )
            let request = try await responder.receivePublish()
            try await responder.acknowledge(request)
            let responseTopic = try #require(request.properties.responseTopic)
            let requestCorrelation = try #require(request.properties.correlationData)
            try await responder.publish(
                responseTopic,
                "21.0",
                qos: .atLeastOnce,
                packetIdentifier: 1,
                properties: [.correlationData(requestCorrelation), .contentType("text/plain")]
            )

            let response = try await requester.receivePublish()
            #expect(response.topicName == "app/responses/thermostat")
            #expect(response.payloadString == "21.0")
            #expect(response.properties.correlationData == correlation)
            #expect(response.properties.contentType == "text/plain")
        }
    }

    @Test("the message expiry interval is counted down while the message waits in the broker")
    func expiryCountedDown() async throws {
        try await withBroker { port in
            let keep: Properties = [.sessionExpiryInterval(60)]
            let first = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            try await first.subscribe("alerts/#", qos: .atLeastOnce)
            try await first.disconnect()

            let publisher = try await connectAccepted(port: port, "alerter")
            defer { Task { await publisher.close() } }
            try await publisher.publish(
                "alerts/1",
                "valid a minute",
                qos: .atLeastOnce,
                packetIdentifier: 1,
                properties: [.messageExpiryInterval(60)]
            )
            try await Task.sleep(for: .milliseconds(1100))

            let second = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            let message = try await second.receivePublish()
            let remaining = try #require(message.properties.messageExpiryInterval)
            #expect(remaining >= 1 && remaining <= 59)
        }
    }

    @Test("a queued message whose expiry interval has passed is dropped")
    func expiredDropped() async throws {
        try await withBroker { port in
            let keep: Properties = [.sessionExpiryInterval(60)]
            let first = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            try await first.subscribe("alerts/#", qos: .atLeastOnce)
            try await first.disconnect()

            let publisher = try await connectAccepted(port: port, "alerter")
            defer { Task { await publisher.close() } }
            try await publisher.publish("alerts/1", "short-lived", qos: .atLeastOnce, packetIdentifier: 1, properties: [.messageExpiryInterval(1)])
            try await publisher.publish("alerts/2", "lasting", qos: .atLeastOnce, packetIdentifier: 2)
            try await Task.sleep(for: .milliseconds(2100))

            let second = try await connectAccepted(port: port, "offline", cleanStart: false, properties: keep)
            defer { Task { await second.close() } }
            let message = try await second.receivePublish()
            #expect(message.payloadString == "lasting")
            try await second.acknowledge(message)
            try await second.expectNothingPending()
        }
    }

    @Test(
        "a message expiry interval of 0 does not stop delivery to a connected subscriber, as in mosquitto"
    )
    func expiryZero() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "consumer")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("events/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "producer")
            defer { Task { await publisher.close() } }
            try await publisher.publish("events/now", "immediate", qos: .atLeastOnce, packetIdentifier: 1, properties: [.messageExpiryInterval(0)])
            try await publisher.publish("events/later", "marker", qos: .atLeastOnce, packetIdentifier: 2)
            let first = try await subscriber.receivePublish()
            #expect(first.payloadString == "immediate")
        }
    }

    @Test("an expired retained message is not delivered to a new subscriber")
    func expiredRetained() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "alerter")
            defer { Task { await publisher.close() } }
            try await publisher.publish(
                "alerts/state",
                "short-lived",
                qos: .atLeastOnce,
                packetIdentifier: 1,
                retain: true,
                properties: [.messageExpiryInterval(1)]
            )
            try await Task.sleep(for: .milliseconds(2100))
            let subscriber = try await connectAccepted(port: port, "late")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("alerts/#", qos: .atLeastOnce)
            try await subscriber.expectNothingPending("an expired retained message was delivered")
        }
    }

    @Test("a topic alias is set with a topic and reused with an empty topic name")
    func topicAlias() async throws {
        try await withBroker { port in
            let subscriber = try await connectAccepted(port: port, "dashboard")
            defer { Task { await subscriber.close() } }
            try await subscriber.subscribe("plant/+/line/+/speed", qos: .atMostOnce)
            let (publisher, connack) = try await connect(port: port, "plc")
            defer { Task { await publisher.close() } }
            let maximum = try #require(connack.properties.topicAliasMaximum)
            #expect(maximum >= 1)

            try await publisher.publish("plant/1/line/4/speed", "100", properties: [.topicAlias(1)])
            try await publisher.publish("", "101", properties: [.topicAlias(1)])
            try await publisher.publish("plant/1/line/5/speed", "200", properties: [.topicAlias(1)])  // re-maps alias 1
            try await publisher.publish("", "201", properties: [.topicAlias(1)])

            var received: [String] = []
            for _ in 0..<4 {
                let message = try await subscriber.receivePublish()
                #expect(message.properties.topicAlias == nil)
                received.append("\(message.topicName) \(message.payloadString)")
            }
            #expect(
                received == [
                    "plant/1/line/4/speed 100", "plant/1/line/4/speed 101", "plant/1/line/5/speed 200", "plant/1/line/5/speed 201",
                ]
            )
        }
    }

    @Test("a topic alias above the announced maximum is refused with DISCONNECT 0x94")
    func topicAliasAboveMaximum() async throws {
        try await withBroker(.testing { $0.maxTopicAlias = 3 }) { port in
            let (client, connack) = try await connect(port: port, "plc")
            defer { Task { await client.close() } }
            #expect(connack.properties.topicAliasMaximum == 3)
            try await client.publish("plant/1", "x", properties: [.topicAlias(4)])
            let reason = try await client.closedByBroker()
            #expect(reason == .topicAliasInvalid)
        }
    }

    @Test("topic alias 0 closes the connection after a DISCONNECT that refuses it")
    func topicAliasZero() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "plc")
            defer { Task { await client.close() } }
            try await client.publish("plant/1", "x", properties: [.topicAlias(0)])
            let reason = try await client.closedByBroker()
            // The specification names no code for alias 0: 0x94 fits its table, mosquitto 2.0.11 sends 0x81.
            #expect(reason.map { [.topicAliasInvalid, .protocolError, .malformedPacket].contains($0) } == true)
        }
    }

    @Test("a topic alias sent while the broker announced no topic aliases is refused with DISCONNECT 0x94")
    func topicAliasWhenNoneAllowed() async throws {
        try await withBroker(.testing { $0.maxTopicAlias = 0 }) { port in
            let (client, connack) = try await connect(port: port, "plc")
            defer { Task { await client.close() } }
            #expect(connack.properties.topicAliasMaximum ?? 0 == 0)
            try await client.publish("plant/1", "x", properties: [.topicAlias(1)])
            let reason = try await client.closedByBroker()
            #expect(reason == .topicAliasInvalid)
        }
    }

    @Test("an empty topic name with an alias that was never set is a protocol error (0x82)")
    func unknownTopicAlias() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "plc")
            defer { Task { await client.close() } }
            try await client.publish("", "x", properties: [.topicAlias(2)])
            let reason = try await client.closedByBroker()
            #expect(reason == .protocolError)
        }
    }

    @Test("topic aliases belong to one connection: another connection cannot use them")
    func topicAliasesPerConnection() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "plc-1")
            defer { Task { await first.close() } }
            try await first.publish("plant/1", "x", properties: [.topicAlias(1)])
            _ = try await first.roundTrip()
            let second = try await connectAccepted(port: port, "plc-2")
            defer { Task { await second.close() } }
            try await second.publish("", "y", properties: [.topicAlias(1)])
            let reason = try await second.closedByBroker()
            #expect(reason == .protocolError)
        }
    }

    @Test("a message larger than a subscriber's maximum packet size is dropped for it while others get it")
    func clientMaximumPacketSize() async throws {
        try await withBroker { port in
            let small = try await connectAccepted(port: port, "small", properties: [.maximumPacketSize(64)])
            defer { Task { await small.close() } }
            try await small.subscribe("blobs/#", qos: .atLeastOnce)
            let large = try await connectAccepted(port: port, "large")
            defer { Task { await large.close() } }
            try await large.subscribe("blobs/#", qos: .atLeastOnce)

            let publisher = try await connectAccepted(port: port, "uploader")
            defer { Task { await publisher.close() } }
            let big = String(repeating: "x", count: 200)
            try await publisher.publish("blobs/big", big, qos: .atLeastOnce, packetIdentifier: 1)
            try await publisher.publish("blobs/tiny", "ok", qos: .atLeastOnce, packetIdentifier: 2)

            let first = try await large.receivePublish()
            #expect(first.payloadString == big)
            let smallFirst = try await small.receivePublish()
            #expect(smallFirst.topicName == "blobs/tiny")
            let size = try MQTTPacket.publish(smallFirst).encodedSize(version: .v5)
            #expect(size <= 64)
        }
    }

    @Test("a retained message too large for the subscriber is not sent to it")
    func clientMaximumPacketSizeRetained() async throws {
        try await withBroker { port in
            let publisher = try await connectAccepted(port: port, "uploader")
            defer { Task { await publisher.close() } }
            try await publisher.publish("blobs/big", String(repeating: "x", count: 200), qos: .atLeastOnce, packetIdentifier: 1, retain: true)
            let small = try await connectAccepted(port: port, "small", properties: [.maximumPacketSize(64)])
            defer { Task { await small.close() } }
            try await small.subscribe("blobs/#", qos: .atLeastOnce)
            try await small.expectNothingPending("a packet over the client's maximum packet size was sent")
        }
    }
}
