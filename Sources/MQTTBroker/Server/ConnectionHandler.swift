import Logging
import MQTTCore
import NIOCore

/// One client connection: CONNECT and authentication, then every packet the client sends,
/// keep alive, will and session expiry when the connection ends.
///
/// Runs on the connection's event loop. Packets to the client leave through its
/// ``SessionOutlet``; bad input closes this connection only, after a 5.0 DISCONNECT that
/// carries the reason.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = MQTTPacket
    typealias OutboundOut = ByteBuffer

    private struct Connected {
        let session: Session
        let outlet: SessionOutlet
        let version: MQTTProtocolVersion
        var will: ConnectPacket.Will?
        var sessionExpiry: UInt32
        var topicAliases: [UInt16: String] = [:]
        var cleanDisconnect = false
    }

    private enum State {
        case awaitingConnect
        /// The authenticator is deciding; packets that arrive meanwhile wait here.
        case authenticating(pending: [MQTTPacket])
        case connected(Connected)
        case closed
    }

    private let core: BrokerCore
    /// The configuration when the connection opened; a reload applies to later connections.
    private let snapshot: ConfigurationSnapshot
    /// The shared configuration, for CONNECT and other rare moments.
    private var configuration: BrokerConfiguration { snapshot.value }
    /// What every PUBLISH consults, kept here: reading the shared snapshot on each message
    /// would make every event loop touch the same reference counts.
    private let maxTopicAlias: UInt16
    private let retainAvailable: Bool
    private let messageSizeLimit: Int
    private let listener: BrokerConfiguration.Listener
    private var state = State.awaitingConnect
    private var logger: Logger
    private var connectTimeout: Scheduled<Void>?
    private var keepAliveTask: RepeatedTask?
    private var lastActivity = NIODeadline.now()
    /// Set once we decided to close: nothing the client sends after that is acted on.
    private var closing = false

    init(core: BrokerCore, listener: BrokerConfiguration.Listener) {
        self.core = core
        let snapshot = core.configurationSnapshot
        self.snapshot = snapshot
        self.maxTopicAlias = snapshot.value.maxTopicAlias
        self.retainAvailable = snapshot.value.retainAvailable
        self.messageSizeLimit = snapshot.value.messageSizeLimit
        self.listener = listener
        self.logger = core.logger
    }

    // MARK: Channel events

    func channelActive(context: ChannelHandlerContext) {
        core.register(context.channel)
        if let address = context.remoteAddress { logger[metadataKey: "peer"] = "\(address)" }
        let seconds = Int64(configuration.connectTimeout)
        let channel = context.channel
        connectTimeout = context.eventLoop.scheduleTask(in: .seconds(seconds)) { [logger] in
            logger.notice("closing a connection that sent no CONNECT within \(seconds) s")
            channel.close(promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closing else { return }
        let packet = unwrapInboundIn(data)
        lastActivity = .now()
        switch state {
        case .awaitingConnect:
            guard case .connect(let connect) = packet else {
                // The decoder lets only CONNECT through first; anything else is a protocol error.
                return closeConnection(context, reason: .protocolError, why: "first packet is \(packet.type), not CONNECT")
            }
            handleConnect(connect, context: context)
        case .authenticating(var pending):
            // A client may pipeline a few packets behind CONNECT; one that floods before it is
            // admitted is cut off instead of being buffered without bound.
            guard pending.count < 64 else {
                logger.notice("closing: more than 64 packets sent before CONNACK")
                state = .closed
                context.close(promise: nil)
                return
            }
            pending.append(packet)
            state = .authenticating(pending: pending)
        case .connected(var connected):
            handle(packet, connected: &connected, context: context)
            if case .connected = state { state = .connected(connected) }
        case .closed:
            break
        }
    }

    /// Back-pressure: while the client does not read what we send it (its buffer here is over
    /// the high-water mark), we stop reading what it sends, so nothing grows without bound.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        let writable = context.channel.isWritable
        context.channel.setOption(ChannelOptions.autoRead, value: writable).whenFailure { _ in }
        if writable {
            context.read()
            if case .connected(let connected) = state { connected.session.resumeSending(now: .now()) }
        }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? MQTTDecodingError {
            if case .awaitingConnect = state, error.kind == .unsupportedProtocolVersion {
                // A 3.1.1-format CONNACK "unacceptable protocol version" is what older clients understand.
                logger.notice("refusing connection: \(error.detail)")
                core.statistics.refused(.unsupportedProtocolVersion)
                let refusal = context.channel.allocator.buffer(bytes: [0x20, 0x02, 0x00, ConnectReturnCode.unacceptableProtocolVersion.rawValue])
                let channel = context.channel
                context.writeAndFlush(wrapOutboundOut(refusal)).whenComplete { _ in channel.close(promise: nil) }
                state = .closed
                return
            }
            closeConnection(context, reason: error.reasonCode, why: "malformed input: \(error.detail)")
        } else {
            logger.debug("connection error: \(error)")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        connectTimeout?.cancel()
        keepAliveTask?.cancel()
        core.unregister(context.channel)
        if case .connected(let connected) = state { connectionEnded(connected) }
        state = .closed
        context.fireChannelInactive()
    }

    // MARK: CONNECT

    private func handleConnect(_ connect: ConnectPacket, context: ChannelHandlerContext) {
        connectTimeout?.cancel()
        let version = connect.protocolVersion
        var clientID = connect.clientIdentifier
        var assigned = false
        if clientID.isEmpty {
            // MQTT 3.1 has no empty client identifiers: mosquitto refuses them with "identifier rejected".
            guard configuration.allowZeroLengthClientID, version != .v3_1, version == .v5 || connect.cleanStart else {
                return refuse(context, version: version, reason: .clientIdentifierNotValid, why: "empty client identifier")
            }
            clientID = core.assignClientIdentifier()
            assigned = true
        }
        logger[metadataKey: "client"] = "\(clientID)"
        var serverKeepAlive: UInt16?
        if connect.keepAlive > configuration.maxKeepalive || (connect.keepAlive == 0 && configuration.maxKeepalive < 65_535) {
            guard version == .v5 else {
                return refuse(
                    context,
                    version: version,
                    reason: .clientIdentifierNotValid,
                    why: "keep alive \(connect.keepAlive) s is not allowed (max_keepalive \(configuration.maxKeepalive))"
                )
            }
            serverKeepAlive = configuration.maxKeepalive
        }
        if version == .v5, let method = connect.properties.authenticationMethod {
            return refuse(context, version: version, reason: .badAuthenticationMethod, why: "authentication method \(method) is not supported")
        }
        if connect.will?.retain == true && !configuration.retainAvailable {
            return refuse(context, version: version, reason: .retainNotSupported, why: "retained will while retain_available is false")
        }

        let request = ConnectRequest(
            clientIdentifier: clientID,
            username: connect.username,
            password: connect.password,
            protocolVersion: version,
            listener: listener,
            remoteAddress: context.remoteAddress,
            properties: connect.properties,
            clientCertificate: ClientCertificateIdentity.verifiedPeer(of: context.pipeline.syncOperations)
        )
        let decided = Decided(connect: connect, clientID: clientID, assigned: assigned, serverKeepAlive: serverKeepAlive)
        state = .authenticating(pending: [])
        let policy = core.policy
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
            return conclude(decided, result: result, context: context)
        }
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.makeFutureWithTask { await decide() }.whenSuccess { result in
            let (handler, context) = bound.value
            handler.conclude(decided, result: result, context: context)
        }
    }

    /// What CONNECT asked for, carried through authentication.
    private struct Decided {
        let connect: ConnectPacket
        let clientID: String
        let assigned: Bool
        let serverKeepAlive: UInt16?
    }

    /// Counts a failed login against the client's address, holds the CONNACK while that
    /// address is being throttled, then answers and handles what arrived meanwhile.
    private func conclude(_ decided: Decided, result: AuthenticationResult, context: ChannelHandlerContext) {
        guard case .authenticating = state else { return }
        let address = context.remoteAddress
        if case .refused(let reason, _) = result, reason == .notAuthorized || reason == .badUserNameOrPassword {
            core.statistics.authenticationFailures.wrappingIncrement(ordering: .relaxed)
            core.loginThrottle.recordFailure(from: address)
        }
        let delay = core.loginThrottle.delay(for: address)
        guard delay > .zero else { return answer(decided, result: result, context: context) }
        core.statistics.throttledConnects.wrappingIncrement(ordering: .relaxed)
        logger.notice("holding the CONNACK \(delay.nanoseconds / 1_000_000) ms: this address keeps failing to log in")
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = bound.value
            guard case .authenticating = handler.state else { return }
            handler.answer(decided, result: result, context: context)
        }
    }

    private func answer(_ decided: Decided, result: AuthenticationResult, context: ChannelHandlerContext) {
        guard case .authenticating(let pending) = state else { return }
        finishConnect(
            decided.connect,
            clientID: decided.clientID,
            assigned: decided.assigned,
            serverKeepAlive: decided.serverKeepAlive,
            result: result,
            context: context
        )
        guard case .connected = state else { return }
        for packet in pending {
            guard case .connected(var connected) = state else { break }
            handle(packet, connected: &connected, context: context)
            if case .connected = state { state = .connected(connected) }
        }
    }

    private func finishConnect(
        _ connect: ConnectPacket,
        clientID: String,
        assigned: Bool,
        serverKeepAlive: UInt16?,
        result: AuthenticationResult,
        context: ChannelHandlerContext
    ) {
        let version = connect.protocolVersion
        guard case .accepted(let username, let method) = result else {
            if case .refused(let reason, let why) = result { refuse(context, version: version, reason: reason, why: why) }
            return
        }
        let access = core.policy.access(on: listener, configuration, username: username, clientID: clientID)
        let sessionExpiry: UInt32
        switch version {
        case .v5: sessionExpiry = connect.properties.sessionExpiryInterval ?? 0
        case .v3_1, .v3_1_1:
            if connect.cleanStart {
                sessionExpiry = 0
            } else if let expiration = configuration.persistentClientExpiration {
                sessionExpiry = UInt32(clamping: expiration.components.seconds)
            } else {
                sessionExpiry = UInt32.max
            }
        }
        let (session, present) = core.openSession(clientID: clientID, cleanStart: connect.cleanStart)
        session.expiryInterval = sessionExpiry
        session.identity = Session.Identity(
            username: username,
            port: listener.port,
            address: listener.address,
            method: method,
            credential: method == "password_file" ? username.flatMap { core.policy.passwordHash(on: listener, configuration, username: $0) } : nil
        )
        session.access = access
        if present && access != nil { session.dropUnreadable() }
        if let store = core.store {
            var operations: [StoreOperation] = []
            if connect.cleanStart { operations.append(.deleteSession(clientID: clientID)) }
            if sessionExpiry != 0 { operations.append(.putSession(clientID: clientID, expiryInterval: sessionExpiry)) }
            if !operations.isEmpty { store.record(operations) }
        }
        let clientReceiveMaximum = Int(connect.properties.receiveMaximum ?? UInt16.max)
        let outlet = SessionOutlet(
            channel: context.channel,
            protocolVersion: version,
            clientMaximumPacketSize: connect.properties.maximumPacketSize.map { Int($0) },
            sendQuota: min(core.sessionLimits.maxInflight, clientReceiveMaximum),
            topicAliasMaximum: connect.properties.topicAliasMaximum ?? 0,
            statistics: core.statistics
        )
        var properties = Properties()
        if version == .v5 {
            if core.receiveMaximum < 65_535 { properties.append(.receiveMaximum(UInt16(core.receiveMaximum))) }
            if !configuration.retainAvailable { properties.append(.retainAvailable(0)) }
            if configuration.maxPacketSize > 0 { properties.append(.maximumPacketSize(UInt32(configuration.maxPacketSize))) }
            if configuration.maxTopicAlias > 0 { properties.append(.topicAliasMaximum(configuration.maxTopicAlias)) }
            if let serverKeepAlive { properties.append(.serverKeepAlive(serverKeepAlive)) }
            if assigned { properties.append(.assignedClientIdentifier(clientID)) }
        }
        outlet.send(.connack(ConnAckPacket(sessionPresent: present, reasonCode: .success, properties: properties)))
        state = .connected(Connected(session: session, outlet: outlet, version: version, will: connect.will, sessionExpiry: sessionExpiry))
        session.attach(outlet, now: .now())
        core.statistics.clientConnected()
        startKeepAlive(seconds: serverKeepAlive ?? connect.keepAlive, context: context)
        logger.info(
            "client connected",
            metadata: [
                "version": "\(version)", "user": "\(username ?? "-")", "auth": "\(method)",
                "clean": "\(connect.cleanStart)", "sessionPresent": "\(present)",
            ]
        )
    }

    private func refuse(_ context: ChannelHandlerContext, version: MQTTProtocolVersion, reason: ReasonCode, why: String) {
        logger.notice("refusing connection: \(why)", metadata: ["reason": "\(reason)"])
        core.statistics.refused(reason)
        state = .closed
        var buffer = context.channel.allocator.buffer(capacity: 8)
        try? MQTTPacket.connack(ConnAckPacket(reasonCode: reason)).write(to: &buffer, version: version)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(buffer)).whenComplete { _ in channel.close(promise: nil) }
    }

    private func startKeepAlive(seconds: UInt16, context: ChannelHandlerContext) {
        guard seconds > 0 else { return }
        // Checked every half keep alive; the limit is one and a half keep alives of silence.
        let limit = TimeAmount.milliseconds(Int64(seconds) * 1500)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        keepAliveTask = context.eventLoop.scheduleRepeatedTask(
            initialDelay: .milliseconds(Int64(seconds) * 500),
            delay: .milliseconds(Int64(seconds) * 500)
        ) { task in
            let (handler, context) = bound.value
            guard NIODeadline.now() - handler.lastActivity > limit else { return }
            task.cancel()
            handler.closeConnection(context, reason: .keepAliveTimeout, why: "nothing received for 1.5 × keep alive (\(seconds) s)")
        }
    }

    // MARK: Packets after CONNECT

    private func handle(_ packet: MQTTPacket, connected: inout Connected, context: ChannelHandlerContext) {
        let now = NIODeadline.now()
        switch packet {
        case .publish(let publish):
            handlePublish(publish, connected: &connected, context: context, now: now)
        case .puback(let ack):
            connected.session.acknowledge(ack.packetIdentifier, now: now)
        case .pubrec(let received):
            if !connected.session.received(received.packetIdentifier, reasonCode: received.reasonCode, now: now) {
                connected.outlet.send(.pubrel(PubRelPacket(packetIdentifier: received.packetIdentifier, reasonCode: .packetIdentifierNotFound)))
            }
        case .pubrel(let release):
            let identifier = release.packetIdentifier
            let known = connected.session.releaseIncoming(identifier)
            let pubcomp = MQTTPacket.pubcomp(PubCompPacket(packetIdentifier: identifier, reasonCode: known ? .success : .packetIdentifierNotFound))
            if known, let store = core.store, connected.session.isPersistent {
                // PUBCOMP only once the identifier is forgotten on disk, or a restart would refuse its next use.
                let outlet = connected.outlet
                store.commit([.deleteIncoming(clientID: connected.session.clientID, packetIdentifier: identifier)]) { _ in
                    outlet.send(pubcomp)
                }
            } else {
                connected.outlet.send(pubcomp)
            }
        case .pubcomp(let complete):
            connected.session.acknowledge(complete.packetIdentifier, now: now)
        case .subscribe(let subscribe):
            handleSubscribe(subscribe, connected: connected, context: context, now: now)
        case .unsubscribe(let unsubscribe):
            handleUnsubscribe(unsubscribe, connected: connected)
        case .pingreq:
            connected.outlet.send(.pingresp)
        case .disconnect(let disconnect):
            handleDisconnect(disconnect, connected: &connected, context: context)
        case .auth:
            closeConnection(context, reason: .protocolError, why: "AUTH without an authentication method in CONNECT")
        case .connect:
            closeConnection(context, reason: .protocolError, why: "a second CONNECT")
        case .connack, .suback, .unsuback, .pingresp:
            closeConnection(context, reason: .protocolError, why: "\(packet.type) is sent by servers only")
        }
    }

    private func handlePublish(_ publish: PublishPacket, connected: inout Connected, context: ChannelHandlerContext, now: NIODeadline) {
        var publish = publish
        core.statistics.received(publish.qos)
        if connected.version == .v5, let alias = publish.properties.topicAlias {
            guard alias <= maxTopicAlias else {
                return closeConnection(
                    context,
                    reason: .topicAliasInvalid,
                    why: "topic alias \(alias) above our maximum \(maxTopicAlias)"
                )
            }
            if publish.topicName.isEmpty {
                guard let topic = connected.topicAliases[alias] else {
                    return closeConnection(context, reason: .protocolError, why: "topic alias \(alias) was never set")
                }
                publish.topicName = topic
            } else {
                connected.topicAliases[alias] = publish.topicName
            }
        }
        if publish.retain && !retainAvailable {
            return closeConnection(context, reason: .retainNotSupported, why: "retained PUBLISH while retain_available is false")
        }
        if core.checksAccess, let access = connected.session.access, !access.allows(.write, topic: publish.topicName) {
            return refusePublish(publish, connected: connected)
        }
        if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
            guard connected.session.beginIncoming(identifier) else {
                // A re-sent QoS 2 PUBLISH before PUBREL: acknowledge again, deliver nothing.
                connected.outlet.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
                return
            }
            if connected.session.incomingAwaitingRelease > core.receiveMaximum {
                return closeConnection(context, reason: .receiveMaximumExceeded, why: "more QoS 2 messages in flight than our receive maximum")
            }
        }

        if core.store != nil, publish.qos != .atMostOnce, let identifier = publish.packetIdentifier,
            !publish.topicName.hasPrefix("$SYS"),
            messageSizeLimit == 0 || publish.payload.readableBytes <= messageSizeLimit
        {
            return publishDurably(publish, identifier: identifier, connected: connected, now: now)
        }

        var reason = ReasonCode.success
        if messageSizeLimit > 0 && publish.payload.readableBytes > messageSizeLimit {
            reason = .quotaExceeded
            core.statistics.dropped(.tooLarge)
            logger.notice("dropping a message over message_size_limit", metadata: ["topic": "\(publish.topicName)"])
        } else if publish.topicName.hasPrefix("$SYS/") || publish.topicName == "$SYS" {
            core.statistics.dropped(.forbiddenTopic)
        } else {
            let message = ApplicationMessage(publish: publish, publisherID: connected.session.clientID, now: now)
            if core.publish(message, now: now) == 0 && connected.version == .v5 { reason = .noMatchingSubscribers }
        }

        guard let identifier = publish.packetIdentifier else { return }
        switch publish.qos {
        case .atMostOnce: break
        case .atLeastOnce: connected.outlet.send(.puback(PubAckPacket(packetIdentifier: identifier, reasonCode: reason)))
        case .exactlyOnce:
            if reason.isFailure { _ = connected.session.releaseIncoming(identifier) }
            connected.outlet.send(.pubrec(PubRecPacket(packetIdentifier: identifier, reasonCode: reason)))
        }
    }

    /// A PUBLISH the ACL forbids: 5.0 clients get 0x87 in PUBACK/PUBREC; 3.1.1 has no way to
    /// say so, and, as in mosquitto, the message is acknowledged and dropped.
    private func refusePublish(_ publish: PublishPacket, connected: Connected) {
        core.statistics.dropped(.notAuthorized)
        logger.notice("the ACL does not allow publishing here; message dropped", metadata: ["topic": "\(publish.topicName)"])
        guard let identifier = publish.packetIdentifier else { return }
        let reason: ReasonCode = connected.version == .v5 ? .notAuthorized : .success
        switch publish.qos {
        case .atMostOnce: break
        case .atLeastOnce: connected.outlet.send(.puback(PubAckPacket(packetIdentifier: identifier, reasonCode: reason)))
        case .exactlyOnce:
            // 3.1.1 goes on to PUBREL/PUBCOMP, so the identifier is held until then.
            if connected.version != .v5 { _ = connected.session.beginIncoming(identifier) }
            connected.outlet.send(.pubrec(PubRecPacket(packetIdentifier: identifier, reasonCode: reason)))
        }
    }

    /// A QoS 1/2 PUBLISH with persistence on: acknowledged once its copies are on disk.
    private func publishDurably(_ publish: PublishPacket, identifier: UInt16, connected: Connected, now: NIODeadline) {
        let session = connected.session
        let outlet = connected.outlet
        let version = connected.version
        let qos = publish.qos
        var extra: [StoreOperation] = []
        if qos == .exactlyOnce && session.isPersistent {
            extra.append(.putIncoming(clientID: session.clientID, packetIdentifier: identifier))
        }
        let message = ApplicationMessage(publish: publish, publisherID: session.clientID, now: now)
        let logger = self.logger
        core.publishDurably(message, extra: extra, now: now) { result in
            let reason: ReasonCode
            switch result {
            case .success(let count):
                reason = count == 0 && version == .v5 ? .noMatchingSubscribers : .success
            case .failure(let error):
                logger.error("could not store a message; not acknowledging it", metadata: ["error": "\(error)"])
                if qos == .exactlyOnce { _ = session.releaseIncoming(identifier) }
                guard version == .v5 else {
                    // 3.1.1 has no failure acknowledgement: the client re-sends after reconnecting.
                    return outlet.close(reason: .unspecifiedError)
                }
                reason = .unspecifiedError
            }
            if qos == .atLeastOnce {
                outlet.send(.puback(PubAckPacket(packetIdentifier: identifier, reasonCode: reason)))
            } else {
                outlet.send(.pubrec(PubRecPacket(packetIdentifier: identifier, reasonCode: reason)))
            }
        }
    }

    private func handleSubscribe(_ subscribe: SubscribePacket, connected: Connected, context: ChannelHandlerContext, now: NIODeadline) {
        let v5 = connected.version == .v5
        let identifier = subscribe.properties.subscriptionIdentifiers.first
        var codes: [ReasonCode] = []
        var retainedToSend: [(ApplicationMessage, QoS)] = []
        var storeOperations: [StoreOperation] = []
        for subscription in subscribe.subscriptions {
            let filter = subscription.topicFilter
            let shared: SharedSubscription?
            do {
                shared = try SharedSubscription.parse(filter)
                if shared == nil { try TopicFilter.validate(filter) }
            } catch {
                logger.notice("refusing subscription: \(error)", metadata: ["filter": "\(filter)"])
                codes.append(v5 ? .topicFilterInvalid : .unspecifiedError)
                continue
            }
            if core.checksAccess, let access = connected.session.access, !access.allowsSubscription(to: shared?.filter ?? filter) {
                logger.notice("the ACL does not allow this subscription", metadata: ["filter": "\(filter)"])
                codes.append(v5 ? .notAuthorized : .unspecifiedError)
                continue
            }
            var options = subscription.options
            if !v5 { options = SubscriptionOptions(qos: options.qos) }
            if shared != nil && options.noLocal {
                return closeConnection(context, reason: .protocolError, why: "no-local on a shared subscription")
            }
            let entry = RouteEntry(session: connected.session, options: options, identifier: identifier)
            let existed = connected.session.addSubscription(
                filter,
                state: .init(options: options, identifier: identifier, sharedGroup: shared?.group)
            )
            if let shared {
                core.router.subscribe(shared, entry: entry)
            } else {
                core.router.subscribe(filter, entry: entry)
            }
            storeOperations.append(.putSubscription(clientID: connected.session.clientID, filter: filter, options: options, identifier: identifier))
            codes.append(.granted(options.qos))
            logger.debug("subscribed", metadata: ["filter": "\(filter)", "qos": "\(options.qos.rawValue)"])
            // Retained messages are not sent for shared subscriptions (5.0 section 4.8.2).
            guard shared == nil else { continue }
            let sendRetained =
                options.retainHandling == .sendOnSubscribe || (options.retainHandling == .sendOnNewSubscribe && !existed)
            if sendRetained {
                for message in core.retained.matching(filter, now: now) where connected.session.mayRead(message.topic) {
                    retainedToSend.append((message, min(options.qos, message.qos)))
                }
            }
        }
        let suback = MQTTPacket.suback(SubAckPacket(packetIdentifier: subscribe.packetIdentifier, reasonCodes: codes))
        let session = connected.session
        let outlet = connected.outlet
        let retained = retainedToSend
        let sendAnswer: @Sendable () -> Void = {
            outlet.send(suback)
            for (message, qos) in retained {
                session.deliver(message, qos: qos, retain: true, subscriptionIdentifiers: identifier.map { [$0] } ?? [], now: .now())
            }
        }
        if let store = core.store, session.isPersistent, !storeOperations.isEmpty {
            // SUBACK once the subscriptions are on disk: a restart must not lose them.
            store.commit(storeOperations) { _ in sendAnswer() }
        } else {
            sendAnswer()
        }
    }

    private func handleUnsubscribe(_ unsubscribe: UnsubscribePacket, connected: Connected) {
        var codes: [ReasonCode] = []
        for filter in unsubscribe.topicFilters {
            let existed = connected.session.removeSubscription(filter) != nil
            if existed {
                if let shared = try? SharedSubscription.parse(filter) {
                    core.router.unsubscribe(shared, session: connected.session)
                } else {
                    core.router.unsubscribe(filter, session: connected.session)
                }
            }
            codes.append(existed ? .success : .noSubscriptionExisted)
            if existed, let store = core.store, connected.session.isPersistent {
                store.record([.deleteSubscription(clientID: connected.session.clientID, filter: filter)])
            }
        }
        let v5 = connected.version == .v5
        connected.outlet.send(.unsuback(UnsubAckPacket(packetIdentifier: unsubscribe.packetIdentifier, reasonCodes: v5 ? codes : [])))
    }

    private func handleDisconnect(_ disconnect: DisconnectPacket, connected: inout Connected, context: ChannelHandlerContext) {
        if connected.version == .v5 {
            if let expiry = disconnect.properties.sessionExpiryInterval {
                guard connected.sessionExpiry != 0 || expiry == 0 else {
                    return closeConnection(context, reason: .protocolError, why: "DISCONNECT sets a session expiry after CONNECT set 0")
                }
                connected.sessionExpiry = expiry
                connected.session.expiryInterval = expiry
                if expiry != 0 {
                    core.store?.record([.putSession(clientID: connected.session.clientID, expiryInterval: expiry)])
                }
            }
            if disconnect.reasonCode != .disconnectWithWillMessage { connected.will = nil }
        } else {
            connected.will = nil
        }
        connected.cleanDisconnect = true
        logger.debug("client disconnected", metadata: ["reason": "\(disconnect.reasonCode)"])
        state = .connected(connected)
        context.close(promise: nil)
    }

    // MARK: Ending

    /// Closes this connection, telling a 5.0 client why first.
    private func closeConnection(_ context: ChannelHandlerContext, reason: ReasonCode, why: String) {
        guard !closing else { return }
        closing = true
        logger.notice("closing connection: \(why)", metadata: ["reason": "\(reason)"])
        if case .connected(let connected) = state, connected.version == .v5 {
            connected.outlet.close(reason: reason)
        } else {
            context.close(promise: nil)
        }
    }

    private func connectionEnded(_ connected: Connected) {
        core.statistics.clientDisconnected()
        let session = connected.session
        let stillOwner = session.detach(connected.outlet)
        let now = NIODeadline.now()
        // Shared-subscription messages this client did not acknowledge go to another member.
        core.redistribute(session.takeUnacknowledgedShared(), from: session, now: now)
        if !connected.cleanDisconnect { logger.info("connection lost") }

        if let will = connected.will {
            let message = ApplicationMessage(
                topic: will.topic,
                payload: will.payload,
                qos: will.qos,
                retain: will.retain,
                properties: willMessageProperties(will.properties),
                publisherID: session.clientID
            )
            let delay = connected.version == .v5 ? will.properties.willDelayInterval ?? 0 : 0
            if !stillOwner && session.hasEnded {
                // Taken over with a clean start: the session ended, so the will goes out now.
                core.publishWill(message, of: session, now: now)
            } else if delay == 0 || connected.sessionExpiry == 0 {
                if delay == 0 || stillOwner { core.publishWill(message, of: session, now: now) }
            } else if stillOwner {
                let core = self.core
                let task = connected.outlet.channel.eventLoop.scheduleTask(in: .seconds(Int64(delay))) {
                    if let will = session.takeDelayedWill() { core.publishWill(will, of: session, now: .now()) }
                }
                session.setDelayedWill(message, task: task)
            }
        }

        guard stillOwner else { return }
        switch connected.sessionExpiry {
        case 0:
            core.endSession(session)
        case UInt32.max:
            break
        default:
            let core = self.core
            let task = connected.outlet.channel.eventLoop.scheduleTask(in: .seconds(Int64(connected.sessionExpiry))) {
                if !session.isConnected { core.endSession(session) }
            }
            session.setExpiryTask(task)
        }
    }

    private func willMessageProperties(_ properties: Properties) -> Properties {
        var properties = properties
        properties.removeAll(.willDelayInterval)
        return properties
    }
}

/// Counts the bytes clients send, before decoding.
final class ByteCountingHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let statistics: BrokerStatistics

    init(statistics: BrokerStatistics) { self.statistics = statistics }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        statistics.bytesReceived.wrappingIncrement(by: unwrapInboundIn(data).readableBytes, ordering: .relaxed)
        context.fireChannelRead(data)
    }
}
