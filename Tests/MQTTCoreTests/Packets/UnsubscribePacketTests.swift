import MQTTCore
import NIOCore
import Testing

/// UNSUBSCRIBE byte layouts worked out by hand from MQTT 3.1.1 section 3.10 and MQTT 5.0 section 3.10.
@Suite("UNSUBSCRIBE wire format")
struct UnsubscribeWireFormatTests {
    @Test("3.1.1 UNSUBSCRIBE lists topic filters without options")
    func severalFilters311() throws {
        let packet = MQTTPacket.unsubscribe(UnsubscribePacket(packetIdentifier: 5, topicFilters: ["a/+", "b"]))
        let expected: [UInt8] = [
            0xA2,  // UNSUBSCRIBE, flags 0010
            0x0A,  // remaining length 10
            0x00, 0x05,  // packet identifier 5
            0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
            0x00, 0x01, 0x62,  // topic filter "b"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 UNSUBSCRIBE with a user property")
    func userProperty5() throws {
        let packet = MQTTPacket.unsubscribe(
            UnsubscribePacket(packetIdentifier: 6, topicFilters: ["a/+", "b"], properties: [.userProperty("k", "v")])
        )
        let expected: [UInt8] = [
            0xA2,  // UNSUBSCRIBE, flags 0010
            0x12,  // remaining length 18
            0x00, 0x06,  // packet identifier 6
            0x07,  // property length 7
            0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,  // user property "k" = "v"
            0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
            0x00, 0x01, 0x62,  // topic filter "b"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 UNSUBSCRIBE without properties has a zero property length")
    func noProperties5() throws {
        let packet = MQTTPacket.unsubscribe(UnsubscribePacket(packetIdentifier: 7, topicFilters: ["a/+"]))
        let expected: [UInt8] = [
            0xA2,  // UNSUBSCRIBE, flags 0010
            0x08,  // remaining length 8
            0x00, 0x07,  // packet identifier 7
            0x00,  // property length 0
            0x00, 0x03, 0x61, 0x2F, 0x2B,  // topic filter "a/+"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
