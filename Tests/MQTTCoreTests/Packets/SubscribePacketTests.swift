import MQTTCore
import NIOCore
import Testing

/// SUBSCRIBE byte layouts worked out by hand from MQTT 3.1.1 section 3.8 and MQTT 5.0 section 3.8.
@Suite("SUBSCRIBE wire format")
struct SubscribeWireFormatTests {
    @Test("3.1.1 SUBSCRIBE with several topic filters, each followed by its requested QoS")
    func severalFilters311() throws {
        let packet = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 1,
                subscriptions: [
                    Subscription(topicFilter: "a/+", options: SubscriptionOptions(qos: .atLeastOnce)),
                    Subscription(topicFilter: "b/#", options: SubscriptionOptions(qos: .exactlyOnce)),
                    Subscription(topicFilter: "c", options: SubscriptionOptions(qos: .atMostOnce)),
                ]
            )
        )
        let expected: [UInt8] = [
            0x82,  // SUBSCRIBE, flags 0010
            0x12,  // remaining length 18
            0x00, 0x01,  // packet identifier 1
            0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
            0x01,  // requested QoS 1
            0x00, 0x03, 0x62, 0x2F, 0x23,  // topic filter "b/#"
            0x02,  // requested QoS 2
            0x00, 0x01, 0x63,  // topic filter "c"
            0x00,  // requested QoS 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 SUBSCRIBE with a subscription identifier and no local, retain as published and retain handling options")
    func optionsAndSubscriptionIdentifier5() throws {
        let packet = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 2,
                subscriptions: [
                    Subscription(topicFilter: "a/+", options: SubscriptionOptions(qos: .atLeastOnce, noLocal: true)),
                    Subscription(
                        topicFilter: "b/#",
                        options: SubscriptionOptions(qos: .exactlyOnce, retainAsPublished: true, retainHandling: .sendOnNewSubscribe)
                    ),
                    Subscription(topicFilter: "c", options: SubscriptionOptions(qos: .atMostOnce, retainHandling: .doNotSend)),
                ],
                properties: [.subscriptionIdentifier(300)]
            )
        )
        let expected: [UInt8] = [
            0x82,  // SUBSCRIBE, flags 0010
            0x16,  // remaining length 22
            0x00, 0x02,  // packet identifier 2
            0x03,  // property length 3
            0x0B, 0xAC, 0x02,  // subscription identifier 300 = 44 + 2 * 128
            0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
            0x05,  // options: no local (bit 2), QoS 1
            0x00, 0x03, 0x62, 0x2F, 0x23,  // topic filter "b/#"
            0x1A,  // options: retain handling 1 (bits 5-4 = 01), retain as published (bit 3), QoS 2
            0x00, 0x01, 0x63,  // topic filter "c"
            0x20,  // options: retain handling 2 (bits 5-4 = 10), QoS 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 SUBSCRIBE without properties has a zero property length")
    func noProperties5() throws {
        let packet = MQTTPacket.subscribe(
            SubscribePacket(
                packetIdentifier: 3,
                subscriptions: [Subscription(topicFilter: "$share/g/a", options: SubscriptionOptions(qos: .atLeastOnce))]
            )
        )
        let expected: [UInt8] = [
            0x82,  // SUBSCRIBE, flags 0010
            0x10,  // remaining length 16
            0x00, 0x03,  // packet identifier 3
            0x00,  // property length 0
            0x00, 0x0A, 0x24, 0x73, 0x68, 0x61, 0x72, 0x65, 0x2F, 0x67, 0x2F, 0x61,  // topic filter "$share/g/a"
            0x01,  // options: QoS 1
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
