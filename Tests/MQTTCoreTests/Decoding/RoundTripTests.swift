import NIOCore
import Testing

@testable import MQTTCore

@Suite("Round trips of every packet")
struct RoundTripTests {
    @Test("every packet decodes to what was encoded", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func roundTrip(version: MQTTProtocolVersion) throws {
        for packet in SamplePackets.all(for: version) {
            var buffer = try packet.encoded(version)
            #expect(buffer.readableBytes == (try packet.encodedSize(version: version)), "\(packet)")
            let decoded = try MQTTPacket.read(from: &buffer, version: version)
            #expect(decoded == packet)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test("a server-side decoder learns the protocol version from CONNECT", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func learnsVersion(version: MQTTProtocolVersion) throws {
        var decoder = MQTTPacketDecoder()
        #expect(decoder.version == nil)
        var buffer = try MQTTPacket.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "c")).encoded(version)
        let subscribe = MQTTPacket.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "a/#")]))
        var next = try subscribe.encoded(version)
        buffer.writeBuffer(&next)
        guard case .connect = try decoder.decode(buffer: &buffer) else {
            Issue.record("first packet is not CONNECT")
            return
        }
        #expect(decoder.version == version)
        #expect(try decoder.decode(buffer: &buffer) == subscribe)
        #expect(try decoder.decode(buffer: &buffer) == nil)
    }

    @Test("3.1.1 drops what only 5.0 can carry")
    func v311DropsV5Fields() throws {
        let packet = MQTTPacket.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.notAuthorized], properties: [.reasonString("no")]))
        var buffer = try packet.encoded(.v3_1_1)
        #expect(Array(buffer.readableBytesView) == [0x90, 0x03, 0x00, 0x01, 0x80])
        #expect(
            try MQTTPacket.read(from: &buffer, version: .v3_1_1) == .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.unspecifiedError]))
        )
    }

    @Test("a 3.1.1 CONNACK carries the closest return code to a 5.0 reason code")
    func connAckReturnCodes() throws {
        let cases: [(ReasonCode, UInt8)] = [
            (.success, 0), (.unsupportedProtocolVersion, 1), (.clientIdentifierNotValid, 2), (.serverUnavailable, 3),
            (.serverBusy, 3), (.badUserNameOrPassword, 4), (.notAuthorized, 5), (.banned, 5),
        ]
        for (code, expected) in cases {
            let buffer = try MQTTPacket.connack(ConnAckPacket(reasonCode: code)).encoded(.v3_1_1)
            #expect(Array(buffer.readableBytesView) == [0x20, 0x02, 0x00, expected], "\(code)")
        }
    }

    @Test("encoding a field that does not fit the wire throws and writes nothing")
    func encodingErrors() {
        var buffer = ByteBuffer(string: "kept")
        let long = String(repeating: "a", count: 65_536)
        let unfit: [MQTTPacket] = [
            .publish(PublishPacket(topicName: long, payload: ByteBuffer())),
            .publish(PublishPacket(topicName: "a", payload: ByteBuffer(), properties: [.userProperty("k", long)])),
            .connect(ConnectPacket(clientIdentifier: long)),
            .publish(PublishPacket(topicName: "a", payload: ByteBuffer(), qos: .atLeastOnce)),
            .subscribe(
                SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "a")], properties: [.subscriptionIdentifier(0)])
            ),
        ]
        for packet in unfit {
            #expect(throws: MQTTEncodingError.self) { try packet.write(to: &buffer, version: .v5) }
        }
        #expect(throws: MQTTEncodingError.self) { try MQTTPacket.auth(AuthPacket()).write(to: &buffer, version: .v3_1_1) }
        #expect(String(buffer: buffer) == "kept")
    }

    @Test("a decoded payload is a slice of the received bytes, not a copy")
    func payloadIsSlice() throws {
        let packet = MQTTPacket.publish(PublishPacket(topicName: "t", payload: ByteBuffer(repeating: 0x41, count: 600)))
        var buffer = try packet.encoded(.v5)
        let storage = buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        guard case .publish(let decoded) = try MQTTPacket.read(from: &buffer, version: .v5) else {
            Issue.record("not a PUBLISH")
            return
        }
        let payloadStart = decoded.payload.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        // Fixed header (1 + 2-byte remaining length), topic (2 + 1), property length (1).
        #expect(payloadStart == storage + 3 + 3 + 1)
        #expect(decoded.payload.readableBytes == 600)
    }
}
