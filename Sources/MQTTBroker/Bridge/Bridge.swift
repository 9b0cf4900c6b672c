import Atomics
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// One `connection` block at work: a session on this broker that subscribes to the `out`
/// topics, and a client connection to the remote broker that forwards what the session
/// receives and publishes here what the remote broker sends on the `in` topics.
///
/// The session is persistent: with `persistence true` its QoS 1/2 copies wait in the store
/// (in order, across restarts and crashes) until the remote broker acknowledged them, and only
/// a window of them is in memory however long the remote broker is away. It never holds local
/// publishers back: the backlog is on disk.
///
/// Everything here runs on one event loop (the rules in ``BridgeLifecycle`` and
/// ``BridgeConnectionStateMachine``, the connection, the timers); other threads only read the
/// ``BridgeCounters``.
final class Bridge: @unchecked Sendable {
    let configuration: BridgeConfiguration
    let localClientID: String
    let remoteClientID: String
    let session: Session
    let counters = BridgeCounters()
    private let core: BrokerCore
    private let eventLoop: any EventLoop
    private let sslContext: NIOSSLContext?
    private let settings: BridgeConnectionStateMachine.Settings
    /// Where "1"/"0" is published here; nil when notifications are off.
    private let localNotificationTopic: String?
    private let logger: Logger

    // Only on `eventLoop`:
    private var lifecycle: BridgeLifecycle
    private var connection: Connection?
    private var attempts = 0
    private var tickTask: RepeatedTask?
    private var wakeTask: Scheduled<Void>?
    private var stopping = false

    /// One connection to the remote broker, from the attempt to its end; touched only on the
    /// bridge's event loop (completions on other threads hop there first).
    private final class Connection: @unchecked Sendable {
        let number: Int
        let address: BridgeConfiguration.Address
        var machine: BridgeConnectionStateMachine
        var channel: (any Channel)?
        var outlet: SessionOutlet?
        /// The CONNACK refused the protocol level (the bridge bit).
        var refusedProtocolVersion = false
        /// Local subscribers the last incoming message went to are over their high-water mark:
        /// the connection is not read until they drain.
        var congested = 0

        init(number: Int, address: BridgeConfiguration.Address, machine: BridgeConnectionStateMachine) {
            self.number = number
            self.address = address
            self.machine = machine
        }
    }

    /// Makes the bridge and its session (subscribed to the `out` topics at once, so nothing
    /// published from now on is missed); ``start()`` connects.
    init(_ configuration: BridgeConfiguration, core: BrokerCore, eventLoop: any EventLoop) throws(TLSSetupError) {
        let hostname = BridgeConfiguration.hostname
        self.configuration = configuration
        self.core = core
        self.eventLoop = eventLoop
        self.localClientID = configuration.localClientID(hostname: hostname)
        self.remoteClientID = configuration.remoteClientID(hostname: hostname)
        self.localNotificationTopic = configuration.notifications ? configuration.notificationTopic(hostname: hostname) : nil
        self.settings = BridgeConnectionStateMachine.Settings(configuration, hostname: hostname, persistence: core.store != nil)
        self.lifecycle = BridgeLifecycle(settings: .init(configuration))
        self.sslContext = try BridgeTLS.makeContext(for: configuration)
        var logger = core.logger
        logger[metadataKey: "bridge"] = "\(configuration.name)"
        self.logger = logger
        self.session = Self.openSession(localClientID: localClientID, topics: settings.topics, core: core)
    }

    /// The bridge's session: kept (with what waits in the store) across restarts, never
    /// expiring, subscribed to the `out` topics of the configuration in force.
    private static func openSession(localClientID: String, topics: BridgeTopicMap, core: BrokerCore) -> Session {
        let (session, _) = core.sessions.open(clientID: localClientID, cleanStart: false)
        session.expiryInterval = UInt32.max
        session.setExpiryTask(nil)
        session.forwardsToBridge()
        var operations: [StoreOperation] = [.putSession(clientID: localClientID, expiryInterval: UInt32.max)]
        // Subscriptions of an older configuration (or restored from the store) go.
        for filter in session.subscriptions.keys {
            _ = session.removeSubscription(filter)
            core.router.unsubscribe(filter, session: session)
            operations.append(.deleteSubscription(clientID: localClientID, filter: filter))
        }
        for (filter, options) in topics.localSubscriptions {
            _ = session.addSubscription(filter, state: .init(options: options, identifier: nil, sharedGroup: nil))
            core.router.subscribe(filter, entry: RouteEntry(session: session, options: options, identifier: nil))
        }
        core.store?.record(operations)
        return session
    }

    // MARK: Starting and stopping

    /// Publishes the first "0" here and connects (now, or once a lazy bridge has enough to send).
    func start() {
        eventLoop.execute { [self] in
            notifyLocally(connected: false)
            tickTask = eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in tick() }
            logger.notice(
                "bridge starting",
                metadata: [
                    "addresses": "\(configuration.addresses.map(\.description).joined(separator: " "))", "localClientID": "\(localClientID)",
                    "remoteClientID": "\(remoteClientID)", "queued": "\(session.queuedMessageCount)",
                ]
            )
            perform(lifecycle.start())
        }
    }

    /// Stops for good: the remote broker is told "0" on the notification topic and DISCONNECT.
    func stop() -> EventLoopFuture<Void> {
        eventLoop.submit { [self] in
            stopping = true
            lifecycle.stop()
            tickTask?.cancel()
            wakeTask?.cancel()
            guard let connection else { return }
            closeGracefully(connection, why: "the broker is shutting down")
        }
    }

    // MARK: Lifecycle actions

    private func perform(_ action: BridgeLifecycle.Action) {
        switch action {
        case .none:
            break
        case .connect(let address, let tryPrivate):
            connect(to: address, tryPrivate: tryPrivate)
        case .wake(let deadline):
            wakeTask?.cancel()
            wakeTask = eventLoop.scheduleTask(deadline: deadline) { [self] in tick() }
        case .disconnect(let why):
            if let connection { closeGracefully(connection, why: why) }
        case .probePrimary:
            probePrimary()
        }
    }

    private func tick() {
        let now = NIODeadline.now()
        if let connection {
            let action = connection.machine.tick(now: now)
            handle(action, on: connection)
        }
        perform(lifecycle.tick(now: now, queued: session.queuedMessageCount, lastTraffic: counters.lastTraffic))
    }

    // MARK: Connecting

    private func connect(to index: Int, tryPrivate: Bool) {
        attempts += 1
        if attempts > 1 { counters.reconnects.wrappingIncrement(ordering: .relaxed) }
        let address = configuration.addresses[index]
        let connection = Connection(
            number: attempts,
            address: address,
            machine: BridgeConnectionStateMachine(settings: settings, now: .now())
        )
        self.connection = connection
        guard let command = configuration.jwtCommand else {
            let password = configuration.remotePassword.map { ByteBuffer(string: $0) }
            return open(connection, tryPrivate: tryPrivate, password: password)
        }
        let eventLoop = self.eventLoop
        Task {
            let result: Result<String, any Error>
            do {
                result = .success(try await BridgeCredentialCommand.output(of: command))
            } catch {
                result = .failure(error)
            }
            eventLoop.execute { [self] in
                guard self.connection === connection, !stopping else { return }
                switch result {
                case .success(let token):
                    open(connection, tryPrivate: tryPrivate, password: ByteBuffer(string: token))
                case .failure(let error):
                    logger.error("bridge_jwt_command failed; not connecting", metadata: ["error": "\(error)"])
                    ended(connection)
                }
            }
        }
    }

    private func open(_ connection: Connection, tryPrivate: Bool, password: ByteBuffer?) {
        let address = connection.address
        let version = configuration.protocolVersion
        let maximumPacketSize = core.configuration.value.effectiveMaxPacketSize
        let sslContext = self.sslContext
        let serverHostname = BridgeTLS.serverHostname(address.host)
        let number = connection.number
        logger.info("bridge connecting", metadata: ["address": "\(address)", "try_private": "\(tryPrivate)"])
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(Int64(max(configuration.keepaliveInterval, 5))))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let sslContext {
                        try pipeline.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: serverHostname))
                    }
                    try pipeline.addHandler(ByteToMessageHandler(MQTTPacketDecoder(version: version, maximumPacketSize: maximumPacketSize)))
                    try pipeline.addHandler(BridgeChannelHandler(bridge: self, connection: number))
                }
            }
            .connect(host: address.host, port: address.port)
            .whenComplete { [self] result in
                switch result {
                case .success(let channel):
                    guard self.connection === connection, !stopping else {
                        channel.close(promise: nil)
                        return
                    }
                    connection.channel = channel
                    write([.connect(connection.machine.connectPacket(tryPrivate: tryPrivate, password: password))], to: channel)
                case .failure(let error):
                    guard self.connection === connection else { return }
                    logger.warning("bridge could not connect", metadata: ["address": "\(address)", "error": "\(error)"])
                    ended(connection)
                }
            }
    }

    /// The attempt or connection ended (it never opened, or its channel closed).
    private func ended(_ connection: Connection) {
        guard self.connection === connection else { return }
        self.connection = nil
        if let outlet = connection.outlet {
            session.detach(outlet)
            counters.connected.store(false, ordering: .relaxed)
            notifyLocally(connected: false)
            logger.notice("bridge connection lost", metadata: ["address": "\(connection.address)", "queued": "\(session.queuedMessageCount)"])
        }
        perform(lifecycle.connectionEnded(now: .now(), refusedProtocolVersion: connection.refusedProtocolVersion))
    }

    /// Sees whether the main address answers again (round_robin false), with a TCP connection only.
    private func probePrimary() {
        let address = configuration.addresses[0]
        ClientBootstrap(group: eventLoop)
            .connectTimeout(.seconds(2))
            .connect(host: address.host, port: address.port)
            .whenComplete { [self] result in
                guard case .success(let channel) = result else { return }
                channel.close(promise: nil)
                logger.notice("bridge going back to its main address", metadata: ["address": "\(address)"])
                perform(lifecycle.primaryAnswered())
            }
    }

    // MARK: Channel events (from BridgeChannelHandler, on the event loop)

    func received(_ packet: MQTTPacket, connection number: Int) {
        guard let connection, connection.number == number else { return }
        counters.touch()
        let action = connection.machine.packetReceived(packet, now: .now(), session: SessionRulesView(session: session, checksAccess: false))
        handle(action, on: connection)
    }

    func closed(connection number: Int) {
        guard let connection, connection.number == number else { return }
        ended(connection)
    }

    func writabilityChanged(connection number: Int, writable: Bool) {
        guard writable, let connection, connection.number == number, connection.outlet != nil else { return }
        session.resumeSending(now: .now())
    }

    /// The session's connection is being closed from elsewhere: broker shutdown, or a client
    /// that connected with the bridge's local client identifier took the session over.
    func closeRequested(connection number: Int) {
        guard let connection, connection.number == number else { return }
        if !stopping {
            logger.error(
                "a client took over the bridge's session by connecting with its local client identifier; closing the bridge connection",
                metadata: ["localClientID": "\(localClientID)"]
            )
        }
        closeGracefully(connection, why: stopping ? "the broker is shutting down" : "session taken over")
    }

    func failed(connection number: Int, error: any Error) {
        guard let connection, connection.number == number else { return }
        logger.warning("bridge connection error", metadata: ["address": "\(connection.address)", "error": "\(error)"])
        connection.channel?.close(promise: nil)
    }

    // MARK: Connection actions

    private func handle(_ action: BridgeConnectionStateMachine.Action, on connection: Connection) {
        switch action {
        case .none:
            break
        case .connected(let negotiated, let packets):
            connected(connection, negotiated: negotiated, packets: packets)
        case .refused(let reason, let why, let protocolVersion):
            connection.refusedProtocolVersion = protocolVersion
            logger.error("\(why)", metadata: ["address": "\(connection.address)", "reason": "\(reason)"])
            connection.channel?.close(promise: nil)
        case .route(let inbound):
            route(inbound, on: connection)
        case .send(let packet):
            connection.outlet?.send(packet)
        case .sendAfterStoring(let packet, let operations):
            connection.outlet?.send(packet, afterStoring: operations, in: core.store)
        case .outbound(let acknowledgement):
            session.acknowledged(acknowledgement, now: .now())
        case .subscriptionsRefused(let filters):
            logger.warning("the remote broker refused subscriptions", metadata: ["filters": "\(filters.joined(separator: " "))"])
        case .close(let why):
            logger.warning("closing the bridge connection: \(why)", metadata: ["address": "\(connection.address)"])
            connection.channel?.close(promise: nil)
        }
    }

    private func connected(_ connection: Connection, negotiated: BridgeConnectionStateMachine.Negotiated, packets: [MQTTPacket]) {
        guard let channel = connection.channel else { return }
        let now = NIODeadline.now()
        lifecycle.connected(now: now)
        let limit = [configuration.maxPacketSize > 0 ? configuration.maxPacketSize : nil, negotiated.maximumPacketSize].compactMap { $0 }.min()
        let outlet = SessionOutlet(
            channel: channel,
            protocolVersion: configuration.protocolVersion,
            clientMaximumPacketSize: limit,
            sendQuota: min(core.receiveMaximum, negotiated.receiveMaximum),
            topicAliasMaximum: negotiated.topicAliasMaximum,
            statistics: core.statistics,
            rewriter: BridgeRewriter(
                topics: settings.topics,
                keepsRetain: configuration.outgoingRetain && negotiated.retainAvailable,
                counters: counters
            )
        )
        connection.outlet = outlet
        // Before anything of the session's: straight to the channel (not counted as forwarded).
        write(packets, to: channel)
        if !negotiated.sessionPresent {
            // A new session on the remote broker: it will not release QoS 2 messages it sent
            // the old one, and may use their identifiers again.
            let forgotten = session.releaseAllIncoming()
            if let store = core.store, !forgotten.isEmpty {
                store.record(forgotten.map { .deleteIncoming(clientID: localClientID, packetIdentifier: $0) })
            }
        }
        // What was in flight goes again (DUP), then the backlog, oldest first.
        session.attach(outlet, now: now)
        replayRetained(now: now)
        counters.connected.store(true, ordering: .relaxed)
        notifyLocally(connected: true)
        logger.notice(
            "bridge connected",
            metadata: [
                "address": "\(connection.address)", "sessionPresent": "\(negotiated.sessionPresent)", "queued": "\(session.queuedMessageCount)",
            ]
        )
    }

    /// The retained messages of the `out` topics go to the remote broker at every connection,
    /// as mosquitto sends them (not those that came from it).
    private func replayRetained(now: NIODeadline) {
        for (filter, options) in settings.topics.localSubscriptions {
            for message in core.retained.matching(filter, now: now) where message.publisherID != localClientID {
                session.deliver(message, qos: min(options.qos, message.qos), retain: true, subscriptionIdentifiers: [], now: now)
            }
        }
    }

    /// Publishes a message from the remote broker here; QoS 1/2 are acknowledged once routed
    /// (once stored, with persistence on), so a crash here before that gets them sent again.
    private func route(_ inbound: ConnectionStateMachine.InboundMessage, on connection: Connection) {
        guard let outlet = connection.outlet else { return }
        counters.received.wrappingIncrement(ordering: .relaxed)
        core.statistics.received(inbound.message.qos)
        let acknowledgement = inbound.acknowledgement
        guard inbound.durable else {
            let outcome = core.distributor.publish(inbound.message, now: inbound.receivedAt)
            if let acknowledgement { outlet.send(acknowledgement.packet(.success)) }
            wait(for: outcome.congested, on: connection)
            return
        }
        let session = self.session
        let logger = self.logger
        let eventLoop = self.eventLoop
        core.distributor.publishDurably(inbound.message, extra: inbound.storeOperations, now: inbound.receivedAt) { [self] result in
            switch result {
            case .success(let outcome):
                if let acknowledgement { outlet.send(acknowledgement.packet(.success)) }
                let congested = outcome.congested
                if !congested.isEmpty { eventLoop.execute { self.wait(for: congested, on: connection) } }
            case .failure(let error):
                guard let acknowledgement else { return }
                logger.error("could not store a message from the remote broker; not acknowledging it", metadata: ["error": "\(error)"])
                if acknowledgement.kind == .pubrec { _ = session.releaseIncoming(acknowledgement.packetIdentifier) }
                switch acknowledgement.storeFailed {
                case .answer(let packet): outlet.send(packet)
                case .close: eventLoop.execute { connection.channel?.close(promise: nil) }
                }
            }
        }
    }

    /// Back-pressure from local subscribers: the remote connection is not read until they drain.
    private func wait(for congested: [Session], on connection: Connection) {
        guard !congested.isEmpty, let channel = connection.channel else { return }
        if connection.congested == 0 { channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in } }
        connection.congested += congested.count
        for subscriber in congested {
            subscriber.whenDrained { [self] in
                eventLoop.execute {
                    connection.congested -= 1
                    if connection.congested == 0 { channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in } }
                }
            }
        }
    }

    /// Tells the remote broker "0" (its will would not go out after a clean DISCONNECT), then
    /// DISCONNECT, and closes.
    private func closeGracefully(_ connection: Connection, why: String) {
        guard connection.machine.phase != .closing else { return }
        logger.notice("closing the bridge connection: \(why)", metadata: ["address": "\(connection.address)"])
        _ = connection.machine.close(why)
        guard let channel = connection.channel else { return }
        if let outlet = connection.outlet {
            outlet.writePending()
            var packets: [MQTTPacket] = []
            if let topic = settings.remoteNotificationTopic {
                packets.append(.publish(PublishPacket(topicName: topic, payload: ByteBuffer(string: "0"), qos: .atMostOnce, retain: true)))
            }
            packets.append(.disconnect(DisconnectPacket()))
            write(packets, to: channel)
        }
        channel.close(promise: nil)
    }

    /// Encodes and writes the bridge's own packets (on the event loop).
    private func write(_ packets: [MQTTPacket], to channel: any Channel) {
        guard !packets.isEmpty else { return }
        var buffer = channel.allocator.buffer(capacity: 256)
        for packet in packets {
            do {
                try packet.write(to: &buffer, version: configuration.protocolVersion)
            } catch {
                logger.error("bridge could not encode \(packet.type)", metadata: ["error": "\(error)"])
            }
        }
        channel.writeAndFlush(buffer, promise: nil)
    }

    /// Publishes "1" or "0", retained, on the notification topic here.
    private func notifyLocally(connected: Bool) {
        guard let topic = localNotificationTopic else { return }
        let message = ApplicationMessage(
            topic: topic,
            payload: ByteBuffer(string: connected ? "1" : "0"),
            qos: .atLeastOnce,
            retain: true,
            publisherID: localClientID
        )
        core.distributor.publish(message, now: .now())
    }
}

/// What a bridge counts, read by `/metrics` from any thread.
final class BridgeCounters: Sendable {
    let connected = ManagedAtomic(false)
    let forwarded = ManagedAtomic(0)
    let received = ManagedAtomic(0)
    let reconnects = ManagedAtomic(0)
    /// When a packet last crossed the bridge (`NIODeadline.uptimeNanoseconds`), for idle lazy bridges.
    private let lastTrafficNanoseconds = ManagedAtomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

    var lastTraffic: NIODeadline { .uptimeNanoseconds(lastTrafficNanoseconds.load(ordering: .relaxed)) }

    func touch() {
        lastTrafficNanoseconds.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
    }
}

/// Maps forwarded messages to the remote broker's topics, and counts them.
final class BridgeRewriter: PublishRewriter {
    private let topics: BridgeTopicMap
    /// False when `bridge_outgoing_retain false` or the remote broker has no retained messages.
    private let keepsRetain: Bool
    private let counters: BridgeCounters

    init(topics: BridgeTopicMap, keepsRetain: Bool, counters: BridgeCounters) {
        self.topics = topics
        self.keepsRetain = keepsRetain
        self.counters = counters
    }

    func rewrite(_ publish: inout PublishPacket) {
        publish.topicName = topics.remoteTopic(forLocal: publish.topicName)
        if !keepsRetain { publish.retain = false }
    }

    func willSend(_ publish: PublishPacket) {
        if !publish.dup { counters.forwarded.wrappingIncrement(ordering: .relaxed) }
        counters.touch()
    }
}
