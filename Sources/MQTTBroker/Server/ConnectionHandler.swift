import Logging
import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One client connection on its event loop: it decodes the bytes the client sends and feeds
/// what happens (packets, decoding errors, timers, close requests) to a
/// ``ConnectionStateMachine``, and carries out the actions that come back. The protocol rules
/// live in the state machine; this class only does the I/O and
/// talks to the shared parts of the broker (sessions, the distributor, the store).
///
/// Packets to the client leave through its ``SessionOutlet``. When the broker closes the
/// connection it tells a 5.0 client why (DISCONNECT with a reason code), shuts its side down
/// for writing and reads (and ignores) what the client still sends for a moment, so that the
/// client reads the reason instead of a connection reset.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Asks the handler, on its event loop, to close its connection telling a 5.0 client `reason`.
    /// (An object: a parked connection keeps an optional one, 8 bytes rather than 24.)
    final class CloseRequest: Sendable {
        let reason: ReasonCode
        let why: String

        init(reason: ReasonCode, why: String) {
            self.reason = reason
            self.why = why
        }
    }

    /// How long a connection the broker closed stays open for reading after the broker's
    /// last packet, so that the client reads it rather than a reset.
    static let closeLinger = TimeAmount.seconds(5)

    private let core: BrokerCore
    /// The configuration when the connection opened; a reload applies to later connections.
    private let snapshot: ConfigurationSnapshot
    private var configuration: BrokerConfiguration { snapshot.value }
    /// The listener that accepted the connection (shared by its connections).
    private let boundListener: SharedListener
    /// The listener's open connections, which this one leaves when its pipeline is torn down.
    private let connections: ManagedConnectionCount?
    private var listener: BrokerConfiguration.Listener { boundListener.current(in: configuration) }
    private var machine: ConnectionStateMachine
    /// Decoding happens here rather than in a handler of its own: one handler fewer in every
    /// connection's pipeline, and no packet wrapped in `NIOAny` on its way.
    private var decoder: MQTTPacketDecoder
    /// The start of a packet not yet whole; nil while every byte read has been decoded, so an
    /// idle connection keeps no buffer.
    private var undecoded: ByteBuffer?
    /// Set once the input failed to decode: what the client sends after it is not decoded.
    private var decodingStopped = false
    private var session: Session?
    private var outlet: SessionOutlet?
    /// Who is at the other end, for the log.
    private var peer: PeerAddress?
    private var clientID: String?
    private var connectTimeout: Scheduled<Void>?
    /// Its event loop's connections, while this one is open.
    private var loopConnections: LoopConnections?
    /// Where this connection is among them (see ``LoopConnections``).
    var loopSlot: Int?
    private var lingerTask: Scheduled<Void>?
    private var lingerReads: RepeatedTask?
    /// The broker closed the connection and waits for the client to read that (``closeAfterLinger(context:)``).
    private var lingering = false
    /// Whether the channel reads (autoRead): off while the client does not read what we send
    /// it, or while it waits for subscribers it feeds (back-pressure, see ``ConnectionStateMachine``).
    private var reading = true
    /// The socket's descriptor, when the broker accepted it itself (plain TCP while parking is
    /// on): only such connections park.
    private var descriptor: CInt?
    /// The listener's parking lot and what a resumed handler needs of the listener (nil for
    /// connections that never park).
    private let parking: ParkingContext?
    /// Set once the connection parked (``ParkingLot``): this handler's channel is gone, its
    /// last events are ignored, and a new handler carries on when the connection comes back.
    private var parked = false
    /// For a handler made for a parked connection coming back: what it carries on from.
    private var resuming: ParkedConnection?

    init(
        core: BrokerCore,
        listener: SharedListener,
        counted connections: ManagedConnectionCount? = nil,
        descriptor: CInt? = nil,
        parking: ParkingContext? = nil
    ) {
        self.core = core
        self.connections = connections
        self.descriptor = descriptor
        self.parking = parking
        let snapshot = core.configuration.snapshot
        self.snapshot = snapshot
        self.machine = ConnectionStateMachine(limits: .init(snapshot.value), now: .now())
        self.decoder = MQTTPacketDecoder(maximumPacketSize: snapshot.value.effectiveMaxPacketSize)
        self.boundListener = listener
    }

    /// What a parked connection keeps of its handler, to carry on in a new one: the handler
    /// itself (with its timers, buffers and channel) is freed while the connection is parked.
    struct Resumption {
        let parking: ParkingContext
        let snapshot: ConfigurationSnapshot
        let machine: ConnectionStateMachine.Parked
        let decoder: MQTTPacketDecoder
        let session: Session
        let outlet: SessionOutlet
        let peer: PeerAddress?
    }

    /// A handler for `car`, a parked connection coming back in a new channel.
    init(resuming car: ParkedConnection) {
        let resumption = car.resumption
        self.core = resumption.parking.core
        self.snapshot = resumption.snapshot
        self.boundListener = resumption.parking.listener
        self.connections = resumption.parking.connections
        self.parking = resumption.parking
        self.machine = ConnectionStateMachine(
            resuming: resumption.machine,
            limits: .init(resumption.snapshot.value),
            lastActivity: car.lastActivity
        )
        self.decoder = resumption.decoder
        self.session = resumption.session
        self.outlet = resumption.outlet
        self.peer = resumption.peer
        self.clientID = resumption.session.clientID
        self.descriptor = car.descriptor
        self.resuming = car
    }

    /// The broker's logger with this connection's peer and client. Built when something is
    /// logged (rarely, never per message): a logger kept per connection with its own metadata
    /// cost an idle connection about 900 bytes.
    private var logger: Logger {
        var logger = core.logger
        if let peer = peer?.socketAddress { logger[metadataKey: "peer"] = "\(peer)" }
        if let clientID { logger[metadataKey: "client"] = "\(clientID)" }
        return logger
    }

    /// The session as the state machine consults it: the ACL only when one is in force.
    private var sessionRules: SessionRulesView {
        SessionRulesView(session: session, checksAccess: core.security.checksAccess)
    }

    // MARK: Channel events

    /// Sets up a channel the broker accepted itself (or a parked connection's new channel) and
    /// adds this handler to it.
    func configure(_ channel: any Channel) throws {
        try Self.setOptions(of: channel, configuration)
        try channel.pipeline.syncOperations.addHandler(self)
    }

    /// The options of every client connection's channel, however it was accepted.
    static func setOptions(of channel: any Channel, _ configuration: BrokerConfiguration) throws {
        try channel.syncOptions?.setOption(.tcpOption(.tcp_nodelay), value: configuration.setTCPNoDelay ? 1 : 0)
        try channel.syncOptions?.setOption(.maxMessagesPerRead, value: 16)
        // Each connection keeps its receive buffer between reads: start small (an idle camera
        // sends a PINGREQ now and then) and let busy connections grow it.
        try channel.syncOptions?.setOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 64, maximum: 65_536))
    }

    func channelActive(context: ChannelHandlerContext) {
        let loopConnections = core.connections.connections(on: context.eventLoop)
        loopConnections.add(self, context: context)
        self.loopConnections = loopConnections
        if let resuming { return resumed(resuming, context: context) }
        // Not the channel's own address object: it may have been made on the parking lot's
        // thread (which accepted the connection), and kept it would hold that thread's memory.
        peer = context.channel.remoteAddress.flatMap(PeerAddress.init)
        let seconds = Int64(configuration.connectTimeout)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        connectTimeout = context.eventLoop.scheduleTask(in: .seconds(seconds)) {
            let (handler, context) = bound.value
            handler.logger.notice("closing a connection that sent no CONNECT within \(seconds) s")
            context.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        guard !parked else { return }
        connections?.close()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        core.statistics.bytesReceived.wrappingIncrement(by: bytes.readableBytes, ordering: .relaxed)
        guard !decodingStopped else { return }
        if var pending = undecoded {
            undecoded = nil
            pending.writeBuffer(&bytes)
            decodePackets(from: &pending, context: context)
            guard pending.readableBytes > 0, !decodingStopped else { return }
            if pending.readerIndex >= 4096 { pending.discardReadBytes() }
            undecoded = pending
        } else {
            decodePackets(from: &bytes, context: context)
            guard bytes.readableBytes > 0, !decodingStopped else { return }
            // A copy of the part packet, so that the channel's receive buffer is not held.
            var copy = context.channel.allocator.buffer(capacity: bytes.readableBytes)
            copy.writeBuffer(&bytes)
            undecoded = copy
        }
    }

    /// Hands each whole packet in `buffer` to the state machine, in order.
    private func decodePackets(from buffer: inout ByteBuffer, context: ChannelHandlerContext) {
        while !decodingStopped {
            let packet: MQTTPacket
            do {
                guard let decoded = try decoder.decode(buffer: &buffer) else { return }
                packet = decoded
            } catch {
                decodingStopped = true
                undecoded = nil
                decodingFailed(error, context: context)
                return
            }
            perform(machine.packetReceived(packet, now: .now(), session: sessionRules), context: context)
        }
    }

    /// Back-pressure: while the client does not read what we send it (its buffer here is over
    /// the high-water mark), we stop reading what it sends, so nothing grows without bound.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading(context: context)
        if context.channel.isWritable { session?.resumeSending(now: .now()) }
        context.fireChannelWritabilityChanged()
    }

    /// Reads the connection only while the client takes what we send it and is not held back
    /// waiting for subscribers it feeds.
    private func updateReading(context: ChannelHandlerContext) {
        guard !lingering else { return }
        let read = context.channel.isWritable && !machine.readingPaused
        guard read != reading else { return }
        reading = read
        context.channel.setOption(ChannelOptions.autoRead, value: read).whenFailure { _ in }
        if read { context.read() }
    }

    /// The client's message went to subscribers over their high-water mark: its flow waits until
    /// each has drained (a client is never held back by its own session).
    private func wait(for congested: [Session], context: ChannelHandlerContext) {
        let others = congested.filter { $0 !== session }
        guard !others.isEmpty, machine.phase == .connected else { return }
        machine.subscribersCongested(others.count)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        for subscriber in others {
            subscriber.whenDrained {
                eventLoop.execute {
                    let (handler, context) = bound.value
                    handler.subscriberDrained(context: context)
                }
            }
        }
    }

    private func subscriberDrained(context: ChannelHandlerContext) {
        machine.subscriberDrained()
        guard machine.phase == .connected else { return }
        while let packet = machine.takeHeld() {
            perform(machine.heldPacketReleased(packet, now: .now(), session: sessionRules), context: context)
        }
        updateReading(context: context)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let request = event as? CloseRequest {
            if let close = machine.closeDecided(reason: request.reason, why: request.why) { self.close(close, context: context) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error: \(error)")
        context.close(promise: nil)
    }

    private func decodingFailed(_ error: MQTTDecodingError, context: ChannelHandlerContext) {
        switch machine.decodingFailed(error) {
        case .refuseProtocolVersion(let why):
            logger.notice("refusing connection: \(why)")
            core.statistics.refused(.unsupportedProtocolVersion)
            let refusal = context.channel.allocator.buffer(bytes: [0x20, 0x02, 0x00, ConnectReturnCode.unacceptableProtocolVersion.rawValue])
            context.write(wrapOutboundOut(refusal), promise: nil)
            closeAfterLinger(context: context)
        case .close(let close):
            self.close(close, context: context)
        case .ignore:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        guard !parked else { return context.fireChannelInactive() }
        connectTimeout?.cancel()
        connectTimeout = nil
        lingerTask?.cancel()
        lingerReads?.cancel()
        loopConnections?.remove(self)
        loopConnections = nil
        endSession()
        context.fireChannelInactive()
    }

    // MARK: Actions

    private func perform(_ action: ConnectionStateMachine.ReadAction, context: ChannelHandlerContext) {
        switch action {
        case .ignore, .wait:
            break
        case .hold:
            updateReading(context: context)
        case .connect(let connect):
            handleConnect(connect, context: context)
        case .close(let close):
            self.close(close, context: context)
        case .publish(let publish):
            handlePublish(publish, context: context)
        case .send(let packet):
            outlet?.send(packet)
        case .sendAfterStoring(let packet, let operations):
            outlet?.send(packet, afterStoring: operations, in: core.store)
        case .outbound(let acknowledgement):
            session?.acknowledged(acknowledgement, now: .now())
        case .subscribe(let plan):
            subscribe(plan)
        case .unsubscribe(let unsubscribe):
            self.unsubscribe(unsubscribe)
        case .disconnected(let sessionExpiry):
            if let sessionExpiry, let session {
                session.expiryInterval = sessionExpiry
                if sessionExpiry != 0 { core.store?.record([.putSession(clientID: session.clientID, expiryInterval: sessionExpiry)]) }
            }
            logger.debug("client disconnected")
            // What the client asked for before its DISCONNECT (a CONNACK, a PINGRESP, a SUBACK
            // in the same write) still reaches it, as from mosquitto.
            outlet?.writePending()
            endSession()
            context.close(promise: nil)
        }
    }

    // MARK: CONNECT

    private func handleConnect(_ connect: ConnectPacket, context: ChannelHandlerContext) {
        connectTimeout?.cancel()
        connectTimeout = nil
        let sessions = core.sessions
        let action = machine.connectReceived(connect, configuration: configuration, assignIdentifier: sessions.assignClientIdentifier)
        let admission: ConnectionStateMachine.Admission
        switch action {
        case .refuse(let connack, let version, let why):
            return refuse(connack, version: version, why: why, context: context)
        case .authenticate(let admitted):
            admission = admitted
        }
        clientID = admission.clientID
        let request = ConnectRequest(
            clientIdentifier: admission.clientID,
            username: connect.username,
            password: connect.password,
            protocolVersion: connect.protocolVersion,
            listener: listener,
            remoteAddress: context.channel.remoteAddress,
            properties: connect.properties,
            clientCertificate: ClientCertificateIdentity.verifiedPeer(of: context.pipeline.syncOperations)
        )
        let policy = core.security.policy
        let configuration = self.configuration
        let decide: (@Sendable () async -> AuthenticationResult)?
        if let authenticator = core.authenticator {
            decide = { await authenticator.authenticate(request) }
        } else if policy.needsCredentialsCheck(on: listener, configuration) {
            decide = { await policy.authenticate(request, configuration: configuration) }
        } else {
            decide = nil
        }
        guard let decide else {
            // Nothing to hash or verify: decide on the loop, without a task.
            let result: AuthenticationResult =
                configuration.allowsAnonymous(on: listener)
                ? .accepted(username: connect.username, method: "anonymous")
                : .refused(.notAuthorized, why: "anonymous clients are not allowed and no authentication is configured")
            return throttle(result, context: context)
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask { await decide() }.whenSuccess { result in
            let (handler, context) = bound.value
            handler.throttle(result, context: context)
        }
    }

    /// Counts a failed login against the client's address and holds the CONNACK while that
    /// address is being throttled, then answers.
    private func throttle(_ result: AuthenticationResult, context: ChannelHandlerContext) {
        guard machine.phase == .authenticating else { return }
        let address = context.channel.remoteAddress
        if case .refused(let reason, _) = result, reason == .notAuthorized || reason == .badUserNameOrPassword {
            core.statistics.authenticationFailures.wrappingIncrement(ordering: .relaxed)
            core.loginThrottle.recordFailure(from: address)
        }
        let delay = core.loginThrottle.delay(for: address)
        guard delay > .zero else { return admit(result, context: context) }
        core.statistics.throttledConnects.wrappingIncrement(ordering: .relaxed)
        logger.notice("holding the CONNACK \(delay.nanoseconds / 1_000_000) ms: this address keeps failing to log in")
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = bound.value
            handler.admit(result, context: context)
        }
    }

    private func admit(_ result: AuthenticationResult, context: ChannelHandlerContext) {
        guard let action = machine.authenticated(result, configuration: configuration) else { return }
        switch action {
        case .refuse(let connack, let version, let why):
            refuse(connack, version: version, why: why, context: context)
        case .openSession(let request):
            openSession(request, context: context)
        }
    }

    private func openSession(_ request: ConnectionStateMachine.SessionRequest, context: ChannelHandlerContext) {
        guard let connect = machine.admission?.connect else { return }
        let configuration = self.configuration
        let policy = core.security.policy
        let access = policy.access(on: listener, configuration, username: request.username, clientID: request.clientID)
        let (session, present) = core.sessions.open(clientID: request.clientID, cleanStart: request.cleanStart)
        session.expiryInterval = request.sessionExpiry
        session.identity = Session.Identity(
            username: request.username,
            port: listener.port,
            address: listener.address,
            method: request.method,
            credential: request.method == "password_file"
                ? request.username.flatMap { policy.passwordHash(on: listener, configuration, username: $0) } : nil
        )
        session.access = access
        if present && access != nil { session.dropUnreadable() }
        if let store = core.store {
            var operations: [StoreOperation] = []
            if request.cleanStart { operations.append(.deleteSession(clientID: request.clientID)) }
            if request.sessionExpiry != 0 { operations.append(.putSession(clientID: request.clientID, expiryInterval: request.sessionExpiry)) }
            if !operations.isEmpty { store.record(operations) }
        }
        let clientReceiveMaximum = Int(connect.properties.receiveMaximum ?? UInt16.max)
        let outlet = SessionOutlet(
            channel: context.channel,
            protocolVersion: connect.protocolVersion,
            clientMaximumPacketSize: connect.properties.maximumPacketSize.map { Int($0) },
            sendQuota: min(machine.limits.receiveMaximum, clientReceiveMaximum),
            topicAliasMaximum: connect.properties.topicAliasMaximum ?? 0,
            statistics: core.statistics
        )
        let connack = machine.sessionOpened(present: present, sessionExpiry: request.sessionExpiry, configuration: configuration)
        outlet.send(.connack(connack))
        self.session = session
        self.outlet = outlet
        session.attach(outlet, now: .now())
        if present { core.distributor.gatherSharedCopies(for: session, now: .now()) }
        core.statistics.clientConnected()
        logger.info(
            "client connected",
            metadata: [
                "version": "\(connect.protocolVersion)", "user": "\(request.username ?? "-")", "auth": "\(request.method)",
                "clean": "\(connect.cleanStart)", "sessionPresent": "\(present)",
            ]
        )
        for packet in machine.takePending() {
            perform(machine.packetReceived(packet, now: .now(), session: sessionRules), context: context)
        }
    }

    private func refuse(_ connack: ConnAckPacket, version: MQTTProtocolVersion, why: String, context: ChannelHandlerContext) {
        logger.notice("refusing connection: \(why)", metadata: ["reason": "\(connack.reasonCode)"])
        core.statistics.refused(connack.reasonCode)
        var buffer = context.channel.allocator.buffer(capacity: 8)
        try? MQTTPacket.connack(connack).write(to: &buffer, version: version)
        context.write(wrapOutboundOut(buffer), promise: nil)
        closeAfterLinger(context: context)
    }

    /// Called by ``LoopConnections`` every half second: closes the connection once nothing
    /// came for 1.5 × its keep alive.
    func checkKeepAlive(now: NIODeadline, context: ChannelHandlerContext) {
        guard let close = machine.keepAliveCheck(now: now) else { return parkIfIdle(now: now, context: context) }
        self.close(close, context: context)
    }

    // MARK: Parking

    /// Parks the connection when nothing has come or gone for `park_idle_connections` seconds
    /// and nothing is half done: no part packet, no packet waiting to be written or held back,
    /// nothing in the channel's write buffer. Its socket goes to the ``ParkingLot`` (a
    /// duplicate descriptor) and the channel closes; the session does not notice.
    private func parkIfIdle(now: NIODeadline, context: ChannelHandlerContext) {
        guard let parking, let descriptor, let session, let outlet, !parked, let parkedMachine = machine.parked, undecoded == nil,
            !decodingStopped, !lingering, reading
        else { return }
        let quiet = TimeAmount.seconds(Int64(configuration.parkIdleConnections))
        guard quiet > .zero, now - machine.lastActivity >= quiet, now - outlet.lastWrite >= quiet,
            (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0
        else { return }
        let duplicate = fcntl(descriptor, F_DUPFD_CLOEXEC, 0)
        guard duplicate >= 0 else { return }
        let car = ParkedConnection(
            descriptor: duplicate,
            resumption: Resumption(
                parking: parking,
                snapshot: snapshot,
                machine: parkedMachine,
                decoder: decoder,
                session: session,
                outlet: outlet,
                peer: peer
            ),
            lastActivity: machine.lastActivity
        )
        let lot = parking.lot
        guard outlet.park(as: car) else {
            Glibc.close(duplicate)
            return
        }
        parked = true
        self.descriptor = nil
        loopConnections?.remove(self)
        loopConnections = nil
        // SwiftNIO closes its descriptor only; the duplicate keeps the connection open. This
        // handler goes with the channel.
        context.close(promise: nil)
        if !lot.park(car) { lot.resumeSoon(car) }
    }

    /// The parked connection is back in a new channel, with this new handler.
    private func resumed(_ car: ParkedConnection, context: ChannelHandlerContext) {
        resuming = nil
        // Never earlier than the machine's: the lot's copy only moves forward.
        machine.lastActivity = car.lastActivity
        let request = outlet?.resume(in: context.channel)
        context.fireChannelActive()
        if let close = machine.keepAliveCheck(now: .now()) { return self.close(close, context: context) }
        if let request, let close = machine.closeDecided(reason: request.reason, why: request.why) {
            self.close(close, context: context)
        }
    }

    /// A parked connection could not get a channel again: it ends as a lost connection.
    func resumeFailed(_ error: any Error) {
        logger.notice("a parked connection could not resume: \(error)")
        resuming = nil
        endSession()
        connections?.close()
    }

    // MARK: PUBLISH

    private func handlePublish(_ action: ConnectionStateMachine.PublishAction, context: ChannelHandlerContext) {
        guard let session, let outlet else { return }
        switch action {
        case .answer(let answer, let drop, let why):
            if let drop { session.recordDrop(drop) }
            if let why { logger.notice("\(why)") }
            if let answer { outlet.send(answer) }
        case .route(let inbound):
            if let warning = inbound.warning { logger.warning("\(warning)") }
            core.statistics.received(inbound.message.qos)
            let now = inbound.receivedAt
            guard inbound.durable else {
                let outcome = core.distributor.publish(inbound.message, now: now)
                if let acknowledgement = inbound.acknowledgement {
                    let (packet, releases) = acknowledgement.answer(for: outcome)
                    if releases { _ = session.releaseIncoming(acknowledgement.packetIdentifier) }
                    outlet.send(packet)
                }
                if !outcome.congested.isEmpty { wait(for: outcome.congested, context: context) }
                return
            }
            let logger = core.logger
            let clientID = session.clientID
            let acknowledgement = inbound.acknowledgement
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let eventLoop = context.eventLoop
            core.distributor.publishDurably(inbound.message, extra: inbound.storeOperations, now: now) { result in
                switch result {
                case .success(let outcome):
                    if let acknowledgement {
                        let (packet, releases) = acknowledgement.answer(for: outcome)
                        if releases { _ = session.releaseIncoming(acknowledgement.packetIdentifier) }
                        outlet.send(packet)
                    }
                    let congested = outcome.congested
                    if !congested.isEmpty {
                        eventLoop.execute {
                            let (handler, context) = bound.value
                            handler.wait(for: congested, context: context)
                        }
                    }
                case .failure(let error):
                    guard let acknowledgement else { return }
                    logger.error("could not store a message; not acknowledging it", metadata: ["client": "\(clientID)", "error": "\(error)"])
                    if acknowledgement.kind == .pubrec { _ = session.releaseIncoming(acknowledgement.packetIdentifier) }
                    switch acknowledgement.storeFailed {
                    case .answer(let packet): outlet.send(packet)
                    case .close(let reason): outlet.close(reason: reason, why: "a message could not be stored")
                    }
                }
            }
        }
    }

    // MARK: SUBSCRIBE, UNSUBSCRIBE

    private func subscribe(_ plan: ConnectionStateMachine.SubscribePlan) {
        guard let session, let outlet else { return }
        let now = NIODeadline.now()
        var retained: [(ApplicationMessage, QoS)] = []
        var operations: [StoreOperation] = []
        for item in plan.items {
            switch item {
            case .refuse(_, let why):
                logger.notice("\(why)")
            case .subscribe(let subscription):
                let filter = subscription.filter
                let options = subscription.options
                let existed = session.addSubscription(
                    filter,
                    state: .init(options: options, identifier: plan.identifier, sharedGroup: subscription.shared?.group)
                )
                let entry = RouteEntry(session: session, options: options, identifier: plan.identifier)
                if let shared = subscription.shared {
                    core.router.subscribe(shared, entry: entry)
                } else {
                    core.router.subscribe(filter, entry: entry)
                }
                operations.append(.putSubscription(clientID: session.clientID, filter: filter, options: options, identifier: plan.identifier))
                logger.debug("subscribed", metadata: ["filter": "\(filter)", "qos": "\(options.qos.rawValue)"])
                if subscription.sendsRetained(existed: existed) {
                    for message in core.retained.matching(filter, now: now) where session.mayRead(message.topic) {
                        retained.append((message, min(options.qos, message.qos)))
                    }
                }
            }
        }
        let suback = plan.suback
        let identifiers = plan.identifier.map { [$0] } ?? []
        let sendAnswer: @Sendable () -> Void = { [retained] in
            outlet.send(suback)
            for (message, qos) in retained {
                session.deliver(message, qos: qos, retain: true, subscriptionIdentifiers: identifiers, now: .now())
            }
        }
        let joinedGroup = plan.items.contains { if case .subscribe(let subscription) = $0 { subscription.shared != nil } else { false } }
        let distributor = core.distributor
        let answer: @Sendable () -> Void = {
            sendAnswer()
            if joinedGroup { distributor.gatherSharedCopies(for: session, now: .now()) }
        }
        if let store = core.store, session.isPersistent, !operations.isEmpty {
            // SUBACK once the subscriptions are on disk: a restart must not lose them.
            store.commit(operations) { _ in answer() }
        } else {
            answer()
        }
    }

    private func unsubscribe(_ unsubscribe: UnsubscribePacket) {
        guard let session, let outlet else { return }
        var existed: [Bool] = []
        for filter in unsubscribe.topicFilters {
            let had = session.removeSubscription(filter) != nil
            existed.append(had)
            guard had else { continue }
            if let shared = try? SharedSubscription.parse(filter) {
                core.router.unsubscribe(shared, session: session)
            } else {
                core.router.unsubscribe(filter, session: session)
            }
            if let store = core.store, session.isPersistent {
                store.record([.deleteSubscription(clientID: session.clientID, filter: filter)])
            }
        }
        outlet.send(machine.unsuback(unsubscribe, existed: existed))
    }

    // MARK: Ending

    /// Closes the connection as the state machine decided: a 5.0 client is told why first.
    private func close(_ close: ConnectionStateMachine.Close, context: ChannelHandlerContext) {
        logger.notice("closing connection: \(close.why)", metadata: close.reason.map { ["reason": "\($0)"] } ?? [:])
        if let reason = close.reason, let outlet {
            outlet.send(.disconnect(DisconnectPacket(reasonCode: reason)))
            outlet.writePending()
        }
        // The client is gone for the session from now on (will, expiry), however long it
        // takes to read the last packet.
        endSession()
        closeAfterLinger(context: context)
    }

    /// Ends the connection's part in its session, once: when the broker decides to close, the
    /// client disconnects, or the connection drops.
    private func endSession() {
        guard let connected = machine.connectionClosed(), let session, let outlet else { return }
        connectionEnded(connected, session: session, outlet: outlet)
    }

    /// Shuts our side down for writing once what was written has left, then reads and ignores
    /// what the client still sends until it closes or ``closeLinger`` passes.
    ///
    /// Meanwhile the connection is read only a little (one buffer) every ``lingerReadInterval``: a client
    /// that writes faster than we read would otherwise never find its socket full, and one whose
    /// network thread writes until the socket is full before it reads (paho-mqtt's) would not
    /// read our DISCONNECT; reading now and then still notices the client closing.
    private func closeAfterLinger(context: ChannelHandlerContext) {
        context.flush()
        let channel = context.channel
        channel.close(mode: .output).whenFailure { _ in channel.close(promise: nil) }
        lingerTask = context.eventLoop.scheduleTask(in: Self.closeLinger) { channel.close(promise: nil) }
        lingering = true
        reading = false
        channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
        channel.setOption(ChannelOptions.maxMessagesPerRead, value: 1).whenFailure { _ in }
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        lingerReads = context.eventLoop.scheduleRepeatedTask(initialDelay: Self.lingerReadInterval, delay: Self.lingerReadInterval) { task in
            guard channel.isActive else { return task.cancel() }
            bound.value.read()
        }
    }

    /// How often a connection the broker closed is read while it lingers.
    static let lingerReadInterval = TimeAmount.milliseconds(50)

    private func connectionEnded(_ connected: ConnectionStateMachine.Connected, session: Session, outlet: SessionOutlet) {
        core.statistics.clientDisconnected()
        let stillOwner = session.detach(outlet)
        let now = NIODeadline.now()
        // Shared-subscription messages this client did not acknowledge go to another member of
        // their group; with no other member they wait for it, as its other messages do. Not when
        // a new connection took the session over: it has been sent them again.
        if stillOwner { core.distributor.redistributeShared(of: session, sessionEnds: false, now: now) }
        if !connected.cleanDisconnect { logger.info("connection lost") }
        let ending = ConnectionStateMachine.ending(connected, stillOwner: stillOwner, sessionEnded: session.hasEnded)
        let core = self.core
        let eventLoop = outlet.eventLoop
        if let will = connected.willMessage {
            switch ending.will {
            case .none:
                break
            case .publishNow:
                core.distributor.publishWill(will, of: session, now: now)
            case .publishAfter(let seconds):
                let task = eventLoop.scheduleTask(in: .seconds(Int64(seconds))) {
                    if let will = session.takeDelayedWill() { core.distributor.publishWill(will, of: session, now: .now()) }
                }
                session.setDelayedWill(will, task: task)
            }
        }
        switch ending.session {
        case .keep:
            break
        case .end:
            core.sessions.end(session)
        case .expireAfter(let seconds):
            let task = eventLoop.scheduleTask(in: .seconds(Int64(seconds))) {
                if !session.isConnected { core.sessions.end(session) }
            }
            session.setExpiryTask(task)
        }
    }
}

/// The session as a connection's rules see it (see ``SessionRules``).
struct SessionRulesView: SessionRules {
    let session: Session?
    /// Whether any ACL is in force; when not, the session's access is not even read.
    let checksAccess: Bool

    var access: ClientAccess? { checksAccess ? session?.access : nil }
    func beginIncoming(_ identifier: UInt16) -> Bool { session?.beginIncoming(identifier) ?? true }
    func releaseIncoming(_ identifier: UInt16) -> Bool { session?.releaseIncoming(identifier) ?? false }
    var incomingAwaitingRelease: Int { session?.incomingAwaitingRelease ?? 0 }
}

/// A listener as bound, shared by reference by the connections it accepts.
final class SharedListener: Sendable {
    let index: Int
    let value: BrokerConfiguration.Listener

    init(index: Int, _ value: BrokerConfiguration.Listener) {
        self.index = index
        self.value = value
    }

    /// The listener's settings as `configuration` has them (a reload keeps the listeners' order
    /// and binding), or as bound when it has no such listener.
    func current(in configuration: BrokerConfiguration) -> BrokerConfiguration.Listener {
        configuration.listeners.indices.contains(index) ? configuration.listeners[index] : value
    }
}

/// A parking listener's lot and what a connection's handler needs of the listener, shared by
/// its connections: a parked connection keeps one reference instead of four.
final class ParkingContext: Sendable {
    let core: BrokerCore
    let listener: SharedListener
    let connections: ManagedConnectionCount
    let lot: ParkingLot

    init(core: BrokerCore, listener: SharedListener, connections: ManagedConnectionCount, lot: ParkingLot) {
        self.core = core
        self.listener = listener
        self.connections = connections
        self.lot = lot
    }
}
