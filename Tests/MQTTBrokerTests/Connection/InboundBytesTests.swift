import DatabusTestSupport
import MQTTCore
import NIOCore
import Testing

/// A connection decodes what arrives however TCP cuts it: a packet spread over many reads,
/// several packets in one read, and a read that ends inside a packet.
@Suite("Inbound bytes")
struct InboundBytesTests {
    private func encoded(_ packets: [MQTTPacket], _ version: MQTTProtocolVersion = .v5) throws -> [UInt8] {
        var buffer = ByteBuffer()
        for packet in packets { try packet.write(to: &buffer, version: version) }
        return Array(buffer.readableBytesView)
    }

    @Test("CONNECT one byte per write, then SUBSCRIBE, PUBLISH and half a PINGREQ in one write: all answered, in order")
    func packetsCutAnywhere() async throws {
        try await withBroker { port in
            let connection = try await RawConnection.connect(port: port, version: .v5)
            defer { Task { await connection.close() } }

            let connect = try encoded([.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "cut-anywhere", keepAlive: 30))])
            for byte in connect {
                try await connection.send(bytes: [byte])
                try await Task.sleep(for: .milliseconds(2))
            }
            guard case .connack(let connack) = try await connection.receive() else {
                Issue.record("expected CONNACK")
                return
            }
            #expect(connack.reasonCode == .success)

            let payload = ByteBuffer(bytes: (0..<3_000).map { UInt8($0 % 251) })
            var bytes = try encoded([
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "cut/#", options: .init(qos: .atLeastOnce))])),
                .publish(PublishPacket(topicName: "cut/a", payload: payload, qos: .atLeastOnce, packetIdentifier: 2)),
            ])
            bytes.append(0xC0)  // PINGREQ, its second byte in the next write
            try await connection.send(bytes: bytes)
            try await Task.sleep(for: .milliseconds(50))
            try await connection.send(bytes: [0x00])

            var received: [MQTTPacket] = []
            for _ in 0..<4 { received.append(try await connection.receive()) }
            guard case .suback(let suback) = received.first else {
                Issue.record("expected SUBACK first, got \(received)")
                return
            }
            #expect(suback.reasonCodes == [.grantedQoS1])
            let middle = received[1...2]
            #expect(middle.contains { if case .puback(let ack) = $0 { return ack.packetIdentifier == 2 } else { return false } })
            #expect(
                middle.contains {
                    if case .publish(let publish) = $0 { return publish.topicName == "cut/a" && publish.payload == payload }
                    return false
                }
            )
            #expect(received.last == .pingresp)

            // The PUBLISH split over a hundred writes arrives whole.
            let big = ByteBuffer(bytes: (0..<5_000).map { UInt8($0 % 241) })
            let split = try encoded([.publish(PublishPacket(topicName: "cut/b", payload: big, qos: .atMostOnce))])
            for start in stride(from: 0, to: split.count, by: 50) {
                try await connection.send(bytes: Array(split[start..<min(start + 50, split.count)]))
            }
            guard case .publish(let delivered) = try await connection.receive() else {
                Issue.record("expected the split PUBLISH")
                return
            }
            #expect(delivered.topicName == "cut/b")
            #expect(delivered.payload == big)
        }
    }
}
