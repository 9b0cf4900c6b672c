import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The embedded MQTT 3.1.1 + 5.0 broker.
///
/// Connections spread over every event loop of `eventLoopGroup` (one per core by default);
/// routing runs on the publisher's loop and hands packets to each subscriber's loop.
/// As a `Service` it runs until graceful shutdown, then tells 5.0 clients 0x8B
/// (server shutting down) and closes.
public final class MQTTBroker: Service, Sendable {
    private let core: BrokerCore
    private let group: any EventLoopGroup
    private let serverChannels = NIOLockedValueBox<[any Channel]>([])
    private let sysTask = NIOLockedValueBox<RepeatedTask?>(nil)
    /// The TLS contexts of TLS listeners, by the listener's index in the configuration.
    private let tlsListeners = NIOLockedValueBox<[Int: ListenerTLS]>([:])
    /// With `park_idle_connections`: where idle connections wait, and the plain-TCP listeners
    /// it accepts on.
    private let parking = NIOLockedValueBox<(lot: ParkingLot, listeners: [OwnListener])?>(nil)
    /// The addresses of the listeners, in the configuration's order.
    private let listenerAddresses = NIOLockedValueBox<[SocketAddress]>([])

    /// - Parameters:
    ///   - configuration: listeners, limits and behaviour, e.g. from ``MosquittoConfigParser``.
    ///   - logger: where connections, refusals and errors are logged.
    ///   - authenticator: decides who may connect; `nil` applies `allow_anonymous` alone.
    ///   - eventLoopGroup: the loops connections run on.
    public init(
        configuration: BrokerConfiguration,
        logger: Logger = Logger(label: "databus.broker"),
        authenticator: (any Authenticator)? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.core = BrokerCore(configuration: configuration, logger: logger, authenticator: authenticator)
        self.group = eventLoopGroup
    }

    /// Binds every listener and starts serving.
    /// - Returns: the addresses bound, in the order of the configuration's listeners.
    /// - Throws: ``TLSSetupError`` when a TLS listener's files do not load.
    @discardableResult
    public func start() async throws -> [SocketAddress] {
        let listeners = core.configuration.value.listeners
        var tls: [Int: ListenerTLS] = [:]
        for (index, listener) in listeners.enumerated() where listener.tls.isEnabled {
            let loaded = try ListenerTLS(name: listener.displayName, settings: listener.tls)
            tls[index] = loaded
            logTLS(loaded.loaded, of: loaded, event: "TLS listener ready")
        }
        tlsListeners.withLockedValue { $0 = tls }
        core.apply(try await SecurityPolicy.load(core.configuration.value))
        try core.openStore(on: group.next())
        try core.startBridges(on: group)
        var addresses: [SocketAddress] = []
        if core.configuration.value.parkIdleConnections > 0, listeners.contains(where: { !$0.tls.isEnabled }) {
            let lot = try ParkingLot(statistics: core.statistics, logger: core.logger)
            parking.withLockedValue { $0 = (lot, []) }
        }
        for (index, listener) in listeners.enumerated() {
            if let lot = parking.withLockedValue({ $0?.lot }), tls[index] == nil {
                let own = try bindParking(listener, index: index, lot: lot)
                addresses.append(own.localAddress)
                parking.withLockedValue { $0?.listeners.append(own) }
                continue
            }
            let channels = try await bind(listener, index: index, tls: tls[index])
            addresses += channels.compactMap(\.localAddress)
            serverChannels.withLockedValue { $0 += channels }
        }
        if let listener = core.configuration.value.metricsListener {
            let channel = try await bindMetrics(listener)
            serverChannels.withLockedValue { $0.append(channel) }
            core.logger.notice("metrics at http://\(channel.localAddress.map { "\($0)" } ?? "?")/metrics")
        }
        listenerAddresses.withLockedValue { $0 = addresses }
        startSysTopics()
        if !tls.isEmpty { core.metrics.certificateExpiry.checkDaily(on: group.next(), logger: core.logger) }
        core.logger.notice("databus broker listening", metadata: ["addresses": "\(addresses.map { "\($0)" })"])
        return addresses
    }

    /// Applies a re-read configuration (SIGHUP): limits, logging and behaviour for new
    /// connections, queue limits for existing sessions; password files, JWT keys and ACLs are
    /// read again, and the ACLs apply to connected clients at once. TLS listeners re-read their
    /// certificate, key, CA and CRL files: new connections use them, connections already open
    /// keep theirs, and files that do not load leave the previous ones in use (logged as an error).
    /// - Returns: the settings that changed but take effect only after a restart.
    /// - Throws: when a password, ACL or key file cannot be read or parsed; nothing changes then.
    @discardableResult
    public func reload(_ configuration: BrokerConfiguration) async throws(ConfigurationError) -> [String] {
        let policy = try await SecurityPolicy.load(configuration)
        let ignored = core.reload(configuration, policy: policy)
        let listeners = core.configuration.value.listeners
        for (index, tls) in tlsListeners.withLockedValue({ $0 }).sorted(by: { $0.key < $1.key }) where index < listeners.count {
            do {
                let loaded = try tls.reload(listeners[index].tls)
                logTLS(loaded, of: tls, event: "TLS files reloaded")
                core.disconnectRevokedClients(of: tls)
            } catch {
                core.logger.error("reload: keeping the previous TLS files: \(error)", metadata: ["listener": "\(tls.name)"])
            }
        }
        core.logger.notice(
            "configuration reloaded",
            metadata: ignored.isEmpty ? [:] : ["needs restart": "\(ignored.joined(separator: ", "))"]
        )
        return ignored
    }

    /// Loads every TLS listener's files as ``start()`` does, without binding anything
    /// (`databus broker --test-config`).
    /// - Returns: warnings about settings that cannot be applied exactly.
    /// - Throws: ``TLSSetupError`` naming the listener, key and file that do not load.
    public static func checkTLSFiles(_ configuration: BrokerConfiguration) throws(TLSSetupError) -> [String] {
        var warnings: [String] = []
        for listener in configuration.listeners where listener.tls.isEnabled {
            let loaded = try ListenerTLS.load(listener.tls, name: listener.displayName)
            warnings += loaded.warnings.map { "\(listener.displayName): \($0)" }
        }
        for bridge in configuration.bridges { _ = try BridgeTLS.makeContext(for: bridge) }
        return warnings
    }

    /// Reads the password files, ACL files and JWT keys `configuration` names, as ``start()``
    /// and ``reload(_:)`` will: the first unreadable or malformed one is the error.
    public static func checkSecurityFiles(_ configuration: BrokerConfiguration) async throws(ConfigurationError) {
        _ = try await SecurityPolicy.load(configuration)
    }

    private func logTLS(_ loaded: ListenerTLS.Loaded, of tls: ListenerTLS, event: String) {
        var metadata: Logger.Metadata = ["listener": "\(tls.name)"]
        if let certificate = loaded.certificate {
            metadata["certificate"] = "\(certificate.subject)"
            metadata["notAfter"] = "\(certificate.notValidAfter)"
        }
        core.logger.notice("\(event)", metadata: metadata)
        for warning in loaded.warnings { core.logger.warning("\(warning)", metadata: ["listener": "\(tls.name)"]) }
        core.metrics.certificateExpiry.track(listener: tls.name, loaded, logger: core.logger)
    }

    /// The addresses the broker's listeners are bound to, in the configuration's order.
    public var localAddresses: [SocketAddress] {
        listenerAddresses.withLockedValue { $0 }
    }

    /// Stops accepting connections, disconnects every client (0x8B for 5.0) and closes.
    public func shutdown() async {
        sysTask.withLockedValue { $0?.cancel() }
        core.metrics.certificateExpiry.stop()
        let channels = serverChannels.withLockedValue { channels in
            defer { channels = [] }
            return channels
        }
        for channel in channels { try? await channel.close() }
        let parking = self.parking.withLockedValue { parking in
            defer { parking = nil }
            return parking
        }
        for listener in parking?.listeners ?? [] { listener.close() }
        await core.stopBridges()
        core.disconnectAll()
        // Parked connections come back for their DISCONNECT; then they are closed too.
        await parking?.lot.stop()
        if parking != nil { core.connections.closeAll() }
        await core.flushStore()
        // Every connection writes its DISCONNECT before it ends: wait for them all (2 s at
        // most), then give the packets a moment to leave before the caller tears the loops down.
        let deadline = ContinuousClock.now + .seconds(2)
        while core.statistics.clientsConnected.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        try? await Task.sleep(for: .milliseconds(50))
    }

    /// Runs until graceful shutdown (SIGTERM/SIGINT through a ServiceGroup) or cancellation.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    private func bind(_ bound: BrokerConfiguration.Listener, index: Int, tls: ListenerTLS?) async throws -> [any Channel] {
        let core = self.core
        let connections = ManagedConnectionCount(limit: bound.maxConnections)
        let shared = SharedListener(index: index, bound)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard connections.open(on: shared, core) else { return channel.close() }
                return channel.eventLoop.makeCompletedFuture {
                    do {
                        try ConnectionHandler.setOptions(of: channel, core.configuration.value)
                        if let tls {
                            try channel.pipeline.syncOperations.addHandler(tls.makeServerHandler())
                            try channel.pipeline.syncOperations.addHandler(TLSHandshakeMonitor(core: core, listener: tls.name))
                        }
                        try channel.pipeline.syncOperations.addHandler(ConnectionHandler(core: core, listener: shared, counted: connections))
                    } catch {
                        // The connection handler (which leaves the count when removed) was never added.
                        connections.close()
                        throw error
                    }
                }
            }
        if let address = bound.address {
            return [try await bootstrap.bind(host: address, port: bound.port).get()]
        }
        // No address: every IPv6 and IPv4 address, as mosquitto does.
        do {
            return [try await bootstrap.bind(host: "::", port: bound.port).get()]
        } catch {
            return [try await bootstrap.bind(host: "0.0.0.0", port: bound.port).get()]
        }
    }

    /// Binds a plain-TCP listener whose connections the parking lot accepts (so that the broker
    /// knows their descriptors and can park them).
    private func bindParking(_ bound: BrokerConfiguration.Listener, index: Int, lot: ParkingLot) throws -> OwnListener {
        let core = self.core
        let group = self.group
        let connections = ManagedConnectionCount(limit: bound.maxConnections)
        let shared = SharedListener(index: index, bound)
        let parking = ParkingContext(core: core, listener: shared, connections: connections, lot: lot)
        let accepted: @Sendable (CInt) -> Void = { descriptor in
            guard connections.open(on: shared, core) else {
                _ = Glibc.close(descriptor)
                return
            }
            // Made here, on the lot's thread, as the channel is: the handler goes when the
            // connection parks, and its memory goes with the channel's (see ``ParkingLot``).
            let handler = HandedOver(ConnectionHandler(core: core, listener: shared, counted: connections, descriptor: descriptor, parking: parking))
            ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        do {
                            try handler.value.configure(channel)
                        } catch {
                            // The handler (which leaves the count when removed) was never added.
                            connections.close()
                            throw error
                        }
                    }
                }
                .withConnectedSocket(descriptor)
                .whenFailure { error in core.logger.notice("could not take a connection: \(error)") }
        }
        if let address = bound.address {
            return try lot.listen(host: address, port: bound.port, accepted: accepted)
        }
        // No address: every IPv6 and IPv4 address, as mosquitto does.
        do {
            return try lot.listen(host: "::", port: bound.port, accepted: accepted)
        } catch {
            return try lot.listen(host: "0.0.0.0", port: bound.port, accepted: accepted)
        }
    }

    /// The address of the metrics listener, once started.
    public var metricsAddress: SocketAddress? {
        guard core.configuration.value.metricsListener != nil else { return nil }
        return serverChannels.withLockedValue { $0.last?.localAddress }
    }

    /// The Prometheus text of the broker's metrics, as the `metrics_listener` serves it, for an
    /// application that serves `/metrics` itself (`databus up` adds the LPR server's).
    public func prometheusText() -> [UInt8] {
        core.metrics.render(core)
    }

    private func bindMetrics(_ listener: BrokerConfiguration.Listener) async throws -> any Channel {
        let core = self.core
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(core: core))
                }
            }
            .bind(host: listener.address ?? "0.0.0.0", port: listener.port).get()
    }

    // MARK: $SYS

    private func startSysTopics() {
        let interval = core.configuration.value.sysInterval
        guard interval > 0 else { return }
        let core = self.core
        let task = group.next().scheduleRepeatedTask(initialDelay: .zero, delay: .seconds(Int64(interval))) { _ in
            SysTopics.publish(core)
        }
        sysTask.withLockedValue { $0 = task }
    }
}

/// Connections open on one listener, against its `max_connections`.
final class ManagedConnectionCount: Sendable {
    private let limit: Int
    private let count = NIOLockedValueBox(0)

    init(limit: Int) { self.limit = limit }

    /// Counts a connection `listener` accepted; false (logged) when its `max_connections` is reached.
    func open(on listener: SharedListener, _ core: BrokerCore) -> Bool {
        let opened = count.withLockedValue { count in
            guard limit < 0 || count < limit else { return false }
            count += 1
            return true
        }
        if !opened {
            core.logger.warning("refusing a connection: max_connections \(listener.current(in: core.configuration.value).maxConnections) reached")
        }
        return opened
    }

    func close() { count.withLockedValue { $0 -= 1 } }
}
