import Logging
import MQTTCore
import NIOCore
import NIOPosix
import NIOSSL

/// Opens the TCP (and TLS) connection on the client's event loop, with the MQTT decoder in its
/// pipeline; the client writes encoded bytes itself (many packets in one buffer).
enum ChannelFactory {
    static func connect(
        configuration: MQTTClient.Configuration,
        eventLoop: any EventLoop,
        events: ConnectionEvents,
        deliver: @escaping @Sendable (ConnectionEvent) -> Void,
        logger: Logger
    ) async throws -> any Channel {
        let sslContext: NIOSSLContext?
        let serverHostname: String?
        if let tls = configuration.tls {
            if tls.insecure {
                logger.warning("TLS certificate verification is OFF (insecure): the broker is not authenticated")
            }
            sslContext = try tls.makeContext()
            // SNI takes names only; for an IP address NIOSSL checks the IP against the certificate.
            let name = tls.serverName ?? configuration.host
            serverHostname = isIPAddress(name) ? nil : name
        } else {
            sslContext = nil
            serverHostname = nil
        }
        let version = configuration.protocolVersion
        let maximumPacketSize = configuration.maximumPacketSize.map(Int.init) ?? maximumVariableByteInteger + 5
        let pin = configuration.tls?.pinnedServerCertificateSHA256
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    try pipeline.addHandler(
                        ByteToMessageHandler(MQTTPacketDecoder(version: version, maximumPacketSize: maximumPacketSize))
                    )
                    try pipeline.addHandler(
                        ConnectionHandler(events: events, deliver: deliver, usesTLS: sslContext != nil, pinnedCertificateSHA256: pin)
                    )
                }
            }
        do {
            let channel = try await bootstrap.connect(host: configuration.host, port: configuration.port).get()
            return channel
        } catch {
            events.finish()
            throw error
        }
    }

    private static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
