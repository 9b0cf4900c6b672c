import MQTTCore
import NIOCore
import Testing

/// DISCONNECT byte layouts worked out by hand from MQTT 3.1.1 section 3.14 and MQTT 5.0 section 3.14.
@Suite("DISCONNECT wire format")
struct DisconnectWireFormatTests {
    // MARK: MQTT 3.1.1

    @Test("3.1.1 DISCONNECT is a fixed header with remaining length 0")
    func empty311() throws {
        let packet = MQTTPacket.disconnect(DisconnectPacket())
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x00,  // remaining length 0
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 DISCONNECT with a body is refused")
    func bodyRefused311() throws {
        let bytes: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x01,  // remaining length 1
            0x04,  // a 5.0 reason code, which 3.1.1 does not have
        ]

        #expect(throws: MQTTDecodingError.self) { try WireBytes.decode(bytes, version: .v3_1_1) }
    }

    // MARK: MQTT 5.0

    @Test("5.0 DISCONNECT with an empty body means normal disconnection")
    func empty5() throws {
        let packet = MQTTPacket.disconnect(DisconnectPacket(reasonCode: .normalDisconnection))
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x00,  // remaining length 0: reason code 0x00, no properties
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 DISCONNECT with only a reason code leaves out the property length")
    func reasonCodeOnly5() throws {
        let packet = MQTTPacket.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage))
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x01,  // remaining length 1
            0x04,  // reason code 0x04 disconnect with will message
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 DISCONNECT with normal disconnection and a session expiry interval")
    func sessionExpiry5() throws {
        let packet = MQTTPacket.disconnect(
            DisconnectPacket(reasonCode: .normalDisconnection, properties: [.sessionExpiryInterval(120)])
        )
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x07,  // remaining length 7
            0x00,  // reason code 0x00 normal disconnection
            0x05,  // property length 5
            0x11, 0x00, 0x00, 0x00, 0x78,  // session expiry interval 120 s
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 DISCONNECT from a server pointing the client to another server")
    func serverReference5() throws {
        let packet = MQTTPacket.disconnect(
            DisconnectPacket(reasonCode: .useAnotherServer, properties: [.serverReference("b")])
        )
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x06,  // remaining length 6
            0x9C,  // reason code 0x9C use another server
            0x04,  // property length 4
            0x1C, 0x00, 0x01, 0x62,  // server reference "b"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 DISCONNECT with a reason code and an explicit zero property length decodes like the 1-byte form")
    func explicitEmptyPropertyLength5() throws {
        let expected: [UInt8] = [
            0xE0,  // DISCONNECT, flags 0
            0x02,  // remaining length 2
            0x04,  // reason code 0x04 disconnect with will message
            0x00,  // property length 0
        ]

        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)))
        #expect(unread == 0)
    }
}
