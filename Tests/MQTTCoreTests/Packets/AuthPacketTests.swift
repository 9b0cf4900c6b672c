import MQTTCore
import NIOCore
import Testing

/// AUTH byte layouts worked out by hand from MQTT 5.0 section 3.15; in MQTT 3.1.1 (section 2.2.1)
/// packet type 15 is reserved.
@Suite("AUTH wire format")
struct AuthWireFormatTests {
    @Test("5.0 AUTH with an empty body means success")
    func empty5() throws {
        let packet = MQTTPacket.auth(AuthPacket(reasonCode: .success))
        let expected: [UInt8] = [
            0xF0,  // AUTH, flags 0
            0x00,  // remaining length 0: reason code 0x00, no properties
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 AUTH continuing authentication with a method and data")
    func continueAuthentication5() throws {
        let packet = MQTTPacket.auth(
            AuthPacket(
                reasonCode: .continueAuthentication,
                properties: [.authenticationMethod("SCRAM"), .authenticationData(ByteBuffer(bytes: [0x01, 0x02, 0x03]))]
            )
        )
        let expected: [UInt8] = [
            0xF0,  // AUTH, flags 0
            0x10,  // remaining length 16
            0x18,  // reason code 0x18 continue authentication
            0x0E,  // property length 14
            0x15, 0x00, 0x05, 0x53, 0x43, 0x52, 0x41, 0x4D,  // authentication method "SCRAM"
            0x16, 0x00, 0x03, 0x01, 0x02, 0x03,  // authentication data 01 02 03
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 AUTH asking to re-authenticate with a method")
    func reAuthenticate5() throws {
        let packet = MQTTPacket.auth(AuthPacket(reasonCode: .reAuthenticate, properties: [.authenticationMethod("SCRAM")]))
        let expected: [UInt8] = [
            0xF0,  // AUTH, flags 0
            0x0A,  // remaining length 10
            0x19,  // reason code 0x19 re-authenticate
            0x08,  // property length 8
            0x15, 0x00, 0x05, 0x53, 0x43, 0x52, 0x41, 0x4D,  // authentication method "SCRAM"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 has no AUTH: packet type 15 is refused when decoding")
    func reservedWhenDecoding311() throws {
        let bytes: [UInt8] = [
            0xF0,  // packet type 15, reserved in 3.1.1
            0x00,  // remaining length 0
        ]

        let error = #expect(throws: MQTTDecodingError.self) { try WireBytes.decode(bytes, version: .v3_1_1) }
        #expect(error?.kind == .reservedPacketType)
    }

    @Test("3.1.1 has no AUTH: encoding one fails")
    func refusedWhenEncoding311() throws {
        #expect(throws: MQTTEncodingError.self) { try WireBytes.encode(.auth(AuthPacket()), version: .v3_1_1) }
    }
}
