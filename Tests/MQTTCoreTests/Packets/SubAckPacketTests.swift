import MQTTCore
import NIOCore
import Testing

/// SUBACK byte layouts worked out by hand from MQTT 3.1.1 section 3.9 and MQTT 5.0 section 3.9.
@Suite("SUBACK wire format")
struct SubAckWireFormatTests {
    @Test("3.1.1 SUBACK lists a granted QoS or 0x80 failure per topic filter")
    func returnCodes311() throws {
        let packet = MQTTPacket.suback(
            SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .grantedQoS2, .unspecifiedError, .grantedQoS0])
        )
        let expected: [UInt8] = [
            0x90,  // SUBACK, flags 0
            0x06,  // remaining length 6
            0x00, 0x01,  // packet identifier 1
            0x01,  // success, maximum QoS 1
            0x02,  // success, maximum QoS 2
            0x80,  // failure
            0x00,  // success, maximum QoS 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 SUBACK sends any failure as 0x80, the only failure code 3.1.1 has")
    func failureCodes311() throws {
        let packet = MQTTPacket.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.notAuthorized, .topicFilterInvalid]))
        let expected: [UInt8] = [
            0x90,  // SUBACK, flags 0
            0x04,  // remaining length 4
            0x00, 0x01,  // packet identifier 1
            0x80,  // failure
            0x80,  // failure
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.unspecifiedError, .unspecifiedError])))
        #expect(unread == 0)
    }

    @Test("5.0 SUBACK lists a reason code per topic filter after an empty property list")
    func reasonCodes5() throws {
        let packet = MQTTPacket.suback(
            SubAckPacket(
                packetIdentifier: 2,
                reasonCodes: [.grantedQoS0, .grantedQoS1, .grantedQoS2, .notAuthorized, .subscriptionIdentifiersNotSupported]
            )
        )
        let expected: [UInt8] = [
            0x90,  // SUBACK, flags 0
            0x08,  // remaining length 8
            0x00, 0x02,  // packet identifier 2
            0x00,  // property length 0
            0x00,  // granted QoS 0
            0x01,  // granted QoS 1
            0x02,  // granted QoS 2
            0x87,  // not authorized
            0xA1,  // subscription identifiers not supported
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 SUBACK with a reason string")
    func reasonString5() throws {
        let packet = MQTTPacket.suback(
            SubAckPacket(packetIdentifier: 3, reasonCodes: [.quotaExceeded], properties: [.reasonString("quota")])
        )
        let expected: [UInt8] = [
            0x90,  // SUBACK, flags 0
            0x0C,  // remaining length 12
            0x00, 0x03,  // packet identifier 3
            0x08,  // property length 8
            0x1F, 0x00, 0x05, 0x71, 0x75, 0x6F, 0x74, 0x61,  // reason string "quota"
            0x97,  // quota exceeded
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
