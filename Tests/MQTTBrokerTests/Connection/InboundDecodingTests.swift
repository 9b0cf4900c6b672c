import Logging
import MQTTCore
import NIOCore
import NIOEmbedded
import Testing

@testable import MQTTBroker

/// A ``ConnectionHandler`` on an `EmbeddedChannel`: the test decides which bytes arrive in
/// which read, and reads what the handler wrote, decoded.
private final class EmbeddedConnection {
    let core: BrokerCore
    let channel: EmbeddedChannel
    private var answers = ByteBuffer()
    private var decoder = MQTTPacketDecoder(version: .v5)

    init(_ configure: (inout BrokerConfiguration) -> Void = { _ in }) throws {
        var configuration = BrokerConfiguration.standalone
        configure(&configuration)
        let core = BrokerCore(
            configuration: configuration,
            logger: Logger(label: "test.inbound", factory: { _ in SwiftLogNoOpLogHandler() }),
            authenticator: nil
        )
        self.core = core
        let handler = ConnectionHandler(core: core, listener: SharedListener(index: 0, configuration.listeners[0]))
        channel = EmbeddedChannel(handler: handler)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 28_001)).wait()
    }

    /// One read of `bytes`.
    func read(_ bytes: [UInt8]) throws {
        try channel.writeInbound(ByteBuffer(bytes: bytes))
        channel.embeddedEventLoop.run()
    }

    /// What the handler wrote since the last call, decoded.
    func written() throws -> [MQTTPacket] {
        channel.embeddedEventLoop.run()
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) { answers.writeImmutableBuffer(buffer) }
        var packets: [MQTTPacket] = []
        while let packet = try decoder.decode(buffer: &answers) { packets.append(packet) }
        return packets
    }

    /// Connects as `clientIdentifier` (5.0) in a read of its own and requires the CONNACK.
    func connect(_ clientIdentifier: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        try read(encoded(.connect(ConnectPacket(clientIdentifier: clientIdentifier, keepAlive: 0))))
        let answers = try written()
        guard case .connack(let connack) = answers.first, answers.count == 1, connack.reasonCode == .success else {
            throw InteropFailure("expected a successful CONNACK, got \(answers)")
        }
    }
}

private struct InteropFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func encoded(_ packets: MQTTPacket...) throws -> [UInt8] {
    try encoded(packets)
}

private func encoded(_ packets: [MQTTPacket]) throws -> [UInt8] {
    var buffer = ByteBuffer()
    for packet in packets { try packet.write(to: &buffer, version: .v5) }
    return Array(buffer.readableBytesView)
}

private func subscribe(_ filter: String) -> MQTTPacket {
    .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: filter, options: .init(qos: .atMostOnce))]))
}

private func retainedPublish(_ topic: String) -> MQTTPacket {
    .publish(PublishPacket(topicName: topic, payload: ByteBuffer(string: "should not be kept"), retain: true))
}

/// How the connection decodes what one read brings: several packets, a packet cut between
/// reads, a packet that ends the connection followed by more in the same read, a maximum
/// packet size crossed over several reads, and the connect timeout.
@Suite("Inbound decoding")
struct InboundDecodingTests {
    @Test("DISCONNECT followed by more packets in the same read: earlier packets answered, nothing after it acted on")
    func disconnectThenMorePackets() throws {
        let connection = try EmbeddedConnection()
        try connection.connect("leaving")
        try connection.read(
            encoded(
                .pingreq,
                .disconnect(DisconnectPacket()),
                retainedPublish("after/disconnect"),
                subscribe("after/#"),
                .pingreq
            )
        )
        // What was asked before the DISCONNECT is answered (as mosquitto does); nothing after it.
        #expect(try connection.written() == [.pingresp])
        #expect(!connection.channel.isActive)
        #expect(connection.core.retained.count == 0)
        #expect(connection.core.router.count == 0)
    }

    @Test("a protocol error followed by more packets in the same read: DISCONNECT 0x82 and nothing after it is acted on")
    func protocolErrorThenMorePackets() throws {
        let connection = try EmbeddedConnection()
        try connection.connect("twice")
        try connection.read(
            encoded(
                .pingreq,
                .connect(ConnectPacket(clientIdentifier: "twice")),
                retainedPublish("after/error"),
                subscribe("after/#"),
                .pingreq
            )
        )
        #expect(try connection.written() == [.pingresp, .disconnect(DisconnectPacket(reasonCode: .protocolError))])
        #expect(!connection.channel.isActive)
        #expect(connection.core.retained.count == 0)
        #expect(connection.core.router.count == 0)
    }

    @Test("a malformed packet after a packet cut between reads: DISCONNECT 0x81 and nothing after it is decoded")
    func malformedAfterPartialPacket() throws {
        let connection = try EmbeddedConnection()
        try connection.connect("malformed")
        // A PINGREQ, and the first byte of the next one.
        try connection.read([0xC0, 0x00, 0xC0])
        #expect(try connection.written() == [.pingresp])
        // Its second byte, and the first byte of a third (kept from a kept part packet).
        try connection.read([0x00, 0xC0])
        #expect(try connection.written() == [.pingresp])
        // Its second byte, a PUBREL with fixed header flags 0 (malformed), then packets that
        // must not be decoded.
        try connection.read([0x00] + [0x60, 0x02, 0x00, 0x01] + encoded(.pingreq, retainedPublish("after/malformed"), .pingreq))
        #expect(try connection.written() == [.pingresp, .disconnect(DisconnectPacket(reasonCode: .malformedPacket))])
        #expect(!connection.channel.isActive)
        #expect(connection.core.retained.count == 0)
    }

    @Test("packets cut at every size across reads longer than the compaction threshold arrive whole, once and in order")
    func partialPacketsAcrossLongReads() throws {
        let connection = try EmbeddedConnection()
        try connection.connect("echo")
        try connection.read(
            encoded(subscribe("echo/#"))
        )
        guard case .suback = try connection.written().first else {
            Issue.record("expected SUBACK")
            return
        }

        let count = 600
        let payloads = (0..<count).map { "message \($0) " + String(repeating: "x", count: $0 % 37) }
        let stream = try encoded(payloads.map { .publish(PublishPacket(topicName: "echo/\($0.count)", payload: ByteBuffer(string: $0))) })
        // Reads that end inside packets: single bytes, short ones, and ones longer than 4096
        // bytes, so that the kept part packet is compacted with packets decoded from it.
        let sizes = [1, 2, 3, 5000, 7, 4097, 1, 6001, 13, 9000, 4500]
        var start = 0
        var next = 0
        while start < stream.count {
            let end = min(start + sizes[next % sizes.count], stream.count)
            try connection.read(Array(stream[start..<end]))
            start = end
            next += 1
        }
        let echoed = try connection.written().map { packet -> String in
            guard case .publish(let publish) = packet else { return "\(packet)" }
            return String(buffer: publish.payload)
        }
        #expect(echoed.count == count)
        #expect(echoed == payloads)
        #expect(connection.channel.isActive)
    }

    @Test("max_packet_size: a PUBLISH announced too large is refused once its fixed header is whole, however it is cut")
    func maximumPacketSizeAcrossReads() throws {
        let connection = try EmbeddedConnection { $0.maxPacketSize = 100 }
        try connection.connect("large")
        // PUBLISH, remaining length 1000 (0xE8 0x07): one byte per read, no body.
        try connection.read([0x30])
        try connection.read([0xE8])
        #expect(try connection.written().isEmpty)
        #expect(connection.channel.isActive)
        try connection.read([0x07])
        #expect(try connection.written() == [.disconnect(DisconnectPacket(reasonCode: .packetTooLarge))])
        #expect(!connection.channel.isActive)
    }

    @Test("max_packet_size: a packet of exactly the maximum, cut over reads, is accepted")
    func packetOfMaximumSizeAccepted() throws {
        let connection = try EmbeddedConnection { $0.maxPacketSize = 100 }
        try connection.connect("exact")
        try connection.read(
            encoded(subscribe("exact/#"))
        )
        _ = try connection.written()
        // 2 (fixed header) + 9 (topic) + 1 (properties) + 88 (payload) = 100 bytes.
        let payload = String(repeating: "p", count: 88)
        let bytes = try encoded(.publish(PublishPacket(topicName: "exact/a", payload: ByteBuffer(string: payload))))
        #expect(bytes.count == 100)
        try connection.read(Array(bytes[0..<1]))
        try connection.read(Array(bytes[1..<50]))
        try connection.read(Array(bytes[50...]))
        let answers = try connection.written()
        guard case .publish(let echoed) = answers.first, answers.count == 1 else {
            Issue.record("expected the PUBLISH back, got \(answers)")
            return
        }
        #expect(String(buffer: echoed.payload) == payload)
        #expect(connection.channel.isActive)
    }

    @Test("max_packet_size applies before CONNECT: an oversized CONNECT closes the socket without an answer")
    func oversizedConnect() throws {
        let connection = try EmbeddedConnection { $0.maxPacketSize = 100 }
        // CONNECT, remaining length 200 (0xC8 0x01), cut after its first length byte.
        try connection.read([0x10, 0xC8])
        #expect(connection.channel.isActive)
        try connection.read([0x01, 0x00, 0x04])
        #expect(try connection.written().isEmpty)
        #expect(!connection.channel.isActive)
    }

    @Test("connect_timeout closes a connection that sent nothing or half a CONNECT; a whole CONNECT cancels it")
    func connectTimeout() throws {
        let silent = try EmbeddedConnection { $0.connectTimeout = 2 }
        silent.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1_900))
        #expect(silent.channel.isActive)
        silent.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!silent.channel.isActive)

        let half = try EmbeddedConnection { $0.connectTimeout = 2 }
        try half.read(Array(try encoded(.connect(ConnectPacket(clientIdentifier: "half"))).prefix(5)))
        half.channel.embeddedEventLoop.advanceTime(by: .seconds(3))
        #expect(!half.channel.isActive)

        let connected = try EmbeddedConnection { $0.connectTimeout = 2 }
        try connected.connect("in-time")
        connected.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(connected.channel.isActive)
        try connected.read(encoded(.pingreq))
        #expect(try connected.written() == [.pingresp])
    }

    @Test("a closed connection's handler is freed: its timers are cancelled", arguments: ["silent", "connected", "disconnected"])
    func handlerFreed(_ ending: String) throws {
        weak var freed: ConnectionHandler?
        do {
            var configuration = BrokerConfiguration.standalone
            configuration.connectTimeout = 30
            let core = BrokerCore(
                configuration: configuration,
                logger: Logger(label: "test.inbound", factory: { _ in SwiftLogNoOpLogHandler() }),
                authenticator: nil
            )
            let handler = ConnectionHandler(core: core, listener: SharedListener(index: 0, configuration.listeners[0]))
            freed = handler
            let channel = EmbeddedChannel(handler: handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 28_002)).wait()
            switch ending {
            case "connected":
                try channel.writeInbound(ByteBuffer(bytes: try encoded(.connect(ConnectPacket(clientIdentifier: "freed", keepAlive: 30)))))
                _ = try channel.close().wait()
            case "disconnected":
                try channel.writeInbound(
                    ByteBuffer(bytes: try encoded(.connect(ConnectPacket(clientIdentifier: "freed", keepAlive: 0)), .disconnect(DisconnectPacket())))
                )
            default:
                _ = try channel.close().wait()
            }
            channel.embeddedEventLoop.run()
            #expect(!channel.isActive)
            _ = try? channel.finish()
        }
        #expect(freed == nil, "the handler of a closed connection is still referenced")
    }
}
