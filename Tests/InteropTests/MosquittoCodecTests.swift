import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

/// MQTTCore's encoder and decoder against a real mosquitto broker and real third-party clients.
@Suite("Codec against mosquitto", .serialized)
struct MosquittoCodecTests {
    @Test("publish and subscribe at QoS 0, 1 and 2 with every flow packet", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func qosFlows(version: MQTTProtocolVersion) async throws {
        try await Mosquitto.with { broker in
            let v5 = version == .v5

            let subscriber = try await CodecConnection.connect(port: broker.port, version: version)
            defer { Task { await subscriber.close() } }
            let subscriberAck = try await subscriber.handshake(clientIdentifier: "lpr-server")
            #expect(subscriberAck.reasonCode == .success)
            try await subscriber.send(
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [Subscription(topicFilter: "lprserver/cameras/+/detection", options: .init(qos: .exactlyOnce))],
                        properties: v5 ? [.subscriptionIdentifier(7)] : []
                    )
                )
            )
            try await subscriber.expectNext(.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS2])))

            let camera = try await CodecConnection.connect(port: broker.port, version: version)
            defer { Task { await camera.close() } }
            let cameraAck = try await camera.handshake(clientIdentifier: "camera-17")
            #expect(cameraAck.reasonCode == .success)

            let topic = "lprserver/cameras/17/detection"
            let properties: Properties =
                v5
                ? [
                    .payloadFormatIndicator(1), .contentType("application/json"), .responseTopic("lprserver/cameras/17/ack"),
                    .correlationData(ByteBuffer(bytes: [0xCA, 0xFE])), .userProperty("site", "gate-3"), .messageExpiryInterval(300),
                ] : []
            try await camera.send(.publish(PublishPacket(topicName: topic, payload: ByteBuffer(string: "qos0"), properties: properties)))
            try await camera.send(
                .publish(
                    PublishPacket(
                        topicName: topic,
                        payload: ByteBuffer(string: "qos1"),
                        qos: .atLeastOnce,
                        packetIdentifier: 10,
                        properties: properties
                    )
                )
            )
            try await camera.expectNext(.puback(PubAckPacket(packetIdentifier: 10)))
            try await camera.send(
                .publish(
                    PublishPacket(
                        topicName: topic,
                        payload: ByteBuffer(string: "qos2"),
                        qos: .exactlyOnce,
                        packetIdentifier: 11,
                        properties: properties
                    )
                )
            )
            try await camera.expectNext(.pubrec(PubRecPacket(packetIdentifier: 11)))
            try await camera.send(.pubrel(PubRelPacket(packetIdentifier: 11)))
            try await camera.expectNext(.pubcomp(PubCompPacket(packetIdentifier: 11)))

            for (expectedPayload, expectedQoS) in [("qos0", QoS.atMostOnce), ("qos1", .atLeastOnce), ("qos2", .exactlyOnce)] {
                guard case .publish(let message) = try await subscriber.receive() else {
                    Issue.record("expected PUBLISH \(expectedPayload)")
                    return
                }
                #expect(message.topicName == topic)
                #expect(String(buffer: message.payload) == expectedPayload)
                #expect(message.qos == expectedQoS)
                #expect(!message.retain && !message.dup)
                if v5 {
                    #expect(message.properties.contentType == "application/json")
                    #expect(message.properties.responseTopic == "lprserver/cameras/17/ack")
                    #expect(message.properties.correlationData == ByteBuffer(bytes: [0xCA, 0xFE]))
                    #expect(message.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["site=gate-3"])
                    #expect(message.properties.payloadFormatIndicator == 1)
                    #expect((message.properties.messageExpiryInterval ?? 0) > 290)
                    #expect(message.properties.subscriptionIdentifiers == [7])
                }
                switch expectedQoS {
                case .atMostOnce:
                    #expect(message.packetIdentifier == nil)
                case .atLeastOnce:
                    try await subscriber.send(.puback(PubAckPacket(packetIdentifier: message.packetIdentifier!)))
                case .exactlyOnce:
                    let identifier = message.packetIdentifier!
                    try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
                    try await subscriber.expectNext(.pubrel(PubRelPacket(packetIdentifier: identifier)))
                    try await subscriber.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
                }
            }

            try await subscriber.send(.pingreq)
            try await subscriber.expectNext(.pingresp)
            try await subscriber.send(.unsubscribe(UnsubscribePacket(packetIdentifier: 2, topicFilters: ["lprserver/cameras/+/detection"])))
            try await subscriber.expectNext(.unsuback(UnsubAckPacket(packetIdentifier: 2, reasonCodes: v5 ? [.success] : [])))
            try await subscriber.send(.disconnect(DisconnectPacket()))
            try await camera.send(.disconnect(DisconnectPacket()))
        }
    }

    @Test("a retained message arrives with the retain flag on a new subscription", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func retained(version: MQTTProtocolVersion) async throws {
        try await Mosquitto.with { broker in
            let camera = try await CodecConnection.connect(port: broker.port, version: version)
            defer { Task { await camera.close() } }
            _ = try await camera.handshake(clientIdentifier: "camera-3")
            try await camera.send(
                .publish(
                    PublishPacket(
                        topicName: "lprserver/cameras/3/status",
                        payload: ByteBuffer(string: "online"),
                        qos: .atLeastOnce,
                        retain: true,
                        packetIdentifier: 1
                    )
                )
            )
            // Nobody subscribes yet: a 5.0 broker says so in the PUBACK.
            try await camera.expectNext(
                .puback(PubAckPacket(packetIdentifier: 1, reasonCode: version == .v5 ? .noMatchingSubscribers : .success))
            )
            let server = try await CodecConnection.connect(port: broker.port, version: version)
            defer { Task { await server.close() } }
            _ = try await server.handshake(clientIdentifier: "server")
            try await server.send(
                .subscribe(SubscribePacket(packetIdentifier: 5, subscriptions: [Subscription(topicFilter: "lprserver/cameras/+/status")]))
            )
            try await server.expectNext(.suback(SubAckPacket(packetIdentifier: 5, reasonCodes: [.grantedQoS0])))
            guard case .publish(let message) = try await server.receive() else {
                Issue.record("no retained message")
                return
            }
            #expect(message.retain)
            #expect(String(buffer: message.payload) == "online")
        }
    }

    @Test("a will published by mosquitto decodes with its 5.0 properties")
    func will() async throws {
        try await Mosquitto.with { broker in
            let server = try await CodecConnection.connect(port: broker.port, version: .v5)
            defer { Task { await server.close() } }
            _ = try await server.handshake(clientIdentifier: "server")
            try await server.send(
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [Subscription(topicFilter: "lprserver/cameras/+/availability", options: .init(qos: .atLeastOnce))]
                    )
                )
            )
            _ = try await server.receive()

            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            let will = ConnectPacket.Will(
                topic: "lprserver/cameras/8/availability",
                payload: ByteBuffer(string: "offline"),
                qos: .atLeastOnce,
                properties: [.contentType("text/plain"), .userProperty("camera", "8")]
            )
            try await camera.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "camera-8", will: will)))
            guard case .connack(let connack) = try await camera.receive(), connack.reasonCode == .success else {
                Issue.record("camera was not accepted")
                return
            }
            await camera.close()  // no DISCONNECT: the will must go out

            guard case .publish(let message) = try await server.receive() else {
                Issue.record("no will")
                return
            }
            #expect(message.topicName == "lprserver/cameras/8/availability")
            #expect(String(buffer: message.payload) == "offline")
            #expect(message.properties.contentType == "text/plain")
            #expect(message.properties.userProperties.first?.value == "8")
        }
    }

    @Test("mosquitto_pub's messages decode, and mosquitto_sub reads ours", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func mosquittoClients(version: MQTTProtocolVersion) async throws {
        try await Mosquitto.with { broker in
            let cliVersion = version == .v5 ? "mqttv5" : "mqttv311"

            let server = try await CodecConnection.connect(port: broker.port, version: version)
            defer { Task { await server.close() } }
            _ = try await server.handshake(clientIdentifier: "server")
            try await server.send(
                .subscribe(
                    SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "lprserver/#", options: .init(qos: .exactlyOnce))])
                )
            )
            _ = try await server.receive()

            var arguments = [
                "-h", "127.0.0.1", "-p", "\(broker.port)", "-V", cliVersion, "-q", "2", "-t", "lprserver/cameras/5/detection", "-m", "AB 123 CD",
            ]
            if version == .v5 { arguments += ["-D", "publish", "user-property", "camera", "5", "-D", "publish", "content-type", "text/plain"] }
            let published = try await runProgram("mosquitto_pub", arguments)
            #expect(published.status == 0)
            guard case .publish(let message) = try await server.receive() else {
                Issue.record("mosquitto_pub's message did not arrive")
                return
            }
            #expect(message.topicName == "lprserver/cameras/5/detection")
            #expect(String(buffer: message.payload) == "AB 123 CD")
            #expect(message.qos == .exactlyOnce)
            if version == .v5 {
                #expect(message.properties.userProperties.first.map { "\($0.name)=\($0.value)" } == "camera=5")
                #expect(message.properties.contentType == "text/plain")
            }
            try await server.send(.pubrec(PubRecPacket(packetIdentifier: message.packetIdentifier!)))
            _ = try await server.receive()
            try await server.send(.pubcomp(PubCompPacket(packetIdentifier: message.packetIdentifier!)))

            // mosquitto_sub waits for one message on a retained topic that we publish.
            try await server.send(
                .publish(
                    PublishPacket(
                        topicName: "lprserver/config/5",
                        payload: ByteBuffer(string: #"{"exposure":12}"#),
                        qos: .atLeastOnce,
                        retain: true,
                        packetIdentifier: 3
                    )
                )
            )
            while case .publish = try await server.receive() {}  // our own message comes back through lprserver/#, then the PUBACK
            let subscribed = try await runProgram(
                "mosquitto_sub",
                ["-h", "127.0.0.1", "-p", "\(broker.port)", "-V", cliVersion, "-t", "lprserver/config/+", "-v", "-C", "1", "-W", "5"]
            )
            #expect(subscribed.status == 0)
            #expect(subscribed.output == "lprserver/config/5 {\"exposure\":12}\n")
        }
    }

    @Test("paho-mqtt's MQTT 5 request with properties decodes")
    func paho() async throws {
        try await Mosquitto.with { broker in
            let server = try await CodecConnection.connect(port: broker.port, version: .v5)
            defer { Task { await server.close() } }
            _ = try await server.handshake(clientIdentifier: "server")
            try await server.send(
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [Subscription(topicFilter: "lprserver/gateways/+/request", options: .init(qos: .atLeastOnce))]
                    )
                )
            )
            _ = try await server.receive()

            let script = """
                import sys
                import paho.mqtt.client as mqtt
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties
                port = int(sys.argv[1])
                if hasattr(mqtt, "CallbackAPIVersion"):
                    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-gateway", protocol=mqtt.MQTTv5)
                else:
                    client = mqtt.Client(client_id="paho-gateway", protocol=mqtt.MQTTv5)
                client.connect("127.0.0.1", port)
                client.loop_start()
                properties = Properties(PacketTypes.PUBLISH)
                properties.ResponseTopic = "lprserver/gateways/g1/response"
                properties.CorrelationData = b"\\x00\\x01req"
                properties.UserProperty = [("method", "GET"), ("path", "/state")]
                info = client.publish("lprserver/gateways/g1/request", b"{}", qos=1, properties=properties)
                info.wait_for_publish(5)
                client.disconnect()
                client.loop_stop()
                """
            let result = try await runProgram("python3", ["-c", script, "\(broker.port)"])
            #expect(result.status == 0)
            guard case .publish(let message) = try await server.receive() else {
                Issue.record("paho's message did not arrive")
                return
            }
            #expect(message.topicName == "lprserver/gateways/g1/request")
            #expect(message.properties.responseTopic == "lprserver/gateways/g1/response")
            #expect(message.properties.correlationData == ByteBuffer(bytes: [0, 1] + Array("req".utf8)))
            #expect(message.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["method=GET", "path=/state"])
        }
    }
}
