import Logging
import MQTTCore
import NIOCore
import NIOSSL
import NIOTLS

/// What a connection's channel reports to the client, in order.
enum ConnectionEvent: Sendable {
    /// TCP is up, and TLS too with the certificate pin checked: CONNECT may be sent.
    case ready
    /// The packets of one read, in order.
    case packets([MQTTPacket])
    /// The channel can take writes again after it was full.
    case writable
    /// The channel closed; the reason when the channel knows one.
    case closed(DisconnectReason?)
}

/// Fired into the pipeline when CONNACK has not come in time.
struct ConnectTimeoutEvent: Sendable {
    let timeout: Duration
}

/// The last handler of a client connection: turns what happens on the channel into
/// ``ConnectionEvent``s and checks the broker's certificate pin. It only moves data; the
/// protocol lives in ``ClientSession`` and ``MQTTClient``.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket

    private let events: ConnectionEvents
    /// Hands an event to the client, on this event loop (see ``MQTTClient/connectionEvent(_:on:)``).
    private let deliver: (ConnectionEvent) -> Void
    private let usesTLS: Bool
    private let pinnedCertificateSHA256: [UInt8]?
    private var closeReason: DisconnectReason?
    /// Packets of the read in progress, handed over together when it completes.
    private var batch: [MQTTPacket] = []

    init(events: ConnectionEvents, deliver: @escaping (ConnectionEvent) -> Void, usesTLS: Bool, pinnedCertificateSHA256: [UInt8]?) {
        self.events = events
        self.deliver = deliver
        self.usesTLS = usesTLS
        self.pinnedCertificateSHA256 = pinnedCertificateSHA256
    }

    func channelActive(context: ChannelHandlerContext) {
        if !usesTLS { deliver(.ready) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let tlsEvent = event as? TLSUserEvent, case .handshakeCompleted = tlsEvent {
            if let pin = pinnedCertificateSHA256 {
                let certificate = try? context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate
                let digest = (try? certificate?.toDERBytes()).map(MQTTClient.TLS.sha256(ofCertificate:))
                guard digest == pin else {
                    closeReason = .connectionFailed("the broker's certificate does not match the pinned SHA-256")
                    context.close(promise: nil)
                    return
                }
            }
            deliver(.ready)
        } else if let timeout = event as? ConnectTimeoutEvent {
            closeReason = closeReason ?? .connectionFailed("no CONNACK within \(timeout.timeout)")
            context.close(promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        batch.append(unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        yieldBatch()
        context.fireChannelReadComplete()
    }

    private func yieldBatch() {
        guard !batch.isEmpty else { return }
        deliver(.packets(batch))
        batch.removeAll(keepingCapacity: true)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { deliver(.writable) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closeReason == nil {
            switch error {
            case let decoding as MQTTDecodingError: closeReason = .protocolError("\(decoding)")
            case let tls as NIOSSLError: closeReason = .connectionFailed("TLS: \(tls)")
            case let tls as BoringSSLError: closeReason = .connectionFailed("TLS: \(tls)")
            default: closeReason = .connectionLost("\(error)")
            }
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        yieldBatch()
        deliver(.closed(closeReason))
        events.finish()
        context.fireChannelInactive()
    }
}
