import MQTTCore
import NIOCore

/// The channel end of one bridge connection: hands packets and channel events to its
/// ``Bridge`` (on the same event loop) and does nothing else.
final class BridgeChannelHandler: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket

    private let bridge: Bridge
    /// Which of the bridge's connections this is; events of an older one are ignored.
    private let connection: Int

    init(bridge: Bridge, connection: Int) {
        self.bridge = bridge
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bridge.received(unwrapInboundIn(data), connection: connection)
    }

    func channelInactive(context: ChannelHandlerContext) {
        bridge.closed(connection: connection)
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        bridge.writabilityChanged(connection: connection, writable: context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ConnectionHandler.CloseRequest {
            bridge.closeRequested(connection: connection)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        bridge.failed(connection: connection, error: error)
    }
}
