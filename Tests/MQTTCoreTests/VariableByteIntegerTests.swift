import MQTTCore
import NIOCore
import Testing

/// Variable byte integer boundaries (MQTT 3.1.1 section 2.2.3, MQTT 5.0 section 1.5.5), checked
/// through the remaining length of a 3.1.1 QoS 0 PUBLISH to topic "a" whose payload is sized
/// to make the remaining length the value under test.
@Suite("Variable byte integer boundaries")
struct VariableByteIntegerWireFormatTests {
    /// The topic name field of every PUBLISH here: "a".
    static let topicField: [UInt8] = [0x00, 0x01, 0x61]
    /// The payload byte repeated to fill the packet.
    static let fill: UInt8 = 0x2A

    /// A PUBLISH whose remaining length is `remainingLength`.
    static func publish(remainingLength: Int) -> MQTTPacket {
        let payload = ByteBuffer(repeating: fill, count: remainingLength - topicField.count)
        return .publish(PublishPacket(topicName: "a", payload: payload))
    }

    @Test("Remaining length 0 is the single byte 0x00")
    func zero() throws {
        let expected: [UInt8] = [
            0xC0,  // PINGREQ, flags 0
            0x00,  // remaining length 0
        ]

        let bytes = try WireBytes.encode(.pingreq, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == .pingreq)
        #expect(unread == 0)
    }

    @Test("Remaining length 127 is the largest one-byte value")
    func oneByteMaximum() throws {
        let packet = Self.publish(remainingLength: 127)
        let expected: [UInt8] =
            [
                0x30,  // PUBLISH, QoS 0
                0x7F,  // remaining length 127
            ] + Self.topicField + [UInt8](repeating: Self.fill, count: 124)

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test("Remaining length 128 is the smallest two-byte value, least significant group first")
    func twoByteMinimum() throws {
        let packet = Self.publish(remainingLength: 128)
        let expected: [UInt8] =
            [
                0x30,  // PUBLISH, QoS 0
                0x80, 0x01,  // remaining length 128 = 0 + 1 * 128
            ] + Self.topicField + [UInt8](repeating: Self.fill, count: 125)

        let bytes = try WireBytes.encode(packet, version: .v3_1_1)
        #expect(bytes == expected)
        let (decoded, unread) = try WireBytes.decode(expected, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(unread == 0)
    }

    @Test(
        "Remaining length at each size boundary encodes in the fewest bytes",
        arguments: [
            (127, [0x7F] as [UInt8]),  // largest 1-byte value
            (128, [0x80, 0x01]),  // smallest 2-byte value
            (16_383, [0xFF, 0x7F]),  // largest 2-byte value: 127 + 127 * 128
            (16_384, [0x80, 0x80, 0x01]),  // smallest 3-byte value: 1 * 128^2
            (2_097_151, [0xFF, 0xFF, 0x7F]),  // largest 3-byte value
            (2_097_152, [0x80, 0x80, 0x80, 0x01]),  // smallest 4-byte value: 1 * 128^3
            (268_435_455, [0xFF, 0xFF, 0xFF, 0x7F]),  // largest 4-byte value, the most MQTT allows
        ]
    )
    func boundary(remainingLength: Int, lengthBytes: [UInt8]) throws {
        let packet = Self.publish(remainingLength: remainingLength)
        let header: [UInt8] = [0x30] + lengthBytes + Self.topicField  // PUBLISH QoS 0, remaining length, topic "a"

        var encoded = ByteBuffer()
        try packet.write(to: &encoded, version: .v3_1_1)
        #expect(encoded.getBytes(at: encoded.readerIndex, length: header.count) == header)
        #expect(encoded.readableBytes == 1 + lengthBytes.count + remainingLength)
        #expect(try packet.encodedSize(version: .v3_1_1) == 1 + lengthBytes.count + remainingLength)

        var handWritten = ByteBuffer(bytes: header)
        handWritten.writeRepeatingByte(Self.fill, count: remainingLength - Self.topicField.count)
        let decoded = try MQTTPacket.read(from: &handWritten, version: .v3_1_1)
        #expect(decoded == packet)
        #expect(handWritten.readableBytes == 0)
    }

    @Test("A body one byte over 268,435,455 cannot be encoded")
    func overMaximum() throws {
        let packet = Self.publish(remainingLength: 268_435_456)
        var buffer = ByteBuffer()
        #expect(throws: MQTTEncodingError.self) { try packet.write(to: &buffer, version: .v3_1_1) }
        #expect(buffer.readableBytes == 0)
    }

    @Test("A remaining length that runs into a fifth byte is refused")
    func fiveBytesRefused() throws {
        let bytes: [UInt8] = [
            0x30,  // PUBLISH, QoS 0
            0xFF, 0xFF, 0xFF, 0xFF, 0x7F,  // five length bytes: the fourth still says "more follows"
        ]

        let error = #expect(throws: MQTTDecodingError.self) { try WireBytes.decode(bytes, version: .v3_1_1) }
        #expect(error?.kind == .variableByteIntegerTooLong)
    }

    @Test("A remaining length cut off after a continuation byte waits for more bytes")
    func incompleteLengthWaits() throws {
        let bytes: [UInt8] = [
            0x30,  // PUBLISH, QoS 0
            0x80,  // first length byte says "more follows", and nothing follows yet
        ]

        let (decoded, unread) = try WireBytes.decode(bytes, version: .v3_1_1)
        #expect(decoded == nil)
        #expect(unread == bytes.count)
    }
}
