import MQTTCore
import NIOCore
import Testing

/// PUBLISH byte layouts worked out by hand from MQTT 3.1.1 section 3.3 and MQTT 5.0 section 3.3.
@Suite("PUBLISH wire format")
struct PublishWireFormatTests {
    // MARK: MQTT 3.1.1

    @Test("3.1.1 PUBLISH at QoS 0 has no packet identifier")
    func qos0_311() throws {
        let packet = MQTTPacket.publish(PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi")))
        let expected: [UInt8] = [
            0x30,  // PUBLISH, DUP 0, QoS 0, RETAIN 0
            0x07,  // remaining length 7
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 PUBLISH at QoS 0 leaves out a packet identifier even when one is set")
    func qos0IgnoresPacketIdentifier311() throws {
        let packet = MQTTPacket.publish(PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi"), packetIdentifier: 7))
        let expected: [UInt8] = [
            0x30,  // PUBLISH, DUP 0, QoS 0, RETAIN 0
            0x07,  // remaining length 7
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == .publish(PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi"))))
        #expect(unread == 0)
    }

    @Test("3.1.1 PUBLISH at QoS 0 with an empty payload")
    func emptyPayload311() throws {
        let packet = MQTTPacket.publish(PublishPacket(topicName: "a/b", payload: ByteBuffer(), retain: true))
        let expected: [UInt8] = [
            0x31,  // PUBLISH, DUP 0, QoS 0, RETAIN 1
            0x05,  // remaining length 5
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 PUBLISH at QoS 1 with RETAIN carries the packet identifier after the topic")
    func qos1Retain311() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi"), qos: .atLeastOnce, retain: true, packetIdentifier: 10)
        )
        let expected: [UInt8] = [
            0x33,  // PUBLISH, DUP 0, QoS 1 (0x02), RETAIN 1 (0x01)
            0x09,  // remaining length 9
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x00, 0x0A,  // packet identifier 10
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 PUBLISH at QoS 2 with DUP")
    func qos2Dup311() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi"), qos: .exactlyOnce, dup: true, packetIdentifier: 0x1234)
        )
        let expected: [UInt8] = [
            0x3C,  // PUBLISH, DUP 1 (0x08), QoS 2 (0x04), RETAIN 0
            0x09,  // remaining length 9
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x12, 0x34,  // packet identifier 0x1234
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    // MARK: MQTT 5.0

    @Test("5.0 PUBLISH at QoS 0 has a property length after the topic name")
    func qos0_5() throws {
        let packet = MQTTPacket.publish(PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "hi")))
        let expected: [UInt8] = [
            0x30,  // PUBLISH, DUP 0, QoS 0, RETAIN 0
            0x08,  // remaining length 8
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x00,  // property length 0
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 PUBLISH at QoS 1 with RETAIN and the application message properties")
    func qos1WithProperties5() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(
                topicName: "a/b",
                payload: ByteBuffer(string: "hi"),
                qos: .atLeastOnce,
                retain: true,
                packetIdentifier: 1,
                properties: [
                    .payloadFormatIndicator(1),
                    .messageExpiryInterval(60),
                    .topicAlias(3),
                    .responseTopic("r"),
                    .correlationData(ByteBuffer(bytes: [0x01, 0x02])),
                    .userProperty("k", "v"),
                ]
            )
        )
        let expected: [UInt8] = [
            0x33,  // PUBLISH, DUP 0, QoS 1 (0x02), RETAIN 1 (0x01)
            0x24,  // remaining length 36
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x00, 0x01,  // packet identifier 1
            0x1A,  // property length 26
            0x01, 0x01,  // payload format indicator: UTF-8 text
            0x02, 0x00, 0x00, 0x00, 0x3C,  // message expiry interval 60 s
            0x23, 0x00, 0x03,  // topic alias 3
            0x08, 0x00, 0x01, 0x72,  // response topic "r"
            0x09, 0x00, 0x02, 0x01, 0x02,  // correlation data 01 02
            0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,  // user property "k" = "v"
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 PUBLISH at QoS 2 with DUP carries subscription identifiers as variable byte integers")
    func qos2SubscriptionIdentifiers5() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(
                topicName: "a/b",
                payload: ByteBuffer(string: "hi"),
                qos: .exactlyOnce,
                dup: true,
                packetIdentifier: 0x1234,
                properties: [.subscriptionIdentifier(200), .subscriptionIdentifier(16_384)]
            )
        )
        let expected: [UInt8] = [
            0x3C,  // PUBLISH, DUP 1 (0x08), QoS 2 (0x04), RETAIN 0
            0x11,  // remaining length 17
            0x00, 0x03, 0x61, 0x2F, 0x62,  // topic name "a/b"
            0x12, 0x34,  // packet identifier 0x1234
            0x07,  // property length 7
            0x0B, 0xC8, 0x01,  // subscription identifier 200 = 72 + 1 * 128
            0x0B, 0x80, 0x80, 0x01,  // subscription identifier 16384 = 0 + 0 * 128 + 1 * 128^2
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 PUBLISH may leave the topic name empty when a topic alias names the topic")
    func topicAliasOnly5() throws {
        let packet = MQTTPacket.publish(
            PublishPacket(topicName: "", payload: ByteBuffer(string: "hi"), properties: [.topicAlias(5)])
        )
        let expected: [UInt8] = [
            0x30,  // PUBLISH, DUP 0, QoS 0, RETAIN 0
            0x08,  // remaining length 8
            0x00, 0x00,  // topic name "" (zero length)
            0x03,  // property length 3
            0x23, 0x00, 0x05,  // topic alias 5
            0x68, 0x69,  // payload "hi"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
