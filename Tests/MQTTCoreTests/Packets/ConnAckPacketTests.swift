import MQTTCore
import NIOCore
import Testing

/// CONNACK byte layouts worked out by hand from MQTT 3.1.1 section 3.2 and MQTT 5.0 section 3.2.
@Suite("CONNACK wire format")
struct ConnAckWireFormatTests {
    // MARK: MQTT 3.1.1

    @Test("3.1.1 CONNACK accepting a connection with a session present")
    func acceptedSessionPresent311() throws {
        let packet = MQTTPacket.connack(ConnAckPacket(sessionPresent: true, reasonCode: .success))
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x02,  // remaining length 2
            0x01,  // acknowledge flags: session present
            0x00,  // return code 0: accepted
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test(
        "3.1.1 CONNACK refusing a connection carries the 3.1.1 return code",
        arguments: [
            (ReasonCode.unsupportedProtocolVersion, UInt8(0x01)),  // unacceptable protocol version
            (ReasonCode.clientIdentifierNotValid, UInt8(0x02)),  // identifier rejected
            (ReasonCode.serverUnavailable, UInt8(0x03)),  // server unavailable
            (ReasonCode.badUserNameOrPassword, UInt8(0x04)),  // bad user name or password
            (ReasonCode.notAuthorized, UInt8(0x05)),  // not authorized
        ]
    )
    func refused311(reasonCode: ReasonCode, returnCode: UInt8) throws {
        let packet = MQTTPacket.connack(ConnAckPacket(sessionPresent: false, reasonCode: reasonCode))
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x02,  // remaining length 2
            0x00,  // acknowledge flags: no session present
            returnCode,  // return code
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    // MARK: MQTT 5.0

    @Test("5.0 CONNACK with success, a session present and an empty property list")
    func successSessionPresent5() throws {
        let packet = MQTTPacket.connack(ConnAckPacket(sessionPresent: true, reasonCode: .success))
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x03,  // remaining length 3
            0x01,  // acknowledge flags: session present
            0x00,  // reason code 0x00 success
            0x00,  // property length 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNACK with an assigned client identifier and a topic alias maximum")
    func successWithProperties5() throws {
        let packet = MQTTPacket.connack(
            ConnAckPacket(
                sessionPresent: false,
                reasonCode: .success,
                properties: [.assignedClientIdentifier("auto-1"), .topicAliasMaximum(10)]
            )
        )
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x0F,  // remaining length 15
            0x00,  // acknowledge flags: no session present
            0x00,  // reason code 0x00 success
            0x0C,  // property length 12
            0x12, 0x00, 0x06, 0x61, 0x75, 0x74, 0x6F, 0x2D, 0x31,  // assigned client identifier "auto-1"
            0x22, 0x00, 0x0A,  // topic alias maximum 10
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNACK refusing a connection with a reason code and a reason string")
    func refusedWithReasonString5() throws {
        let packet = MQTTPacket.connack(
            ConnAckPacket(sessionPresent: false, reasonCode: .badUserNameOrPassword, properties: [.reasonString("denied")])
        )
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x0C,  // remaining length 12
            0x00,  // acknowledge flags: no session present
            0x86,  // reason code 0x86 bad user name or password
            0x09,  // property length 9
            0x1F, 0x00, 0x06, 0x64, 0x65, 0x6E, 0x69, 0x65, 0x64,  // reason string "denied"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNACK refusing a connection with only a reason code")
    func refused5() throws {
        let packet = MQTTPacket.connack(ConnAckPacket(sessionPresent: false, reasonCode: .serverBusy))
        let expected: [UInt8] = [
            0x20,  // CONNACK, flags 0
            0x03,  // remaining length 3
            0x00,  // acknowledge flags: no session present
            0x89,  // reason code 0x89 server busy
            0x00,  // property length 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }
}
