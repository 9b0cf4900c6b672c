import DatabusTestSupport
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Malformed packets, protocol errors and server-only packets from raw sockets: each closes
/// only its own connection, after a 5.0 DISCONNECT with the right reason code, while a
/// well-behaved client keeps publishing and receiving (MQTT 5.0 section 4.13).
@Suite("Malformed input")
struct MalformedInputTests {
    /// One bad packet sent by a connected 5.0 client, and the reason codes the broker may answer with.
    struct BadPacket: Sendable, CustomTestStringConvertible {
        let name: String
        let bytes: [UInt8]
        let reasons: Set<ReasonCode>
        var testDescription: String { name }

        init(_ name: String, _ bytes: [UInt8], _ reasons: Set<ReasonCode>) {
            self.name = name
            self.bytes = bytes
            self.reasons = reasons
        }
    }

    static let malformed: Set<ReasonCode> = [.malformedPacket]
    static let protocolError: Set<ReasonCode> = [.protocolError]

    static let badPackets: [BadPacket] = [
        BadPacket("SUBSCRIBE with fixed header flags 0", packet(0x80, [0x00, 0x01, 0x00] + string("a") + [0x00]), malformed),
        BadPacket("PUBREL with fixed header flags 0", [0x60, 0x02, 0x00, 0x01], malformed),
        BadPacket("reserved packet type 0", [0x00, 0x00], malformed),
        BadPacket("remaining length longer than four bytes", [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], malformed),
        BadPacket("PUBLISH with QoS 3", packet(0x36, string("a") + [0x00, 0x01, 0x00]), malformed),
        BadPacket("PUBLISH with DUP at QoS 0", packet(0x38, string("a") + [0x00]), malformed),
        BadPacket("PUBLISH topic that is not UTF-8", packet(0x30, [0x00, 0x02, 0xC3, 0x28, 0x00]), malformed),
        BadPacket("PUBLISH topic with U+0000", packet(0x30, [0x00, 0x03, 0x61, 0x00, 0x62, 0x00]), malformed),
        // No code is named by the specification; mosquitto 2.0.11 sends 0x82.
        BadPacket("PUBLISH topic with a wildcard", packet(0x30, string("a/+") + [0x00]), [.malformedPacket, .protocolError]),
        BadPacket("PUBLISH topic length beyond the packet", packet(0x30, [0x00, 0x0A, 0x61]), malformed),
        BadPacket(
            "PUBLISH with the content type twice",
            packet(0x30, string("a") + [0x08, 0x03, 0x00, 0x01, 0x78, 0x03, 0x00, 0x01, 0x79]),
            protocolError
        ),
        BadPacket("PUBLISH with an unknown property", packet(0x30, string("a") + [0x02, 0x7F, 0x00]), malformed),
        BadPacket(
            "PUBLISH with a property that belongs to CONNECT",
            packet(0x30, string("a") + [0x05, 0x11, 0x00, 0x00, 0x00, 0x01]),
            [.malformedPacket, .protocolError]
        ),
        BadPacket("PUBLISH with an empty topic and no topic alias", packet(0x30, string("") + [0x00]), protocolError),
        BadPacket("PUBLISH at QoS 1 with packet identifier 0", packet(0x32, string("a") + [0x00, 0x00, 0x00]), [.malformedPacket, .protocolError]),
        BadPacket("PUBLISH whose property length runs past the packet", packet(0x30, string("a") + [0x05, 0x01, 0x01]), malformed),
        BadPacket("SUBSCRIBE without topic filters", packet(0x82, [0x00, 0x01, 0x00]), protocolError),
        BadPacket("SUBSCRIBE with reserved option bits", packet(0x82, [0x00, 0x01, 0x00] + string("a") + [0xC0]), malformed),
        BadPacket("SUBSCRIBE with retain handling 3", packet(0x82, [0x00, 0x01, 0x00] + string("a") + [0x30]), protocolError),
        BadPacket("SUBSCRIBE with subscription identifier 0", packet(0x82, [0x00, 0x01, 0x02, 0x0B, 0x00] + string("a") + [0x00]), protocolError),
        BadPacket("UNSUBSCRIBE without topic filters", packet(0xA2, [0x00, 0x01, 0x00]), protocolError),
        BadPacket("PINGREQ with a body", [0xC0, 0x01, 0x00], malformed),
        BadPacket("AUTH without an authentication method in CONNECT", [0xF0, 0x00], protocolError),
        BadPacket("CONNACK, which only servers send", [0x20, 0x03, 0x00, 0x00, 0x00], protocolError),
        BadPacket("SUBACK, which only servers send", packet(0x90, [0x00, 0x01, 0x00, 0x00]), protocolError),
        BadPacket("UNSUBACK, which only servers send", packet(0xB0, [0x00, 0x01, 0x00, 0x00]), protocolError),
        BadPacket("PINGRESP, which only servers send", [0xD0, 0x00], protocolError),
    ]

    /// A subscriber and a publisher that must keep working whatever other clients send.
    private struct WellBehaved {
        let subscriber: CodecConnection
        let publisher: CodecConnection
        var sequence: UInt16 = 0

        static func start(port: Int) async throws -> WellBehaved {
            let subscriber = try await connectAccepted(port: port, "good-subscriber")
            try await subscriber.subscribe("good/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "good-publisher")
            return WellBehaved(subscriber: subscriber, publisher: publisher)
        }

        /// Publishes a numbered QoS 1 message and records an issue unless it arrives.
        mutating func exchange(sourceLocation: SourceLocation = #_sourceLocation) async throws {
            sequence += 1
            let reason = try await publisher.publish("good/sequence", "\(sequence)", qos: .atLeastOnce, packetIdentifier: sequence)
            #expect(reason == .success, sourceLocation: sourceLocation)
            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "\(sequence)", sourceLocation: sourceLocation)
            try await subscriber.acknowledge(message)
        }

        func close() async {
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test("5.0: a bad packet closes only its connection, after DISCONNECT with the right reason code", arguments: badPackets)
    func badPacketV5(_ bad: BadPacket) async throws {
        try await withBroker { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            try await good.exchange()

            let offender = try await RawConnection.connected(port: port, "offender")
            defer { Task { await offender.close() } }
            try await offender.send(bytes: bad.bytes)
            let reason = try await offender.closedByBroker()
            #expect(
                reason.map { bad.reasons.contains($0) } == true,
                "DISCONNECT reason \(String(describing: reason)), expected one of \(bad.reasons)"
            )

            try await good.exchange()
        }
    }

    @Test(
        "3.1.1: a bad packet closes only its connection, without any answer",
        arguments: [
            BadPacket("PUBLISH with QoS 3", packet(0x36, string("a") + [0x00, 0x01]), []),
            BadPacket("PUBLISH topic that is not UTF-8", packet(0x30, [0x00, 0x02, 0xC3, 0x28]), []),
            BadPacket("SUBSCRIBE with reserved option bits", packet(0x82, [0x00, 0x01] + string("a") + [0x04]), []),
            BadPacket("AUTH, which 3.1.1 does not have", [0xF0, 0x00], []),
            BadPacket("DISCONNECT with a body", [0xE0, 0x01, 0x00], []),
            BadPacket("PINGRESP, which only servers send", [0xD0, 0x00], []),
            BadPacket("SUBACK, which only servers send", packet(0x90, [0x00, 0x01, 0x00]), []),
        ]
    )
    func badPacketV311(_ bad: BadPacket) async throws {
        try await withBroker { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            let offender = try await RawConnection.connected(port: port, "offender", version: .v3_1_1)
            defer { Task { await offender.close() } }
            try await offender.send(bytes: bad.bytes)
            let packets = try await offender.packetsUntilClosed()
            #expect(packets.isEmpty)
            try await good.exchange()
        }
    }

    @Test(
        "bad input before CONNECT closes the socket without accepting it",
        arguments: [
            BadPacket("PUBLISH as the first packet", packet(0x30, string("a")), []),
            BadPacket("random bytes", [0x47, 0x45, 0x54, 0x20, 0x2F, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2F, 0x31, 0x2E, 0x31, 0x0D, 0x0A], []),
            BadPacket(
                "CONNECT with the reserved flag set",
                packet(0x10, string("MQTT") + [0x05, 0x03, 0x00, 0x3C, 0x00] + string("bad")),
                []
            ),
            BadPacket(
                "CONNECT with receive maximum 0",
                packet(0x10, string("MQTT") + [0x05, 0x02, 0x00, 0x3C, 0x03, 0x21, 0x00, 0x00] + string("bad")),
                []
            ),
            BadPacket(
                "CONNECT whose will topic has a wildcard",
                packet(0x10, string("MQTT") + [0x05, 0x06, 0x00, 0x3C, 0x00] + string("bad") + [0x00] + string("a/#") + [0x00, 0x01, 0x78]),
                []
            ),
            BadPacket(
                "CONNECT with will QoS 3",
                packet(0x10, string("MQTT") + [0x05, 0x1E, 0x00, 0x3C, 0x00] + string("bad") + [0x00] + string("a") + [0x00, 0x01, 0x78]),
                []
            ),
            BadPacket(
                "3.1.1 CONNECT with a password but no user name",
                packet(0x10, string("MQTT") + [0x04, 0x42, 0x00, 0x3C] + string("bad") + [0x00, 0x01, 0x70]),
                []
            ),
            BadPacket("CONNECT with protocol name MQTX", packet(0x10, string("MQTX") + [0x05, 0x02, 0x00, 0x3C, 0x00] + string("bad")), []),
        ]
    )
    func badConnect(_ bad: BadPacket) async throws {
        try await withBroker { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            let offender = try await RawConnection.connect(port: port)
            defer { Task { await offender.close() } }
            try await offender.send(bytes: bad.bytes)
            let packets = try await offender.packetsUntilClosed()
            // Nothing, or a CONNACK that refuses.
            for packet in packets {
                guard case .connack(let connack) = packet else {
                    Issue.record("unexpected \(packet)")
                    continue
                }
                #expect(connack.reasonCode.isFailure)
            }
            try await good.exchange()
        }
    }

    @Test(
        "5.0: packets after a protocol error are not processed, and nothing follows the DISCONNECT"
    )
    func nothingAfterProtocolError() async throws {
        try await withBroker(.testing { $0.maxTopicAlias = 2 }) { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            let offender = try await RawConnection.connected(port: port, "offender")
            defer { Task { await offender.close() } }
            // Both packets reach the broker in one segment: an invalid topic alias, then a valid QoS 1 PUBLISH.
            try await offender.send([
                .publish(PublishPacket(topicName: "good/sequence", payload: ByteBuffer(string: "alias"), properties: [.topicAlias(3)])),
                .publish(PublishPacket(topicName: "good/sequence", payload: ByteBuffer(string: "after"), qos: .atLeastOnce, packetIdentifier: 1)),
            ])
            let reason = try await offender.closedByBroker()
            #expect(reason == .topicAliasInvalid)
            try await good.subscriber.expectNothingPending("a PUBLISH after the protocol error was routed")
            try await good.exchange()
        }
    }

    @Test(
        "5.0: packets after a server-only packet are not processed"
    )
    func nothingAfterServerOnlyPacket() async throws {
        try await withBroker { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            let offender = try await RawConnection.connected(port: port, "offender")
            defer { Task { await offender.close() } }
            try await offender.send([
                .connack(ConnAckPacket()),
                .publish(PublishPacket(topicName: "good/sequence", payload: ByteBuffer(string: "after"), qos: .atLeastOnce, packetIdentifier: 1)),
            ])
            let reason = try await offender.closedByBroker()
            #expect(reason == .protocolError)
            try await good.subscriber.expectNothingPending("a PUBLISH after the protocol error was routed")
            try await good.exchange()
        }
    }

    @Test("random complete packets never affect another client, and any DISCONNECT they cause carries a failure code")
    func randomPackets() async throws {
        try await withBroker { port in
            var good = try await WellBehaved.start(port: port)
            defer {
                let pair = good
                Task { await pair.close() }
            }
            var generator = SeededGenerator(seed: 0x5EED_DA7A_B005)
            for index in 0..<40 {
                let type = UInt8.random(in: 1...15, using: &generator)
                let flags = UInt8.random(in: 0...15, using: &generator)
                let length = Int.random(in: 0...24, using: &generator)
                let body = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let bytes = packet(type << 4 | flags, body)

                let offender = try await RawConnection.connected(port: port, "random-\(index)")
                try await offender.send(bytes: bytes)
                // Either the broker answers and stays open, or it closes (after a failure DISCONNECT).
                do {
                    try await offender.send(.pingreq)
                    while true {
                        let packet = try await offender.receive(within: 5)
                        if packet == .pingresp { break }
                        if case .disconnect(let disconnect) = packet {
                            #expect(disconnect.reasonCode.isFailure, "packet \(bytes): DISCONNECT \(disconnect.reasonCode)")
                        }
                    }
                } catch let error as InteropError where !error.description.hasPrefix("connection closed") {
                    throw error  // neither an answer nor a close
                } catch {
                    // Closed by the broker: fine.
                }
                await offender.close()
                if index % 10 == 9 { try await good.exchange() }
            }
            try await good.exchange()
        }
    }
}

/// A fixed header with `first` as its first byte, the remaining length and `body`.
private func packet(_ first: UInt8, _ body: [UInt8]) -> [UInt8] {
    var length = body.count
    var encoded: [UInt8] = []
    repeat {
        var byte = UInt8(length % 128)
        length /= 128
        if length > 0 { byte |= 0x80 }
        encoded.append(byte)
    } while length > 0
    return [first] + encoded + body
}

/// An MQTT UTF-8 string: two length bytes and the text.
private func string(_ text: String) -> [UInt8] {
    let utf8 = Array(text.utf8)
    return [UInt8(utf8.count >> 8), UInt8(utf8.count & 0xFF)] + utf8
}

/// A small deterministic generator (SplitMix64), so a failing random packet can be found again.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
