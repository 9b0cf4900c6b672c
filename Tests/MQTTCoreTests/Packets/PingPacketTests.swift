import MQTTCore
import NIOCore
import Testing

/// PINGREQ and PINGRESP byte layouts worked out by hand from MQTT 3.1.1 sections 3.12-3.13
/// and MQTT 5.0 sections 3.12-3.13: a fixed header and nothing else, the same in both versions.
@Suite("PINGREQ and PINGRESP wire format")
struct PingWireFormatTests {
    @Test(
        "PINGREQ is two bytes in both versions",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func pingreq(version: MQTTProtocolVersion) throws {
        let expected: [UInt8] = [
            0xC0,  // PINGREQ, flags 0
            0x00,  // remaining length 0
        ]

        let bytes = try WireBytes.encode(.pingreq, version: version)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: version)
        #expect(decoded == .pingreq)
        #expect(unread == 0)
    }

    @Test(
        "PINGRESP is two bytes in both versions",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func pingresp(version: MQTTProtocolVersion) throws {
        let expected: [UInt8] = [
            0xD0,  // PINGRESP, flags 0
            0x00,  // remaining length 0
        ]

        let bytes = try WireBytes.encode(.pingresp, version: version)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: version)
        #expect(decoded == .pingresp)
        #expect(unread == 0)
    }

    @Test(
        "PINGREQ with a body is refused",
        arguments: [MQTTProtocolVersion.v3_1_1, .v5]
    )
    func pingreqWithBody(version: MQTTProtocolVersion) throws {
        let bytes: [UInt8] = [
            0xC0,  // PINGREQ, flags 0
            0x01,  // remaining length 1
            0x00,  // a byte PINGREQ may not have
        ]

        #expect(throws: MQTTDecodingError.self) { try WireBytes.decode(bytes, version: version) }
    }
}
