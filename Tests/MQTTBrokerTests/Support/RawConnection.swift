import DatabusTestSupport
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP connection that sends whatever bytes a test gives it (malformed packets included)
/// and decodes what the broker answers with MQTTCore's decoder.
struct RawConnection: TestConnection {
    private let channel: any Channel
    private let inbox: RawInbox
    let version: MQTTProtocolVersion

    static func connect(port: Int, version: MQTTProtocolVersion = .v5) async throws -> RawConnection {
        let inbox = RawInbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version)))
                    try channel.pipeline.syncOperations.addHandler(RawInboxHandler(inbox: inbox))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return RawConnection(channel: channel, inbox: inbox, version: version)
    }

    /// Connects and completes a CONNECT/CONNACK handshake with `clientIdentifier`.
    static func connected(port: Int, _ clientIdentifier: String, version: MQTTProtocolVersion = .v5) async throws -> RawConnection {
        let connection = try await connect(port: port, version: version)
        try await connection.send(.connect(ConnectPacket(protocolVersion: version, clientIdentifier: clientIdentifier)))
        let packet = try await connection.receive()
        guard case .connack(let connack) = packet, connack.reasonCode == .success else {
            throw InteropError("expected a successful CONNACK, got \(packet)")
        }
        return connection
    }

    /// Writes `bytes` exactly as given, in one write.
    func send(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    /// Encodes `packets` and writes them in one write, so they reach the broker together.
    func send(_ packets: [MQTTPacket]) async throws {
        var buffer = channel.allocator.buffer(capacity: 64)
        for packet in packets { try packet.write(to: &buffer, version: version) }
        try await channel.writeAndFlush(buffer)
    }

    func send(_ packet: MQTTPacket) async throws {
        try await send([packet])
    }

    func receive(within seconds: Double = 5) async throws -> MQTTPacket {
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

    func close() async {
        try? await channel.close()
    }
}

private final class RawInbox: Sendable {
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

private final class RawInboxHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = MQTTPacket
    private let inbox: RawInbox

    init(inbox: RawInbox) { self.inbox = inbox }

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
