import MQTTCore
import NIOCore
import Testing

/// CONNECT byte layouts worked out by hand from MQTT 3.1.1 section 3.1 and MQTT 5.0 section 3.1.
@Suite("CONNECT wire format")
struct ConnectWireFormatTests {
    // MARK: MQTT 3.1.1

    @Test("3.1.1 CONNECT with a client identifier, clean session and keep alive only")
    func minimal311() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c1", cleanStart: true, keepAlive: 60)
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x0E,  // remaining length 14
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x04,  // protocol level 4 (3.1.1)
            0x02,  // connect flags: clean session
            0x00, 0x3C,  // keep alive 60 s
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 CONNECT with a retained QoS 1 will, user name and password, resuming a session")
    func full311() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v3_1_1,
                clientIdentifier: "c1",
                cleanStart: false,
                keepAlive: 300,
                username: "user",
                password: ByteBuffer(string: "pw"),
                will: .init(topic: "w/t", payload: ByteBuffer(string: "bye"), qos: .atLeastOnce, retain: true)
            )
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x22,  // remaining length 34
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x04,  // protocol level 4 (3.1.1)
            0xEC,  // connect flags: user name 0x80, password 0x40, will retain 0x20, will QoS 1 0x08, will 0x04
            0x01, 0x2C,  // keep alive 300 s
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
            0x00, 0x03, 0x77, 0x2F, 0x74,  // will topic "w/t"
            0x00, 0x03, 0x62, 0x79, 0x65,  // will message "bye"
            0x00, 0x04, 0x75, 0x73, 0x65, 0x72,  // user name "user"
            0x00, 0x02, 0x70, 0x77,  // password "pw"
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("3.1.1 CONNECT with a QoS 2 will that is not retained and keep alive off")
    func willQoS2NoKeepAlive311() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v3_1_1,
                clientIdentifier: "",
                cleanStart: true,
                keepAlive: 0,
                will: .init(topic: "w", payload: ByteBuffer(), qos: .exactlyOnce)
            )
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x11,  // remaining length 17
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x04,  // protocol level 4 (3.1.1)
            0x16,  // connect flags: will QoS 2 0x10, will 0x04, clean session 0x02
            0x00, 0x00,  // keep alive 0: off
            0x00, 0x00,  // client identifier "" (server assigns one)
            0x00, 0x01, 0x77,  // will topic "w"
            0x00, 0x00,  // will message of zero bytes
        ]

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    // MARK: MQTT 5.0

    @Test("5.0 CONNECT with a client identifier, clean start, keep alive and an empty property list")
    func minimal5() throws {
        let packet = MQTTPacket.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "c1", cleanStart: true, keepAlive: 60))
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x0F,  // remaining length 15
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x05,  // protocol version 5
            0x02,  // connect flags: clean start
            0x00, 0x3C,  // keep alive 60 s
            0x00,  // property length 0
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNECT with properties, a will with will properties, user name and password")
    func full5() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v5,
                clientIdentifier: "c1",
                cleanStart: true,
                keepAlive: 30,
                username: "user",
                password: ByteBuffer(string: "pw"),
                will: .init(
                    topic: "w/t",
                    payload: ByteBuffer(string: "bye"),
                    qos: .exactlyOnce,
                    retain: false,
                    properties: [.willDelayInterval(5), .contentType("text/plain")]
                ),
                properties: [.sessionExpiryInterval(3600), .receiveMaximum(20), .userProperty("k", "v")]
            )
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x45,  // remaining length 69
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x05,  // protocol version 5
            0xD6,  // connect flags: user name 0x80, password 0x40, will QoS 2 0x10, will 0x04, clean start 0x02
            0x00, 0x1E,  // keep alive 30 s
            0x0F,  // property length 15
            0x11, 0x00, 0x00, 0x0E, 0x10,  // session expiry interval 3600 s
            0x21, 0x00, 0x14,  // receive maximum 20
            0x26, 0x00, 0x01, 0x6B, 0x00, 0x01, 0x76,  // user property "k" = "v"
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
            0x12,  // will property length 18
            0x18, 0x00, 0x00, 0x00, 0x05,  // will delay interval 5 s
            0x03, 0x00, 0x0A, 0x74, 0x65, 0x78, 0x74, 0x2F, 0x70, 0x6C, 0x61, 0x69, 0x6E,  // content type "text/plain"
            0x00, 0x03, 0x77, 0x2F, 0x74,  // will topic "w/t"
            0x00, 0x03, 0x62, 0x79, 0x65,  // will payload "bye"
            0x00, 0x04, 0x75, 0x73, 0x65, 0x72,  // user name "user"
            0x00, 0x02, 0x70, 0x77,  // password "pw"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNECT with a retained will without will properties, resuming a session")
    func willWithoutProperties5() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(
                protocolVersion: .v5,
                clientIdentifier: "c1",
                cleanStart: false,
                keepAlive: 60,
                will: .init(topic: "w", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, retain: true)
            )
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x16,  // remaining length 22
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x05,  // protocol version 5
            0x2C,  // connect flags: will retain 0x20, will QoS 1 0x08, will 0x04
            0x00, 0x3C,  // keep alive 60 s
            0x00,  // property length 0
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
            0x00,  // will property length 0
            0x00, 0x01, 0x77,  // will topic "w"
            0x00, 0x01, 0x78,  // will payload "x"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("5.0 CONNECT may carry a password without a user name")
    func passwordWithoutUsername5() throws {
        let packet = MQTTPacket.connect(
            ConnectPacket(protocolVersion: .v5, clientIdentifier: "c1", cleanStart: true, keepAlive: 60, password: ByteBuffer(string: "pw"))
        )
        let expected: [UInt8] = [
            0x10,  // CONNECT, flags 0
            0x13,  // remaining length 19
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x05,  // protocol version 5
            0x42,  // connect flags: password 0x40, clean start 0x02
            0x00, 0x3C,  // keep alive 60 s
            0x00,  // property length 0
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
            0x00, 0x02, 0x70, 0x77,  // password "pw"
        ]

        let bytes = try WireBytes.encode(packet, version: .v5)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("A server learns the protocol version from the CONNECT it decodes first")
    func versionFromConnect() throws {
        let connect311: [UInt8] = [
            0x10, 0x0E,  // CONNECT, remaining length 14
            0x00, 0x04, 0x4D, 0x51, 0x54, 0x54,  // protocol name "MQTT"
            0x04,  // protocol level 4 (3.1.1)
            0x02,  // connect flags: clean session
            0x00, 0x3C,  // keep alive 60 s
            0x00, 0x02, 0x63, 0x31,  // client identifier "c1"
        ]
        let (decoded, unread) = try WireBytes.decode(connect311, version: nil)
        guard case .connect(let connect) = decoded else {
            Issue.record("expected CONNECT, got \(String(describing: decoded))")
            return
        }
        #expect(connect.protocolVersion == .v3_1_1)
        #expect(unread == 0)
    }
}
