import NIOCore
import Testing

@testable import MQTTCore

/// One malformed input and the error it must raise.
struct MalformedCase: Sendable, CustomTestStringConvertible {
    let name: String
    let version: MQTTProtocolVersion?
    let bytes: [UInt8]
    let kind: MQTTDecodingError.Kind
    let reasonCode: ReasonCode

    var testDescription: String { name }
}

/// A packet with a one-byte remaining length computed from `body`.
private func packet(_ first: UInt8, _ body: [UInt8]) -> [UInt8] {
    precondition(body.count < 128)
    return [first, UInt8(body.count)] + body
}

/// A two-byte-length string field.
private func str(_ bytes: [UInt8]) -> [UInt8] { [0, UInt8(bytes.count)] + bytes }
private func str(_ text: String) -> [UInt8] { str(Array(text.utf8)) }

/// A v5 PUBLISH (QoS 0, topic "t") carrying `properties` (raw bytes, without the length).
private func publishV5(properties: [UInt8]) -> [UInt8] {
    packet(0x30, str("t") + [UInt8(properties.count)] + properties + Array("x".utf8))
}

private let connectHeader311: [UInt8] = str("MQTT") + [4]

let malformedCases: [MalformedCase] = [
    // Fixed header
    .init(
        name: "PINGREQ with reserved flag bit set",
        version: .v5,
        bytes: [0xC1, 0x00],
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "SUBSCRIBE with flags 0000",
        version: .v5,
        bytes: packet(0x80, [0, 1] + [0] + str("a") + [0]),
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "PUBREL with flags 0000",
        version: .v3_1_1,
        bytes: packet(0x60, [0, 1]),
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "UNSUBSCRIBE with flags 0011",
        version: .v3_1_1,
        bytes: packet(0xA3, [0, 1] + str("a")),
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "CONNACK with flag bit set",
        version: .v3_1_1,
        bytes: [0x28, 0x02, 0x00, 0x00],
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "variable byte integer of 5 bytes",
        version: .v5,
        bytes: [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        kind: .variableByteIntegerTooLong,
        reasonCode: .malformedPacket
    ),
    .init(name: "reserved packet type 0", version: .v5, bytes: [0x00, 0x00], kind: .reservedPacketType, reasonCode: .malformedPacket),
    .init(name: "packet type 15 (AUTH) in 3.1.1", version: .v3_1_1, bytes: [0xF0, 0x00], kind: .reservedPacketType, reasonCode: .malformedPacket),
    .init(name: "PINGREQ with a body", version: .v5, bytes: [0xC0, 0x01, 0x00], kind: .unexpectedBody, reasonCode: .malformedPacket),
    .init(name: "PINGRESP with a body", version: .v3_1_1, bytes: [0xD0, 0x01, 0x00], kind: .unexpectedBody, reasonCode: .malformedPacket),
    .init(name: "3.1.1 DISCONNECT with a body", version: .v3_1_1, bytes: [0xE0, 0x01, 0x00], kind: .unexpectedBody, reasonCode: .malformedPacket),
    .init(name: "first packet is not CONNECT", version: nil, bytes: [0xC0, 0x00], kind: .firstPacketNotConnect, reasonCode: .protocolError),

    // Remaining length against content
    .init(
        name: "remaining length shorter than the topic",
        version: .v3_1_1,
        bytes: [0x30, 0x03, 0x00, 0x05, 0x61],
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 PUBACK with a trailing byte",
        version: .v3_1_1,
        bytes: packet(0x40, [0, 1, 0]),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 UNSUBACK with a trailing byte",
        version: .v3_1_1,
        bytes: packet(0xB0, [0, 1, 0]),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 CONNACK with a trailing byte",
        version: .v3_1_1,
        bytes: packet(0x20, [0, 0, 0]),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "PUBACK shorter than a packet identifier",
        version: .v5,
        bytes: packet(0x40, [0]),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "CONNECT cut inside the client identifier",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x02, 0, 60] + [0, 5] + Array("ab".utf8)),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),

    // Strings
    .init(
        name: "invalid UTF-8 in a topic name",
        version: .v3_1_1,
        bytes: packet(0x30, str([0xC3, 0x28])),
        kind: .invalidUTF8,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "overlong UTF-8 encoding of '/'",
        version: .v5,
        bytes: packet(0x30, str([0x61, 0xC0, 0xAF]) + [0]),
        kind: .invalidUTF8,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "UTF-8 encoded surrogate U+D800",
        version: .v5,
        bytes: packet(0x30, str([0xED, 0xA0, 0x80]) + [0]),
        kind: .invalidUTF8,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "U+0000 in a topic name",
        version: .v3_1_1,
        bytes: packet(0x30, str([0x61, 0x00, 0x62])),
        kind: .nullCharacter,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "U+0000 in a client identifier",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x02, 0, 60] + str([0x61, 0x00])),
        kind: .nullCharacter,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "invalid UTF-8 in a topic filter",
        version: .v3_1_1,
        bytes: packet(0x82, [0, 1] + str([0xFF]) + [0]),
        kind: .invalidUTF8,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "invalid UTF-8 in a user property",
        version: .v5,
        bytes: publishV5(properties: [0x26] + str("k") + str([0xFE])),
        kind: .invalidUTF8,
        reasonCode: .malformedPacket
    ),

    // Topic names
    .init(
        name: "'+' in a PUBLISH topic name",
        version: .v3_1_1,
        bytes: packet(0x30, str("a/+")),
        kind: .wildcardInTopicName,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "'#' in a PUBLISH topic name",
        version: .v5,
        bytes: packet(0x30, str("a/#") + [0]),
        kind: .wildcardInTopicName,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "wildcard in a will topic",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x06, 0, 60] + str("c") + str("w/#") + str("x")),
        kind: .wildcardInTopicName,
        reasonCode: .malformedPacket
    ),
    .init(name: "empty topic name in 3.1.1", version: .v3_1_1, bytes: packet(0x30, str("")), kind: .emptyTopicName, reasonCode: .protocolError),
    .init(
        name: "empty topic name without topic alias in 5.0",
        version: .v5,
        bytes: packet(0x30, str("") + [0]),
        kind: .emptyTopicName,
        reasonCode: .protocolError
    ),

    // QoS
    .init(name: "PUBLISH with QoS 3", version: .v3_1_1, bytes: packet(0x36, str("a") + [0, 1]), kind: .invalidQoS, reasonCode: .malformedPacket),
    .init(
        name: "will QoS 3",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x1E, 0, 60] + str("c") + str("w") + str("x")),
        kind: .invalidQoS,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "subscription with QoS 3",
        version: .v5,
        bytes: packet(0x82, [0, 1, 0] + str("a") + [0x03]),
        kind: .invalidQoS,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "DUP set on a QoS 0 PUBLISH",
        version: .v3_1_1,
        bytes: packet(0x38, str("a")),
        kind: .invalidFixedHeaderFlags,
        reasonCode: .malformedPacket
    ),

    // Packet identifiers
    .init(
        name: "QoS 1 PUBLISH with packet identifier 0",
        version: .v3_1_1,
        bytes: packet(0x32, str("a") + [0, 0]),
        kind: .packetIdentifierZero,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "PUBACK with packet identifier 0",
        version: .v5,
        bytes: packet(0x40, [0, 0]),
        kind: .packetIdentifierZero,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "SUBSCRIBE with packet identifier 0",
        version: .v3_1_1,
        bytes: packet(0x82, [0, 0] + str("a") + [0]),
        kind: .packetIdentifierZero,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "UNSUBSCRIBE with packet identifier 0",
        version: .v5,
        bytes: packet(0xA2, [0, 0, 0] + str("a")),
        kind: .packetIdentifierZero,
        reasonCode: .malformedPacket
    ),

    // Topic filter lists
    .init(
        name: "SUBSCRIBE without topic filters (3.1.1)",
        version: .v3_1_1,
        bytes: packet(0x82, [0, 1]),
        kind: .noTopicFilters,
        reasonCode: .protocolError
    ),
    .init(
        name: "SUBSCRIBE without topic filters (5.0)",
        version: .v5,
        bytes: packet(0x82, [0, 1, 0]),
        kind: .noTopicFilters,
        reasonCode: .protocolError
    ),
    .init(
        name: "UNSUBSCRIBE without topic filters",
        version: .v3_1_1,
        bytes: packet(0xA2, [0, 1]),
        kind: .noTopicFilters,
        reasonCode: .protocolError
    ),
    .init(
        name: "SUBSCRIBE with a filter but no options byte",
        version: .v3_1_1,
        bytes: packet(0x82, [0, 1] + str("a")),
        kind: .remainingLengthMismatch,
        reasonCode: .malformedPacket
    ),

    // Subscription options
    .init(
        name: "3.1.1 subscription with reserved option bits",
        version: .v3_1_1,
        bytes: packet(0x82, [0, 1] + str("a") + [0x04]),
        kind: .malformed,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "5.0 subscription with reserved option bits 6-7",
        version: .v5,
        bytes: packet(0x82, [0, 1, 0] + str("a") + [0x40]),
        kind: .malformed,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "retain handling 3",
        version: .v5,
        bytes: packet(0x82, [0, 1, 0] + str("a") + [0x30]),
        kind: .invalidSubscriptionOptions,
        reasonCode: .protocolError
    ),

    // Properties
    .init(
        name: "session expiry interval in PUBLISH",
        version: .v5,
        bytes: publishV5(properties: [0x11, 0, 0, 0, 10]),
        kind: .propertyNotAllowed,
        reasonCode: .protocolError
    ),
    .init(
        name: "will delay interval in CONNECT properties",
        version: nil,
        bytes: packet(0x10, str("MQTT") + [5, 0x02, 0, 60] + [5, 0x18, 0, 0, 0, 1] + str("c")),
        kind: .propertyNotAllowed,
        reasonCode: .protocolError
    ),
    .init(
        name: "reason string in CONNECT",
        version: nil,
        bytes: packet(0x10, str("MQTT") + [5, 0x02, 0, 60] + [4, 0x1F] + str("r") + str("c")),
        kind: .propertyNotAllowed,
        reasonCode: .protocolError
    ),
    .init(
        name: "message expiry interval twice",
        version: .v5,
        bytes: publishV5(properties: [0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2]),
        kind: .duplicateProperty,
        reasonCode: .protocolError
    ),
    .init(
        name: "subscription identifier twice in SUBSCRIBE",
        version: .v5,
        bytes: packet(0x82, [0, 1, 4, 0x0B, 1, 0x0B, 2] + str("a") + [0]),
        kind: .duplicateProperty,
        reasonCode: .protocolError
    ),
    .init(
        name: "property length past the end of the packet",
        version: .v5,
        bytes: packet(0x30, str("t") + [10, 0x01, 0x01]),
        kind: .propertyLengthOverrun,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "property value past the end of the properties",
        version: .v5,
        bytes: publishV5(properties: [0x02, 0, 0]),
        kind: .propertyLengthOverrun,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "string property past the end of the properties",
        version: .v5,
        bytes: publishV5(properties: [0x03, 0, 9, 0x61]),
        kind: .propertyLengthOverrun,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "unknown property identifier 0x04",
        version: .v5,
        bytes: publishV5(properties: [0x04, 0]),
        kind: .unknownProperty,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "unknown property identifier 0x7F",
        version: .v5,
        bytes: publishV5(properties: [0x7F, 0]),
        kind: .unknownProperty,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "payload format indicator 2",
        version: .v5,
        bytes: publishV5(properties: [0x01, 2]),
        kind: .invalidPropertyValue,
        reasonCode: .protocolError
    ),
    .init(
        name: "receive maximum 0",
        version: nil,
        bytes: packet(0x10, str("MQTT") + [5, 0x02, 0, 60] + [3, 0x21, 0, 0] + str("c")),
        kind: .invalidPropertyValue,
        reasonCode: .protocolError
    ),
    .init(
        name: "maximum packet size 0",
        version: nil,
        bytes: packet(0x10, str("MQTT") + [5, 0x02, 0, 60] + [5, 0x27, 0, 0, 0, 0] + str("c")),
        kind: .invalidPropertyValue,
        reasonCode: .protocolError
    ),
    .init(
        name: "subscription identifier 0",
        version: .v5,
        bytes: packet(0x82, [0, 1, 2, 0x0B, 0] + str("a") + [0]),
        kind: .invalidPropertyValue,
        reasonCode: .protocolError
    ),
    .init(name: "topic alias 0", version: .v5, bytes: publishV5(properties: [0x23, 0, 0]), kind: .invalidPropertyValue, reasonCode: .protocolError),

    // CONNECT
    .init(
        name: "CONNECT reserved flag bit set",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x03, 0, 60] + str("c")),
        kind: .invalidConnectFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "will retain without a will",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x22, 0, 60] + str("c")),
        kind: .invalidConnectFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "will QoS without a will",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x0A, 0, 60] + str("c")),
        kind: .invalidConnectFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 password without user name",
        version: nil,
        bytes: packet(0x10, connectHeader311 + [0x42, 0, 60] + str("c") + str("p")),
        kind: .invalidConnectFlags,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "protocol name other than MQTT",
        version: nil,
        bytes: packet(0x10, str("MQTX") + [4, 0x02, 0, 60] + str("c")),
        kind: .invalidProtocolName,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "protocol level 6",
        version: nil,
        bytes: packet(0x10, str("MQTT") + [6, 0x02, 0, 60] + str("c")),
        kind: .unsupportedProtocolVersion,
        reasonCode: .unsupportedProtocolVersion
    ),
    .init(
        name: "MQIsdp with protocol level 4 (MQIsdp is 3.1, level 3 only)",
        version: nil,
        bytes: packet(0x10, str("MQIsdp") + [4, 0x02, 0, 60] + str("c")),
        kind: .unsupportedProtocolVersion,
        reasonCode: .unsupportedProtocolVersion
    ),

    // Reason codes
    .init(
        name: "PUBACK with reason code 0x05",
        version: .v5,
        bytes: packet(0x40, [0, 1, 0x05]),
        kind: .invalidReasonCode,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "PUBREL with reason code 0x10 (PUBACK only)",
        version: .v5,
        bytes: packet(0x62, [0, 1, 0x10]),
        kind: .invalidReasonCode,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 CONNACK return code 6",
        version: .v3_1_1,
        bytes: packet(0x20, [0, 6]),
        kind: .invalidReasonCode,
        reasonCode: .malformedPacket
    ),
    .init(
        name: "3.1.1 SUBACK code 0x87",
        version: .v3_1_1,
        bytes: packet(0x90, [0, 1, 0x87]),
        kind: .invalidReasonCode,
        reasonCode: .malformedPacket
    ),
    .init(name: "AUTH with reason code 0x80", version: .v5, bytes: packet(0xF0, [0x80]), kind: .invalidReasonCode, reasonCode: .malformedPacket),
    .init(
        name: "CONNACK with reserved acknowledge flags",
        version: .v5,
        bytes: packet(0x20, [0x02, 0, 0]),
        kind: .malformed,
        reasonCode: .malformedPacket
    ),
]

@Suite("Malformed input")
struct MalformedPacketTests {
    @Test("malformed packet is refused with the right error and reason code", arguments: malformedCases)
    func refused(_ testCase: MalformedCase) {
        var buffer = ByteBuffer(bytes: testCase.bytes)
        let error = #expect(throws: MQTTDecodingError.self) {
            _ = try MQTTPacket.read(from: &buffer, version: testCase.version)
        }
        #expect(error?.kind == testCase.kind, "\(error.map(String.init(describing:)) ?? "no error")")
        #expect(error?.reasonCode == testCase.reasonCode)
    }

    @Test("an oversized packet is refused as soon as its fixed header is read")
    func oversizedBeforeBody() {
        // A PUBLISH announcing 2,097,151 bytes, of which none has arrived.
        var buffer = ByteBuffer(bytes: [0x30, 0xFF, 0xFF, 0x7F])
        let error = #expect(throws: MQTTDecodingError.self) {
            _ = try MQTTPacket.read(from: &buffer, version: .v5, maximumPacketSize: 1024)
        }
        #expect(error?.kind == .packetTooLarge)
        #expect(error?.reasonCode == .packetTooLarge)
    }

    @Test("a packet exactly at the maximum packet size is accepted, one byte more is refused")
    func maximumPacketSizeBoundary() throws {
        let bytes = packet(0x30, str("a") + Array(repeating: 0x41, count: 10))  // 2 + 13 = 15 bytes
        var exact = ByteBuffer(bytes: bytes)
        #expect(try MQTTPacket.read(from: &exact, version: .v3_1_1, maximumPacketSize: 15) != nil)
        var over = ByteBuffer(bytes: bytes)
        #expect(throws: MQTTDecodingError.self) {
            _ = try MQTTPacket.read(from: &over, version: .v3_1_1, maximumPacketSize: 14)
        }
    }

    @Test("random bytes never crash the decoder: every input decodes, waits or throws")
    func randomBytes() {
        var generator = SeededGenerator(seed: 0x5EED)
        var outcomes = (decoded: 0, incomplete: 0, refused: 0)
        for round in 0..<20_000 {
            let length = Int.random(in: 0...64, using: &generator)
            var bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            // Half the inputs start with a plausible fixed header so that bodies get parsed too.
            if round % 2 == 0, !bytes.isEmpty {
                bytes[0] = UInt8.random(in: 1...15, using: &generator) << 4 | [0, 2, 2, 4][round % 4]
                if bytes.count > 1 { bytes[1] = UInt8(bytes.count - 2) }
            }
            var buffer = ByteBuffer(bytes: bytes)
            let version: MQTTProtocolVersion? = [nil, .v3_1_1, .v5][round % 3]
            do {
                if try MQTTPacket.read(from: &buffer, version: version) != nil {
                    outcomes.decoded += 1
                } else {
                    outcomes.incomplete += 1
                }
            } catch {
                outcomes.refused += 1
            }
        }
        #expect(outcomes.decoded + outcomes.incomplete + outcomes.refused == 20_000)
        #expect(outcomes.decoded > 0 && outcomes.refused > 0, "\(outcomes)")
    }
}

/// A deterministic random number generator (SplitMix64), so failures can be reproduced.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
