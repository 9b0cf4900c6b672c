import DatabusTestSupport
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// Publish, subscribe, retained messages, wills and large payloads against a real mosquitto and `databus broker`.
@Suite("Publish and subscribe against mosquitto and databus broker", .serialized, .timeLimit(.minutes(2)))
struct PublishSubscribeTests {
    static let versions: [MQTTProtocolVersion] = [.v3_1_1, .v5]

    @Test("messages at QoS 0, 1 and 2 complete their flows and arrive at their QoS", arguments: TestBrokerKind.allCases, versions)
    func everyQoS(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server", version: version)) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/+/detection", qos: .exactlyOnce)
                try await withClient(.test(broker, id: "camera-17", version: version)) { camera in
                    let properties: Properties =
                        version == .v5
                        ? [.contentType("application/json"), .userProperty("site", "gate-3"), .payloadFormatIndicator(1)] : []
                    for qos in QoS.allCases {
                        let result = try await camera.publish(
                            topic: "lprserver/cameras/17/detection",
                            payload: "plate at QoS \(qos.rawValue)",
                            qos: qos,
                            properties: properties
                        )
                        #expect(result.reasonCode == .success)
                    }
                }
                let received = try await collect(detections, count: 3)
                #expect(received.map(\.payloadString) == ["plate at QoS 0", "plate at QoS 1", "plate at QoS 2"])
                #expect(received.map(\.qos) == [.atMostOnce, .atLeastOnce, .exactlyOnce])
                #expect(received.allSatisfy { $0.topic == "lprserver/cameras/17/detection" && !$0.retain })
                if version == .v5 {
                    #expect(received.allSatisfy { $0.properties.contentType == "application/json" })
                    #expect(received.allSatisfy { $0.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["site=gate-3"] })
                }
            }
        }
    }

    @Test(
        "subscribe returns the granted QoS per filter and unsubscribe ends the subscription's messages",
        arguments: TestBrokerKind.allCases,
        versions
    )
    func subscribeAndUnsubscribe(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "subscriber", version: version)) { client in
                let codes = try await client.subscribe([
                    Subscription(topicFilter: "a/#", options: SubscriptionOptions(qos: .atMostOnce)),
                    Subscription(topicFilter: "b/+", options: SubscriptionOptions(qos: .atLeastOnce)),
                    Subscription(topicFilter: "c", options: SubscriptionOptions(qos: .exactlyOnce)),
                ])
                #expect(codes == [.grantedQoS0, .grantedQoS1, .grantedQoS2])

                let messages = try await client.subscribe(to: "status/#", qos: .atLeastOnce)
                let unsubscribeCodes = try await client.unsubscribe(["status/#"])
                #expect(unsubscribeCodes == [.success])
                // The sequence ends: iterating it finishes instead of waiting.
                let remaining = try await withDeadline(.seconds(5), "the unsubscribed sequence to end") {
                    var count = 0
                    for await _ in messages { count += 1 }
                    return count
                }
                #expect(remaining == 0)

                if version == .v5 {
                    let notSubscribed = try await client.unsubscribe(["never/subscribed"])
                    #expect(notSubscribed == [.noSubscriptionExisted])
                }
            }
        }
    }

    @Test(
        "a retained message reaches a later subscriber with the retain flag, and an empty one clears it",
        arguments: TestBrokerKind.allCases,
        versions
    )
    func retained(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "camera-3", version: version)) { camera in
                try await camera.publish(topic: "lprserver/cameras/3/status", payload: "online", qos: .atLeastOnce, retain: true)
                try await withClient(.test(broker, id: "dashboard", version: version)) { dashboard in
                    let status = try await dashboard.subscribe(to: "lprserver/cameras/+/status")
                    let retained = try await collect(status, count: 1)
                    #expect(retained.first?.payloadString == "online")
                    #expect(retained.first?.retain == true)

                    // A live message on the same subscription is not flagged retained.
                    try await camera.publish(topic: "lprserver/cameras/3/status", payload: "degraded", qos: .atLeastOnce, retain: true)
                    let live = try await collect(status, count: 1)
                    #expect(live.first?.payloadString == "degraded")
                    #expect(live.first?.retain == false)
                }
                try await camera.publish(topic: "lprserver/cameras/3/status", payload: ByteBuffer(), qos: .atLeastOnce, retain: true)
                try await withClient(.test(broker, id: "late-dashboard", version: version)) { late in
                    let status = try await late.subscribe(to: "lprserver/cameras/+/status")
                    try await late.publish(topic: "lprserver/cameras/4/status", payload: "marker", qos: .atLeastOnce)
                    // Only the marker arrives: the cleared retained message is gone.
                    let first = try await collect(status, count: 1)
                    #expect(first.map(\.payloadString) == ["marker"])
                }
            }
        }
    }

    @Test("the broker publishes the will, with its MQTT 5 properties, when the connection drops", arguments: TestBrokerKind.allCases, versions)
    func will(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server", version: version)) { server in
                let availability = try await server.subscribe(to: "lprserver/cameras/+/availability", qos: .atLeastOnce)

                var configuration = MQTTClient.Configuration.test(broker, id: "camera-9", version: version)
                configuration.reconnect = .disabled
                configuration.will = ConnectPacket.Will(
                    topic: "lprserver/cameras/9/availability",
                    payload: ByteBuffer(string: "offline"),
                    qos: .atLeastOnce,
                    retain: false,
                    properties: [.contentType("text/plain"), .userProperty("camera", "9"), .messageExpiryInterval(600)]
                )
                try await withClient(configuration) { camera in
                    try await camera.publish(topic: "lprserver/cameras/9/availability", payload: "online", qos: .atLeastOnce)
                    let online = try await collect(availability, count: 1)
                    #expect(online.first?.payloadString == "online")
                    await camera.dropConnectionForTesting()
                    let will = try await collect(availability, count: 1)
                    #expect(will.first?.payloadString == "offline")
                    #expect(will.first?.qos == .atLeastOnce)
                    if version == .v5 {
                        #expect(will.first?.properties.contentType == "text/plain")
                        #expect(will.first?.properties.userProperties.first?.value == "9")
                    }
                }
            }
        }
    }

    @Test("a clean DISCONNECT does not publish the will, and MQTT 5 reason 0x04 does", arguments: TestBrokerKind.allCases)
    func willOnlyWhenAsked(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            try await withClient(.test(broker, id: "lpr-server")) { server in
                let wills = try await server.subscribe(to: "wills/#", qos: .atLeastOnce)
                for (index, reason) in [ReasonCode.normalDisconnection, .disconnectWithWillMessage].enumerated() {
                    var configuration = MQTTClient.Configuration.test(broker, id: "camera-\(index)")
                    configuration.will = ConnectPacket.Will(topic: "wills/\(index)", payload: ByteBuffer(string: "gone \(index)"))
                    let camera = MQTTClient(configuration: configuration, logger: testLogger)
                    try await camera.connect()
                    await camera.disconnect(reasonCode: reason)
                }
                try await server.publish(topic: "wills/marker", payload: "marker", qos: .atLeastOnce)
                let received = try await collect(wills, count: 2)
                #expect(received.map(\.payloadString) == ["gone 1", "marker"])
            }
        }
    }

    @Test("a 1 MB payload arrives intact", arguments: TestBrokerKind.allCases, versions)
    func largePayload(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with(extraConfiguration: "max_packet_size 2000000") { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "frames-subscriber", version: version)
            configuration.maximumPacketSize = 2_000_000
            try await withClient(configuration) { subscriber in
                let frames = try await subscriber.subscribe(to: "pipeline/frames", qos: .atLeastOnce)
                var payload = ByteBuffer()
                for index in 0..<1_048_576 { payload.writeInteger(UInt8(truncatingIfNeeded: index &* 31 &+ index >> 8)) }
                try await withClient(.test(broker, id: "pipeline", version: version)) { pipeline in
                    let result = try await pipeline.publish(topic: "pipeline/frames", payload: payload, qos: .atLeastOnce)
                    #expect(result.isSuccess)
                }
                let received = try await collect(frames, count: 1)
                #expect(received.first?.payload.readableBytes == 1_048_576)
                #expect(received.first?.payload == payload)
            }
        }
    }

    @Test("a packet larger than our maximum packet size closes the connection instead of being read", arguments: TestBrokerKind.allCases)
    func packetOverOurMaximum(kind: TestBrokerKind) async throws {
        try await kind.with { broker in
            var configuration = MQTTClient.Configuration.test(broker, id: "small-subscriber")
            configuration.protocolVersion = .v3_1_1  // 3.1.1 cannot tell the broker our limit
            configuration.maximumPacketSize = 1_000
            configuration.reconnect = .disabled
            try await withClient(configuration) { subscriber in
                _ = try await subscriber.subscribe(to: "big", qos: .atLeastOnce)
                let states = subscriber.states
                let lost = Task { try await waitForState(states) { if case .disconnected = $0 { true } else { false } } }
                try await withClient(.test(broker, id: "publisher")) { publisher in
                    try await publisher.publish(topic: "big", payload: ByteBuffer(repeating: 0x41, count: 5_000), qos: .atLeastOnce)
                }
                let state = try await lost.value
                guard case .disconnected(.protocolError(let why)) = state else {
                    Issue.record("expected a protocol error, got \(state)")
                    return
                }
                #expect(why.contains("maximum packet size"))
            }
        }
    }

    @Test("10,000 QoS 1 messages arrive complete and in order", arguments: TestBrokerKind.allCases, versions)
    func tenThousandInOrder(kind: TestBrokerKind, version: MQTTProtocolVersion) async throws {
        try await kind.with(extraConfiguration: "max_queued_messages 0") { broker in
            try await withClient(.test(broker, id: "lpr-server", version: version)) { server in
                let detections = try await server.subscribe(to: "lprserver/cameras/1/detection", qos: .atLeastOnce)
                try await withClient(.test(broker, id: "camera-1", version: version)) { camera in
                    var last: PublishTicket?
                    for number in 0..<10_000 {
                        last = try await camera.enqueue(
                            topic: "lprserver/cameras/1/detection",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: .atLeastOnce
                        )
                    }
                    let result = try await last?.result()
                    #expect(result?.isSuccess == true)
                    let statistics = await camera.outboxStatistics
                    #expect(statistics.messages == 0)
                }
                let received = try await collect(detections, count: 10_000)
                expectNumbered(received.map(\.payloadString), 0..<10_000)
            }
        }
    }
}
