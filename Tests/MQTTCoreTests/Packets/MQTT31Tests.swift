import MQTTCore
import NIOCore
import Testing

/// MQTT 3.1 (protocol level 3, protocol name `MQIsdp`): byte layouts worked out by hand from the
/// MQTT V3.1 Protocol Specification (IBM/Eurotech, 2010), CONNECT and CONNACK sections.
@Suite("MQTT 3.1 wire format")
struct MQTT31WireFormatTests {
    @Test("3.1 CONNECT carries protocol name MQIsdp and level 3")
    func connect31() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v3_1,
                clientIdentifier: "c1",
                cleanStart: true,
                keepAlive: 60,
                username: "u",
                password: ByteBuffer(string: "p")
            )
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x16,  // remaining length 22
            0x00, 0x06, 0x4D, 0x51, 0x49, 0x73, 0x64, 0x70,  // protocol name "MQIsdp"
            0x03,  // protocol level 3 (3.1)
            0xC2,  // connect flags: user name 0x80, password 0x40, clean session 0x02
            0x00, 0x3C,  // keep alive 60 s
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
            0x00, 0x01, 0x75,  // user name "u"
            0x00, 0x01, 0x70,  // password "p"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: nil)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("a server's decoder learns 3.1 from CONNECT and then decodes 3.1 packets")
    func decoderLearnsVersion() throws {
        var decoder = MQTTPacketDecoder()
        var buffer = ByteBuffer()
        try MQTTPacket.connect(ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "old-device")).write(to: &buffer, version: .v3_1)
        let publish = PublishPacket(topicName: "a/b", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, packetIdentifier: 7)
        try MQTTPacket.publish(publish).write(to: &buffer, version: .v3_1)
        let first = try decoder.decode(buffer: &buffer)
        let second = try decoder.decode(buffer: &buffer)
        guard case .connect(let connect)? = first else {
            Issue.record("expected CONNECT, got \(String(describing: first))")
            return
        }
        #expect(connect.protocolVersion == .v3_1)
        #expect(decoder.version == .v3_1)
        #expect(second == .publish(publish))
    }

    @Test("3.1 CONNACK never carries a session-present flag, and its reserved byte is not checked")
    func connack31() throws {
        let bytes = try WireBytes.encode(.connack(ConnAckPacket(sessionPresent: true, reasonCode: .success)), version: .v3_1)
        #expect(bytes == [0x20, 0x02, 0x00, 0x00])
        let (decoded, _) = try WireBytes.decode([0x20, 0x02, 0x01, 0x00], version: .v3_1)
        #expect(decoded == .connack(ConnAckPacket(sessionPresent: false, reasonCode: .success)))
        let (refused, _) = try WireBytes.decode([0x20, 0x02, 0x00, 0x02], version: .v3_1)
        #expect(refused == .connack(ConnAckPacket(reasonCode: .clientIdentifierNotValid)))
    }

    @Test(
        "protocol name and level must agree: MQIsdp is level 3, MQTT is 4 or 5",
        arguments: [("MQIsdp", UInt8(4)), ("MQIsdp", UInt8(5)), ("MQTT", UInt8(3))]
    )
    func nameAndLevelMismatch(name: String, level: UInt8) throws {
        let body: [UInt8] = [0x00, UInt8(name.utf8.count)] + Array(name.utf8) + [level, 0x02, 0x00, 0x3C, 0x00, 0x01, 0x63]
        let bytes: [UInt8] = [0x10, UInt8(body.count)] + body
        #expect {
            _ = try WireBytes.decode(bytes, version: nil)
        } throws: { error in
            (error as? MQTTDecodingError)?.kind == .unsupportedProtocolVersion
        }
    }

    @Test("3.1 has no AUTH packet")
    func noAuth() throws {
        #expect(throws: MQTTDecodingError.self) { _ = try WireBytes.decode([0xF0, 0x00], version: .v3_1) }
        #expect(throws: MQTTEncodingError.self) { _ = try WireBytes.encode(.auth(AuthPacket(reasonCode: .success)), version: .v3_1) }
    }
}
