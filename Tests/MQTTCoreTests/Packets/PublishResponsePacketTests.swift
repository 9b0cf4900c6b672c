import MQTTCore
import NIOCore
import Testing

/// PUBACK, PUBREC, PUBREL and PUBCOMP byte layouts worked out by hand from MQTT 3.1.1
/// sections 3.4 to 3.7 and MQTT 5.0 sections 3.4 to 3.7.
@Suite("PUBACK, PUBREC, PUBREL and PUBCOMP wire format")
struct PublishResponseWireFormatTests {
    /// One packet with the bytes it must travel as.
    struct Case: Sendable, CustomTestStringConvertible {
        var packet: MQTTPacket
        var expected: [UInt8]
        var testDescription: String { "\(packet.type)" }
    }

    // MARK: MQTT 3.1.1

    @Test(
        "3.1.1 acknowledgements carry only the packet identifier",
        arguments: [
            Case(
                packet: .puback(PubAckPacket(packetIdentifier: 10)),
                expected: [
                    0x40,  // PUBACK, flags 0
                    0x02,  // remaining length 2
                    0x00, 0x0A,  // packet identifier 10
                ]
            ),
            Case(
                packet: .pubrec(PubRecPacket(packetIdentifier: 10)),
                expected: [
                    0x50,  // PUBREC, flags 0
                    0x02,  // remaining length 2
                    0x00, 0x0A,  // packet identifier 10
                ]
            ),
            Case(
                packet: .pubrel(PubRelPacket(packetIdentifier: 10)),
                expected: [
                    0x62,  // PUBREL, flags 0010
                    0x02,  // remaining length 2
                    0x00, 0x0A,  // packet identifier 10
                ]
            ),
            Case(
                packet: .pubcomp(PubCompPacket(packetIdentifier: 10)),
                expected: [
                    0x70,  // PUBCOMP, flags 0
                    0x02,  // remaining length 2
                    0x00, 0x0A,  // packet identifier 10
                ]
            ),
        ]
    )
    func packetIdentifierOnly311(_ testCase: Case) throws {
        let bytes = try WireBytes.encode(testCase.packet, version: .v3_1_1)
        #expect(bytes == testCase.expected)
        let (decoded, unread) = try WireBytes.decode(testCase.expected, version: .v3_1_1)
        #expect(decoded == testCase.packet)
        #expect(unread == 0)
    }

    // MARK: MQTT 5.0

    @Test(
        "5.0 acknowledgements with success and no properties leave out reason code and property length",
        arguments: [
            Case(
                packet: .puback(PubAckPacket(packetIdentifier: 0x0102)),
                expected: [
                    0x40,  // PUBACK, flags 0
                    0x02,  // remaining length 2
                    0x01, 0x02,  // packet identifier 0x0102
                ]
            ),
            Case(
                packet: .pubrec(PubRecPacket(packetIdentifier: 0x0102)),
                expected: [
                    0x50,  // PUBREC, flags 0
                    0x02,  // remaining length 2
                    0x01, 0x02,  // packet identifier 0x0102
                ]
            ),
            Case(
                packet: .pubrel(PubRelPacket(packetIdentifier: 0x0102)),
                expected: [
                    0x62,  // PUBREL, flags 0010
                    0x02,  // remaining length 2
                    0x01, 0x02,  // packet identifier 0x0102
                ]
            ),
            Case(
                packet: .pubcomp(PubCompPacket(packetIdentifier: 0x0102)),
                expected: [
                    0x70,  // PUBCOMP, flags 0
                    0x02,  // remaining length 2
                    0x01, 0x02,  // packet identifier 0x0102
                ]
            ),
        ]
    )
    func shortForm5(_ testCase: Case) throws {
        let bytes = try WireBytes.encode(testCase.packet, version: .v5)
        #expect(bytes == testCase.expected)
        let (decoded, unread) = try WireBytes.decode(testCase.expected, version: .v5)
        #expect(decoded == testCase.packet)
        #expect(unread == 0)
    }

    @Test(
        "5.0 acknowledgements with a reason code and no properties leave out the property length",
        arguments: [
            Case(
                packet: .puback(PubAckPacket(packetIdentifier: 10, reasonCode: .noMatchingSubscribers)),
                expected: [
                    0x40,  // PUBACK, flags 0
                    0x03,  // remaining length 3
                    0x00, 0x0A,  // packet identifier 10
                    0x10,  // reason code 0x10 no matching subscribers
                ]
            ),
            Case(
                packet: .pubrec(PubRecPacket(packetIdentifier: 10, reasonCode: .quotaExceeded)),
                expected: [
                    0x50,  // PUBREC, flags 0
                    0x03,  // remaining length 3
                    0x00, 0x0A,  // packet identifier 10
                    0x97,  // reason code 0x97 quota exceeded
                ]
            ),
            Case(
                packet: .pubrel(PubRelPacket(packetIdentifier: 10, reasonCode: .packetIdentifierNotFound)),
                expected: [
                    0x62,  // PUBREL, flags 0010
                    0x03,  // remaining length 3
                    0x00, 0x0A,  // packet identifier 10
                    0x92,  // reason code 0x92 packet identifier not found
                ]
            ),
            Case(
                packet: .pubcomp(PubCompPacket(packetIdentifier: 10, reasonCode: .packetIdentifierNotFound)),
                expected: [
                    0x70,  // PUBCOMP, flags 0
                    0x03,  // remaining length 3
                    0x00, 0x0A,  // packet identifier 10
                    0x92,  // reason code 0x92 packet identifier not found
                ]
            ),
        ]
    )
    func reasonCodeOnly5(_ testCase: Case) throws {
        let bytes = try WireBytes.encode(testCase.packet, version: .v5)
        #expect(bytes == testCase.expected)
        let (decoded, unread) = try WireBytes.decode(testCase.expected, version: .v5)
        #expect(decoded == testCase.packet)
        #expect(unread == 0)
    }

    @Test(
        "5.0 acknowledgements with a reason string carry reason code, property length and properties",
        arguments: [
            Case(
                packet: .puback(PubAckPacket(packetIdentifier: 10, reasonCode: .notAuthorized, properties: [.reasonString("no")])),
                expected: [
                    0x40,  // PUBACK, flags 0
                    0x09,  // remaining length 9
                    0x00, 0x0A,  // packet identifier 10
                    0x87,  // reason code 0x87 not authorized
                    0x05,  // property length 5
                    0x1F, 0x00, 0x02, 0x6E, 0x6F,  // reason string "no"
                ]
            ),
            Case(
                packet: .pubrec(PubRecPacket(packetIdentifier: 10, reasonCode: .success, properties: [.reasonString("no")])),
                expected: [
                    0x50,  // PUBREC, flags 0
                    0x09,  // remaining length 9
                    0x00, 0x0A,  // packet identifier 10
                    0x00,  // reason code 0x00 success
                    0x05,  // property length 5
                    0x1F, 0x00, 0x02, 0x6E, 0x6F,  // reason string "no"
                ]
            ),
            Case(
                packet: .pubrel(
                    PubRelPacket(packetIdentifier: 10, reasonCode: .packetIdentifierNotFound, properties: [.reasonString("no")])
                ),
                expected: [
                    0x62,  // PUBREL, flags 0010
                    0x09,  // remaining length 9
                    0x00, 0x0A,  // packet identifier 10
                    0x92,  // reason code 0x92 packet identifier not found
                    0x05,  // property length 5
                    0x1F, 0x00, 0x02, 0x6E, 0x6F,  // reason string "no"
                ]
            ),
            Case(
                packet: .pubcomp(PubCompPacket(packetIdentifier: 10, reasonCode: .success, properties: [.reasonString("no")])),
                expected: [
                    0x70,  // PUBCOMP, flags 0
                    0x09,  // remaining length 9
                    0x00, 0x0A,  // packet identifier 10
                    0x00,  // reason code 0x00 success
                    0x05,  // property length 5
                    0x1F, 0x00, 0x02, 0x6E, 0x6F,  // reason string "no"
                ]
            ),
        ]
    )
    func fullForm5(_ testCase: Case) throws {
        let bytes = try WireBytes.encode(testCase.packet, version: .v5)
        #expect(bytes == testCase.expected)
        let (decoded, unread) = try WireBytes.decode(testCase.expected, version: .v5)
        #expect(decoded == testCase.packet)
        #expect(unread == 0)
    }

    @Test("5.0 PUBACK with a reason code and an explicit zero property length decodes like the 3-byte form")
    func explicitEmptyPropertyLength5() throws {
        let expected: [UInt8] = [
            0x40,  // PUBACK, flags 0
            0x04,  // remaining length 4
            0x00, 0x0A,  // packet identifier 10
            0x10,  // reason code 0x10 no matching subscribers
            0x00,  // property length 0
        ]

        let (decoded, unread) = try WireBytes.decode(expected, version: .v5)
        #expect(decoded == .puback(PubAckPacket(packetIdentifier: 10, reasonCode: .noMatchingSubscribers)))
        #expect(unread == 0)
    }
}
