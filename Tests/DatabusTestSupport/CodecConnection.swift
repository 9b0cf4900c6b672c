import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// A raw MQTT connection that speaks through MQTTCore's encoder and decoder only, so a test
/// sees every packet exactly as a peer sent it.
public struct CodecConnection: Sendable {
    private let channel: any Channel
    private let inbox: PacketInbox
    public let version: MQTTProtocolVersion

    /// Connects to 127.0.0.1:`port`, from `sourceAddress` when given (any 127.x.y.z works on
    /// Linux's loopback, so a test can play clients on different addresses).
    public static func connect(port: Int, version: MQTTProtocolVersion, from sourceAddress: String? = nil) async throws -> CodecConnection {
        let inbox = PacketInbox()
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let sourceAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: sourceAddress, port: 0)) }
        let channel =
            try await bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version)))
                    try channel.pipeline.syncOperations.addHandler(InboxHandler(inbox: inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return CodecConnection(channel: channel, inbox: inbox, version: version)
    }

    public func send(_ packet: MQTTPacket) async throws {
        try await send([packet])
    }

    /// Encodes `packets` and writes them in one write, so they reach the peer together.
    public func send(_ packets: [MQTTPacket]) async throws {
        var buffer = channel.allocator.buffer(capacity: 64)
        for packet in packets { try packet.write(to: &buffer, version: version) }
        try await channel.writeAndFlush(buffer)
    }

    /// Writes `bytes` exactly as given, in one write (malformed packets included).
    public func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// The next packet from the peer; throws after `seconds` without one, or when the connection has closed.
    public func receive(within seconds: Double = 5) async throws -> MQTTPacket {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            switch inbox.pop() {
            case .packet(let packet): return packet
            case .closed(let reason): throw InteropError("connection closed: \(reason)")
            case .empty: try await Task.sleep(for: .milliseconds(5))
            }
        }
        throw InteropError("no packet within \(seconds) s")
    }

    /// Receives the next packet and records an issue unless it is `expected`.
    public func expectNext(_ expected: MQTTPacket, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let packet = try await receive()
        #expect(packet == expected, sourceLocation: sourceLocation)
    }

    /// Sends CONNECT and returns the CONNACK.
    public func handshake(clientIdentifier: String, cleanStart: Bool = true, properties: Properties = []) async throws -> ConnAckPacket {
        try await send(
            .connect(
                ConnectPacket(
                    protocolVersion: version,
                    clientIdentifier: clientIdentifier,
                    cleanStart: cleanStart,
                    keepAlive: 30,
                    properties: properties
                )
            )
        )
        guard case .connack(let connack) = try await receive() else { throw InteropError("expected CONNACK") }
        return connack
    }

    public func close() async {
        try? await channel.close()
    }
}

/// Packets received and not yet taken by the test, in arrival order.
private final class PacketInbox: Sendable {
    enum Next {
        case packet(MQTTPacket)
        case empty
        case closed(String)
    }

    private let state = NIOLockedValueBox<(packets: [MQTTPacket], closedReason: String?)>(([], nil))

    func push(_ packet: MQTTPacket) { state.withLockedValue { $0.packets.append(packet) } }
    func close(_ reason: String) { state.withLockedValue { $0.closedReason = $0.closedReason ?? reason } }

    func pop() -> Next {
        state.withLockedValue { state in
            if !state.packets.isEmpty { return .packet(state.packets.removeFirst()) }
            if let reason = state.closedReason { return .closed(reason) }
            return .empty
        }
    }
}

private final class InboxHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = MQTTPacket
    private let inbox: PacketInbox

    init(inbox: PacketInbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.push(unwrapInboundIn(data))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.close("\(error)")
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.close("end of stream")
    }
}
