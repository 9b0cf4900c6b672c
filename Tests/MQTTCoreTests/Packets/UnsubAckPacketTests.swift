import MQTTCore
import NIOCore
import Testing

/// UNSUBACK byte layouts worked out by hand from MQTT 3.1.1 section 3.11 and MQTT 5.0 section 3.11.
@Suite("UNSUBACK wire format")
struct UnsubAckWireFormatTests {
    @Test("3.1.1 UNSUBACK carries only the packet identifier and no payload")
    func packetIdentifierOnly311() throws {
        let packet = MQTTPacket.unsuback(UnsubAckPacket(packetIdentifier: 5))
        let expected: [UInt8] = [
            0xB0,  // UNSUBACK, flags 0
            0x02,  // remaining length 2
            0x00, 0x05,  // packet identifier 5
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 UNSUBACK with bytes after the packet identifier is refused")
    func payloadRefused311() throws {
        let bytes: [UInt8] = [
            0xB0,  // UNSUBACK, flags 0
            0x03,  // remaining length 3
            0x00, 0x05,  // packet identifier 5
            0x00,  // a 5.0-style reason code, which 3.1.1 does not have
        ]

        #expect(throws: MQTTDecodingError.self) { try WireBytes.decode(bytes, version: .v3_1_1) }
    }

    @Test("5.0 UNSUBACK lists a reason code per topic filter after an empty property list")
    func reasonCodes5() throws {
        let packet = MQTTPacket.unsuback(UnsubAckPacket(packetIdentifier: 6, reasonCodes: [.success, .noSubscriptionExisted]))
        let expected: [UInt8] = [
            0xB0,  // UNSUBACK, flags 0
            0x05,  // remaining length 5
            0x00, 0x06,  // packet identifier 6
            0x00,  // property length 0
            0x00,  // success
            0x11,  // no subscription existed
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 UNSUBACK with a reason string")
    func reasonString5() throws {
        let packet = MQTTPacket.unsuback(
            UnsubAckPacket(packetIdentifier: 7, reasonCodes: [.notAuthorized], properties: [.reasonString("no")])
        )
        let expected: [UInt8] = [
            0xB0,  // UNSUBACK, flags 0
            0x09,  // remaining length 9
            0x00, 0x07,  // packet identifier 7
            0x05,  // property length 5
            0x1F, 0x00, 0x02, 0x6E, 0x6F,  // reason string "no"
            0x87,  // not authorized
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
