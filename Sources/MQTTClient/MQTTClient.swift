import Logging
import MQTTCore
import NIOCore
import NIOPosix

/// An MQTT 3.1.1 / 5.0 client: TCP or TLS, automatic reconnect with backoff, an outbox that
/// keeps messages until the broker acknowledges them, request/response.
///
/// ```swift
/// var configuration = MQTTClient.Configuration(host: "broker.local", clientIdentifier: "camera-17")
/// configuration.sessionExpiry = .seconds(3600)
/// let client = MQTTClient(configuration: configuration)
/// try await client.connect()
/// let commands = try await client.subscribe(to: "lprserver/cameras/17/command", qos: .atLeastOnce)
/// try await client.publish(topic: "lprserver/cameras/17/status", payload: "online", qos: .atLeastOnce, retain: true)
/// for await command in commands { ... }
/// ```
///
/// ``connect()`` makes one attempt and throws its error; once connected, a lost connection is
/// re-established by the ``Configuration/reconnect`` policy. As a `Service` in a
/// `ServiceGroup`, ``run()`` keeps trying from the start and disconnects on graceful shutdown.
/// Messages published while disconnected wait in the outbox and are sent in order when the
/// connection returns; a `subscribe` made while disconnected waits for the connection too.
public actor MQTTClient {
    /// The configuration the client was made with.
    public nonisolated let configuration: Configuration
    nonisolated let logger: Logger
    nonisolated let clock: any Clock<Duration>
    nonisolated let eventLoopGroup: any EventLoopGroup
    nonisolated let router = MessageRouter()
    nonisolated let stateBroadcast = StateBroadcast()

    var session: ClientSession
    private var publishWaiters: [UInt64: AsyncPromise<PublishResult>] = [:]
    private var requestWaiters: [UInt64: AsyncPromise<[ReasonCode]>] = [:]
    private var nextRequestToken: UInt64 = 1
    private var outboxRestored = false

    private var supervisor: Task<SupervisorOutcome, Never>?
    private var stopRequested = false
    /// Whether the next CONNECT is the first since ``connect()`` or ``run()``: it uses the configured clean start.
    private var firstConnectionOfRun = true
    private var assignedClientIdentifier: String?

    private var channel: (any Channel)?
    private var connectionNumber: UInt64 = 0
    /// Why we closed the current connection ourselves, when we did.
    private var closeReason: DisconnectReason?
    private var keepAlive: KeepAliveMonitor?
    private var keepAliveTask: Task<Void, Never>?
    private var randomGenerator = SystemRandomNumberGenerator()

    // Request/response state (MQTT+RequestResponse.swift).
    var pendingResponses: [ByteBuffer: AsyncPromise<MQTTMessage>] = [:]
    var responseSubscription: Task<Void, any Error>?
    var responseTopic: String?

    /// Makes a client; it does not connect until ``connect()`` or ``run()``.
    ///
    /// - Parameters:
    ///   - configuration: broker, identity, session and policies.
    ///   - eventLoopGroup: the NIO event loops for the connection; the shared singleton by default.
    ///   - clock: the clock for backoff delays, keep alive and request timeouts; tests pass a manual one.
    ///   - logger: where the client logs; it adds `mqtt.client_id` and `mqtt.broker` metadata.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "databus.mqtt-client")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.clock = clock
        var logger = logger
        logger[metadataKey: "mqtt.client_id"] = "\(configuration.clientIdentifier)"
        logger[metadataKey: "mqtt.broker"] = "\(configuration.host):\(configuration.port)"
        self.logger = logger
        self.session = ClientSession(
            version: configuration.protocolVersion,
            receiveMaximum: configuration.receiveMaximum,
            topicAliasMaximum: configuration.topicAliasMaximum,
            maximumInflight: configuration.maximumInflightMessages,
            manualAcknowledgement: configuration.acknowledgement == .manual,
            outbox: configuration.outbox
        )
    }

    // MARK: State

    /// The connection state now.
    public nonisolated var state: ConnectionState { stateBroadcast.current }

    /// The connection states from now on, starting with the current one.
    public nonisolated var states: AsyncStream<ConnectionState> { stateBroadcast.makeStream() }

    /// Every incoming message from now on (a new sequence on each access); see ``MQTTMessages``.
    public nonisolated var messages: MQTTMessages { router.makeMessages().messages }

    /// How full the outbox is, and how many messages it dropped or refused.
    public var outboxStatistics: OutboxStatistics { session.outbox.statistics }

    /// The client identifier in use: the configured one, or the one the broker assigned.
    public var clientIdentifier: String { assignedClientIdentifier ?? configuration.clientIdentifier }

    private func setState(_ newState: ConnectionState) {
        stateBroadcast.set(newState)
    }

    // MARK: Connecting

    /// Connects once and returns the broker's CONNACK; from then on the client reconnects by its policy.
    ///
    /// - Throws: ``MQTTClientError`` with ``MQTTClientError/Code-swift.struct/connectionFailed``
    ///   (TCP, TLS, timeout) or ``MQTTClientError/Code-swift.struct/connectionRefused`` (with the
    ///   broker's reason code); the client is stopped then. ``MQTTClientError/Code-swift.struct/alreadyRunning``
    ///   when it is already connecting or connected.
    @discardableResult
    public func connect() async throws -> ConnAckPacket {
        guard supervisor == nil else { throw MQTTClientError(.alreadyRunning, "the client is already connecting or connected") }
        try restoreOutboxIfNeeded()
        let firstAttempt = AsyncPromise<ConnAckPacket>()
        startSupervisor(firstAttempt: firstAttempt)
        return try await firstAttempt.valueIgnoringCancellation()
    }

    /// Connects, retrying by the reconnect policy from the first attempt, and stays connected
    /// until ``disconnect()`` is called, the task is cancelled or the attempts run out.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/reconnectAttemptsExhausted`` when the policy gave up.
    public func runUntilStopped() async throws {
        guard supervisor == nil else { throw MQTTClientError(.alreadyRunning, "the client is already connecting or connected") }
        try restoreOutboxIfNeeded()
        let task = startSupervisor(firstAttempt: nil)
        let outcome = await withTaskCancellationHandler {
            await task.value
        } onCancel: {
            Task { await self.disconnect() }
        }
        if case .gaveUp(let reason) = outcome {
            throw MQTTClientError(.reconnectAttemptsExhausted, "gave up reconnecting; last: \(reason)")
        }
    }

    /// Sends DISCONNECT, closes the connection and stops reconnecting.
    ///
    /// Messages in the outbox stay there and are sent if the client connects again; their
    /// `publish` calls, and waiting subscribes, fail with ``MQTTClientError/Code-swift.struct/clientStopped``.
    /// Message sequences end.
    ///
    /// - Parameter reasonCode: the MQTT 5 reason code; ``ReasonCode/disconnectWithWillMessage``
    ///   asks the broker to publish the will anyway.
    public func disconnect(reasonCode: ReasonCode = .normalDisconnection) async {
        guard let supervisor else { return }
        stopRequested = true
        if let channel {
            closeReason = .clientDisconnected
            if session.isConnected {
                let disconnect = DisconnectPacket(reasonCode: configuration.protocolVersion == .v5 ? reasonCode : .normalDisconnection)
                try? await channel.writeAndFlush(MQTTPacket.disconnect(disconnect)).get()
            }
            try? await channel.close().get()
        }
        supervisor.cancel()
        _ = await supervisor.value
    }

    private func restoreOutboxIfNeeded() throws {
        guard !outboxRestored else { return }
        do {
            try session.restoreOutbox()
        } catch {
            throw MQTTClientError(.persistenceFailed, "could not load the outbox: \(error)")
        }
        outboxRestored = true
        if session.outbox.count > 0 {
            logger.info("restored messages from the outbox", metadata: ["mqtt.outbox.messages": "\(session.outbox.count)"])
        }
    }

    enum SupervisorOutcome {
        case stopped
        case firstAttemptFailed
        case gaveUp(DisconnectReason)
    }

    @discardableResult
    private func startSupervisor(firstAttempt: AsyncPromise<ConnAckPacket>?) -> Task<SupervisorOutcome, Never> {
        stopRequested = false
        firstConnectionOfRun = true
        let task = Task { await self.supervise(firstAttempt: firstAttempt) }
        supervisor = task
        return task
    }

    /// Connects, serves the connection, backs off and reconnects until told to stop.
    private func supervise(firstAttempt: AsyncPromise<ConnAckPacket>?) async -> SupervisorOutcome {
        var backoff = Backoff(policy: configuration.reconnect)
        var connectedOnce = false
        var outcome = SupervisorOutcome.stopped
        while !stopRequested && !Task.isCancelled {
            setState(.connecting)
            let reason: DisconnectReason
            switch await establish() {
            case .failure(let failure):
                reason = failure
                setState(.disconnected(reason))
                logger.info("connection attempt failed", metadata: ["mqtt.reason": "\(reason)"])
                if let firstAttempt, !connectedOnce {
                    firstAttempt.fail(Self.error(for: reason, authenticationMethod: configuration.enhancedAuthentication?.method))
                    outcome = .firstAttemptFailed
                    break
                }
            case .success(var connection):
                backoff.reset()
                connectedOnce = true
                firstAttempt?.succeed(connection.connack)
                reason = await serve(&connection)
                setState(.disconnected(reason))
                logger.info("disconnected", metadata: ["mqtt.reason": "\(reason)"])
            }
            if case .firstAttemptFailed = outcome { break }
            if stopRequested || Task.isCancelled { break }
            guard let delay = backoff.nextDelay(using: &randomGenerator) else {
                outcome = configuration.reconnect.isEnabled ? .gaveUp(reason) : .stopped
                logger.warning("not reconnecting", metadata: ["mqtt.reason": "\(reason)", "mqtt.attempts": "\(backoff.failedAttempts)"])
                break
            }
            setState(.backingOff(delay))
            do {
                try await clock.sleep(for: delay)
            } catch {
                break
            }
        }
        stopped(outcome)
        return outcome
    }

    /// The client stops: waiters fail, sequences end, the state says so.
    private func stopped(_ outcome: SupervisorOutcome) {
        let error: MQTTClientError
        switch outcome {
        case .gaveUp(let reason):
            error = MQTTClientError(.reconnectAttemptsExhausted, "gave up reconnecting; last: \(reason)")
        case .stopped, .firstAttemptFailed:
            error = MQTTClientError(.clientStopped, "the client stopped; the message stays in the outbox")
        }
        let waiters = publishWaiters
        publishWaiters.removeAll()
        for waiter in waiters.values { waiter.fail(error) }
        execute(session.failRequests(error))
        failPendingResponses(error)
        responseSubscription = nil
        router.finishAll()
        supervisor = nil
        stopRequested = false
        setState(.stopped)
    }

    static func error(for reason: DisconnectReason, authenticationMethod: String? = nil) -> MQTTClientError {
        switch reason {
        case .connectionRefused(.badAuthenticationMethod) where authenticationMethod != nil:
            MQTTClientError(
                .connectionRefused,
                "the broker refused the connection: it does not support the authentication method \(authenticationMethod ?? "")",
                reasonCode: .badAuthenticationMethod
            )
        case .connectionRefused(let code): MQTTClientError(.connectionRefused, "the broker refused the connection", reasonCode: code)
        case .credentialsUnavailable(let why): MQTTClientError(.credentialsUnavailable, why)
        case .clientDisconnected: MQTTClientError(.clientStopped, "disconnect() was called")
        default: MQTTClientError(.connectionFailed, "\(reason)")
        }
    }

    // MARK: One connection

    struct EstablishedConnection {
        let channel: any Channel
        var events: AsyncStream<ConnectionEvent>.AsyncIterator
        let connack: ConnAckPacket
    }

    /// Opens TCP/TLS, sends CONNECT with fresh credentials and waits for CONNACK.
    private func establish() async -> Result<EstablishedConnection, DisconnectReason> {
        var username = configuration.username
        var password = configuration.password
        if let provider = configuration.credentialsProvider {
            do {
                (username, password) = try await provider()
            } catch {
                return .failure(.credentialsUnavailable("\(error)"))
            }
        }
        let v5 = configuration.protocolVersion == .v5
        let authentication = v5 ? configuration.enhancedAuthentication : nil
        var authenticationData: ByteBuffer?
        if let authentication {
            do {
                authenticationData = try await authentication.initialData()
            } catch {
                return .failure(.credentialsUnavailable("enhanced authentication (\(authentication.method)): \(error)"))
            }
        }
        if stopRequested || Task.isCancelled { return .failure(.clientDisconnected) }

        let opened: (channel: any Channel, events: AsyncStream<ConnectionEvent>)
        do {
            opened = try await ChannelFactory.connect(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
        } catch let error as MQTTClientError {
            return .failure(.connectionFailed(error.description))
        } catch {
            return .failure(.connectionFailed("\(error)"))
        }
        let channel = opened.channel
        var events = opened.events.makeAsyncIterator()
        self.channel = channel
        closeReason = nil
        if stopRequested {
            channel.close(promise: nil)
            self.channel = nil
            return .failure(.clientDisconnected)
        }
        let timeout = configuration.connectTimeout
        let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            channel.pipeline.fireUserInboundEventTriggered(ConnectTimeoutEvent(timeout: timeout))
        }
        defer { timer.cancel() }

        func failed(_ reason: DisconnectReason) -> Result<EstablishedConnection, DisconnectReason> {
            channel.close(promise: nil)
            self.channel = nil
            return .failure(closeReason ?? reason)
        }

        while true {
            switch await events.next(isolation: self) {
            case .ready:
                let connect = connectPacket(username: username, password: password, authenticationData: authenticationData)
                channel.writeAndFlush(MQTTPacket.connect(connect), promise: nil)
            case .writable:
                continue
            case .packet(.connack(let connack)):
                guard !connack.reasonCode.isFailure else { return failed(.connectionRefused(connack.reasonCode)) }
                return .success(EstablishedConnection(channel: channel, events: events, connack: connack))
            case .packet(.auth(let auth)):
                guard let authentication, auth.reasonCode == .continueAuthentication,
                    auth.properties.authenticationMethod == authentication.method
                else {
                    return failed(.protocolError("unexpected AUTH (\(auth.reasonCode)) before CONNACK"))
                }
                let answer: ByteBuffer?
                do {
                    answer = try await authentication.respond(auth.properties.authenticationData)
                } catch {
                    return failed(.credentialsUnavailable("enhanced authentication (\(authentication.method)): \(error)"))
                }
                var properties: Properties = [.authenticationMethod(authentication.method)]
                if let answer { properties.append(.authenticationData(answer)) }
                channel.writeAndFlush(MQTTPacket.auth(AuthPacket(reasonCode: .continueAuthentication, properties: properties)), promise: nil)
            case .packet(let packet):
                return failed(.protocolError("\(packet.type) before CONNACK"))
            case .closed(let reason):
                return failed(reason ?? .connectionFailed("the connection closed before CONNACK"))
            case nil:
                return failed(.clientDisconnected)
            }
        }
    }

    private func connectPacket(username: String?, password: [UInt8]?, authenticationData: ByteBuffer?) -> ConnectPacket {
        let v5 = configuration.protocolVersion == .v5
        var properties: Properties = []
        if v5 {
            if let authentication = configuration.enhancedAuthentication {
                properties.append(.authenticationMethod(authentication.method))
                if let authenticationData { properties.append(.authenticationData(authenticationData)) }
            }
            let expiry = configuration.sessionExpiry.wholeSeconds(maximum: Int64(UInt32.max))
            if expiry > 0 { properties.append(.sessionExpiryInterval(UInt32(expiry))) }
            if configuration.receiveMaximum != UInt16.max { properties.append(.receiveMaximum(configuration.receiveMaximum)) }
            if let maximum = configuration.maximumPacketSize { properties.append(.maximumPacketSize(maximum)) }
            if configuration.topicAliasMaximum > 0 { properties.append(.topicAliasMaximum(configuration.topicAliasMaximum)) }
            for (name, value) in configuration.connectUserProperties { properties.append(.userProperty(name, value)) }
        }
        // MQTT 5 reconnects resume the session; 3.1.1 has no expiry, so its flag stays as configured.
        let cleanStart = firstConnectionOfRun || !v5 ? configuration.cleanStart : false
        var will = configuration.will
        if !v5 { will?.properties = [] }
        return ConnectPacket(
            protocolVersion: configuration.protocolVersion,
            clientIdentifier: clientIdentifier,
            cleanStart: cleanStart,
            keepAlive: UInt16(configuration.keepAlive.wholeSeconds(maximum: Int64(UInt16.max))),
            username: username,
            password: password.map { ByteBuffer(bytes: $0) },
            will: will,
            properties: properties
        )
    }

    /// Runs a connection from CONNACK until it closes, and says why it closed.
    private func serve(_ connection: inout EstablishedConnection) async -> DisconnectReason {
        connectionNumber += 1
        let number = connectionNumber
        let connack = connection.connack
        firstConnectionOfRun = false
        if let assigned = connack.properties.assignedClientIdentifier { assignedClientIdentifier = assigned }
        logger.info(
            "connected",
            metadata: [
                "mqtt.session_present": "\(connack.sessionPresent)",
                "mqtt.outbox.messages": "\(session.outbox.count)",
            ]
        )
        setState(.connected(sessionPresent: connack.sessionPresent))
        execute(session.connected(connack))
        startKeepAlive(connack: connack, number: number)
        pump()

        var lostReason: DisconnectReason?
        loop: while let event = await connection.events.next(isolation: self) {
            switch event {
            case .packet(let packet):
                handle(packet)
            case .writable:
                pump()
            case .ready:
                continue
            case .closed(let reason):
                lostReason = reason
                break loop
            }
        }
        keepAliveTask?.cancel()
        keepAliveTask = nil
        keepAlive = nil
        if connection.channel.isActive { connection.channel.close(promise: nil) }
        channel = nil
        session.connectionLost()
        return closeReason ?? lostReason ?? (Task.isCancelled ? .clientDisconnected : .connectionLost("closed by the broker"))
    }

    private func handle(_ packet: MQTTPacket) {
        keepAlive?.packetReceived()
        if case .pingresp = packet {
            keepAlive?.pingResponseReceived()
            return
        }
        execute(session.receive(packet))
        if case .puback = packet {
            pump()
        } else if case .pubcomp = packet {
            pump()
        } else if case .pubrec(let rec) = packet, rec.reasonCode.isFailure {
            pump()
        }
    }

    // MARK: Keep alive

    private func startKeepAlive(connack: ConnAckPacket, number: UInt64) {
        let seconds = connack.properties.serverKeepAlive.map(Int64.init) ?? configuration.keepAlive.wholeSeconds(maximum: Int64(UInt16.max))
        guard seconds > 0 else { return }
        let monitor = KeepAliveMonitor(keepAlive: .seconds(seconds), pingTimeout: configuration.pingTimeout)
        keepAlive = monitor
        let clock = self.clock
        let interval = monitor.tickInterval
        keepAliveTask = Task { [weak self] in
            while !Task.isCancelled {
                do {
                    try await clock.sleep(for: interval)
                } catch {
                    return
                }
                await self?.keepAliveTick(number: number)
            }
        }
    }

    private func keepAliveTick(number: UInt64) {
        guard number == connectionNumber, let channel, var monitor = keepAlive else { return }
        let action = monitor.tick()
        keepAlive = monitor
        switch action {
        case .none:
            break
        case .sendPing:
            logger.trace("PINGREQ")
            write(.pingreq)
            channel.flush()
        case .timedOut:
            logger.warning("no PINGRESP in time: closing the dead connection")
            close(sending: nil, reason: .keepAliveTimeout)
        }
    }

    // MARK: Writing

    private func write(_ packet: MQTTPacket, promise: EventLoopPromise<Void>? = nil) {
        guard let channel else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        keepAlive?.packetSent()
        channel.write(packet, promise: promise)
    }

    /// Closes the current connection on purpose.
    func close(sending disconnect: DisconnectPacket?, reason: DisconnectReason) {
        guard let channel else { return }
        closeReason = closeReason ?? reason
        if let disconnect { channel.write(MQTTPacket.disconnect(disconnect), promise: nil) }
        channel.flush()
        channel.close(promise: nil)
    }

    /// Sends queued outbox entries while the channel is writable and the broker's receive maximum allows.
    private func pump() {
        guard let channel else { return }
        var wrote = false
        while channel.isWritable, let outgoing = session.nextOutgoing() {
            switch outgoing {
            case .publish(let packet, let sequence, let qos):
                wrote = true
                if qos == .atMostOnce, let waiter = publishWaiters.removeValue(forKey: sequence) {
                    let promise = channel.eventLoop.makePromise(of: Void.self)
                    promise.futureResult.whenComplete { result in
                        switch result {
                        case .success: waiter.succeed(PublishResult())
                        case .failure(let error):
                            waiter.fail(MQTTClientError(.connectionClosed, "the QoS 0 message could not be written: \(error)"))
                        }
                    }
                    write(packet, promise: promise)
                } else {
                    write(packet)
                }
            case .failed(let sequence, let error):
                logger.warning("message refused before sending", metadata: ["mqtt.outbox.sequence": "\(sequence)", "mqtt.error": "\(error)"])
                publishWaiters.removeValue(forKey: sequence)?.fail(error)
            }
        }
        logPersistenceFailures()
        if wrote { channel.flush() }
    }

    /// Carries out what the session decided, flushing what it wrote.
    func execute(_ actions: [ClientSession.Action]) {
        var wrote = false
        defer { if wrote { channel?.flush() } }
        for action in actions {
            switch action {
            case .send(let packet):
                write(packet)
                wrote = true
            case .publishCompleted(let sequence, let result):
                if case .failure(let error) = result, error.code == .droppedFromOutbox {
                    logger.warning(
                        "outbox full: dropped the oldest message",
                        metadata: ["mqtt.outbox.sequence": "\(sequence)", "mqtt.outbox.dropped": "\(session.outbox.droppedCount)"]
                    )
                }
                publishWaiters.removeValue(forKey: sequence)?.complete(result.mapError { $0 as any Error })
            case .requestCompleted(let token, let result):
                if token == 0 {
                    if case .success(let codes) = result, let failure = codes.first(where: \.isFailure) {
                        logger.warning("resubscription refused", metadata: ["mqtt.reason_code": "\(failure)"])
                    }
                } else {
                    requestWaiters.removeValue(forKey: token)?.complete(result.mapError { $0 as any Error })
                }
            case .deliver(let message):
                route(message)
            case .unsubscribed(let filters):
                router.finish(topicFilters: filters)
            case .close(let disconnect, let reason):
                logger.error("closing the connection", metadata: ["mqtt.reason": "\(reason)"])
                close(sending: disconnect, reason: reason)
            }
        }
        logPersistenceFailures()
    }

    private func logPersistenceFailures() {
        for failure in session.takePersistenceFailures() {
            logger.error("outbox persistence failed; continuing in memory", metadata: ["mqtt.error": "\(failure)"])
        }
    }

    // MARK: Publishing

    /// Hands a message to the client and returns once it is in the outbox, without waiting for
    /// the broker; await the ticket's ``PublishTicket/result()`` for that.
    ///
    /// Messages are sent in the order they are enqueued, also across reconnects. Use this to
    /// keep many messages in flight from one task; ``publish(topic:payload:qos:retain:properties:)``
    /// waits for each.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/invalidTopic``, ``MQTTClientError/Code-swift.struct/outboxFull``,
    ///   ``MQTTClientError/Code-swift.struct/packetTooLarge`` (over the MQTT limit), ``MQTTClientError/Code-swift.struct/persistenceFailed``.
    public func enqueue(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: Properties = []
    ) throws(MQTTClientError) -> PublishTicket {
        do {
            try TopicName.validate(topic)
        } catch {
            throw MQTTClientError(.invalidTopic, "\(topic): \(error)")
        }
        let probe = PublishPacket(topicName: topic, payload: payload, qos: qos, retain: retain, packetIdentifier: 1, properties: properties)
        do {
            _ = try MQTTPacket.publish(probe).encodedSize(version: configuration.protocolVersion)
        } catch {
            throw MQTTClientError(.packetTooLarge, "\(error)")
        }
        let (entry, actions) = try session.enqueue(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        let promise = AsyncPromise<PublishResult>()
        publishWaiters[entry.sequence] = promise
        execute(actions)
        pump()
        return PublishTicket(sequence: entry.sequence, promise: promise)
    }

    /// A message for ``enqueue(_:)``.
    public struct OutgoingMessage: Sendable {
        public var topic: String
        public var payload: ByteBuffer
        public var qos: QoS
        public var retain: Bool
        public var properties: Properties

        public init(topic: String, payload: ByteBuffer, qos: QoS = .atMostOnce, retain: Bool = false, properties: Properties = []) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.properties = properties
        }
    }

    /// Hands several messages to the client at once, in order, without waiting for the broker
    /// and without a ticket each: for a producer that publishes many messages and learns of
    /// their fate otherwise (an LPR server's acks). One call costs one trip into the client.
    ///
    /// - Returns: for each message, `nil` when it is in the outbox, or why it could not be
    ///   taken (invalid topic, too large, outbox full).
    @discardableResult
    public func enqueue(_ messages: [OutgoingMessage]) -> [MQTTClientError?] {
        var results: [MQTTClientError?] = []
        results.reserveCapacity(messages.count)
        var actions: [ClientSession.Action] = []
        for message in messages {
            do {
                try TopicName.validate(message.topic)
            } catch {
                results.append(MQTTClientError(.invalidTopic, "\(message.topic): \(error)"))
                continue
            }
            do {
                let probe = PublishPacket(
                    topicName: message.topic,
                    payload: message.payload,
                    qos: message.qos,
                    retain: message.retain,
                    packetIdentifier: 1,
                    properties: message.properties
                )
                _ = try MQTTPacket.publish(probe).encodedSize(version: configuration.protocolVersion)
                let (_, entryActions) = try session.enqueue(
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos,
                    retain: message.retain,
                    properties: message.properties
                )
                actions += entryActions
                results.append(nil)
            } catch let error as MQTTClientError {
                results.append(error)
            } catch {
                results.append(MQTTClientError(.packetTooLarge, "\(error)"))
            }
        }
        execute(actions)
        pump()
        return results
    }

    /// Publishes a message and returns when its flow completes: written (QoS 0), PUBACK
    /// (QoS 1) or PUBCOMP (QoS 2), with the broker's MQTT 5 reason code.
    ///
    /// While the client is disconnected the message waits in the outbox, and this call with it.
    ///
    /// - Parameters:
    ///   - topic: the topic name (no wildcards).
    ///   - payload: the application message.
    ///   - qos: at most once by default.
    ///   - retain: whether the broker keeps the message for future subscribers.
    ///   - properties: MQTT 5 properties (user properties, content type, message expiry, ...).
    @discardableResult
    public func publish(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: Properties = []
    ) async throws -> PublishResult {
        let ticket = try enqueue(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        return try await ticket.result()
    }

    /// Publishes a UTF-8 string; see ``publish(topic:payload:qos:retain:properties:)``.
    @discardableResult
    public func publish(
        topic: String,
        payload: String,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: Properties = []
    ) async throws -> PublishResult {
        try await publish(topic: topic, payload: ByteBuffer(string: payload), qos: qos, retain: retain, properties: properties)
    }

    // MARK: Subscribing

    /// Subscribes and returns the broker's reason code for each subscription: the granted QoS,
    /// or a failure code (0x80 and above).
    ///
    /// While disconnected the SUBSCRIBE waits and is sent when the connection returns. The
    /// client remembers granted subscriptions and makes them again when the broker did not keep the session.
    public func subscribe(_ subscriptions: [Subscription], properties: Properties = []) async throws -> [ReasonCode] {
        for subscription in subscriptions {
            do {
                if try SharedSubscription.parse(subscription.topicFilter) == nil { try TopicFilter.validate(subscription.topicFilter) }
            } catch {
                throw MQTTClientError(.invalidTopic, "\(subscription.topicFilter): \(error)")
            }
        }
        let token = nextRequestToken
        nextRequestToken += 1
        let promise = AsyncPromise<[ReasonCode]>()
        requestWaiters[token] = promise
        execute(session.subscribe(token: token, subscriptions, properties: properties))
        return try await promise.value()
    }

    /// Subscribes to one filter and returns the messages that match it.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/subscriptionRefused`` with the broker's reason code.
    public func subscribe(to topicFilter: String, qos: QoS = .atLeastOnce, properties: Properties = []) async throws -> MQTTMessages {
        let (messages, id) = router.makeMessages(topicFilter: topicFilter)
        do {
            let codes = try await subscribe([Subscription(topicFilter: topicFilter, options: SubscriptionOptions(qos: qos))], properties: properties)
            if let code = codes.first, code.isFailure {
                throw MQTTClientError(.subscriptionRefused, "the broker refused \(topicFilter)", reasonCode: code)
            }
            return messages
        } catch {
            router.finish(id: id)
            throw error
        }
    }

    /// Unsubscribes; returns a reason code per filter (MQTT 5), all success in 3.1.1. The
    /// filters' message sequences end.
    @discardableResult
    public func unsubscribe(_ topicFilters: [String], properties: Properties = []) async throws -> [ReasonCode] {
        let token = nextRequestToken
        nextRequestToken += 1
        let promise = AsyncPromise<[ReasonCode]>()
        requestWaiters[token] = promise
        execute(session.unsubscribe(token: token, topicFilters, properties: properties))
        return try await promise.value()
    }

    /// Acknowledges an incoming QoS 1/2 message once the application has dealt with it, when the
    /// client was configured with ``Configuration/Acknowledgement/manual``; does nothing otherwise,
    /// for QoS 0, and for a message of an earlier connection (the broker sends that one again).
    ///
    /// Acknowledge QoS 1 messages in the order they arrived: MQTT asks for it.
    public func acknowledge(_ message: MQTTMessage) {
        guard configuration.acknowledgement == .manual, message.qos != .atMostOnce,
            let identifier = message.packetIdentifier, message.connectionNumber == connectionNumber, channel != nil
        else { return }
        execute(session.acknowledge(qos: message.qos, packetIdentifier: identifier))
    }

    /// Acknowledges several messages at once (one flush); see ``acknowledge(_:)``.
    public func acknowledge(_ messages: some Sequence<MQTTMessage>) {
        guard configuration.acknowledgement == .manual, channel != nil else { return }
        var actions: [ClientSession.Action] = []
        for message in messages where message.qos != .atMostOnce && message.connectionNumber == connectionNumber {
            guard let identifier = message.packetIdentifier else { continue }
            actions += session.acknowledge(qos: message.qos, packetIdentifier: identifier)
        }
        execute(actions)
    }

    /// Hands an incoming message to a waiting request or to the message sequences.
    private func route(_ message: MQTTMessage) {
        var message = message
        message.connectionNumber = connectionNumber
        if let responseTopic, message.topic == responseTopic, let correlation = message.properties.correlationData {
            // Responses are the client's own business: acknowledged here in either mode.
            acknowledge(message)
            if let waiter = pendingResponses.removeValue(forKey: correlation) {
                waiter.succeed(message)
            } else {
                logger.debug("response for no waiting request (late or foreign)", metadata: ["mqtt.topic": "\(message.topic)"])
            }
            return
        }
        router.deliver(message)
    }

    // MARK: Test hooks

    /// Closes the TCP connection without DISCONNECT, as a crash or a cut cable would (the broker then publishes the will).
    package func dropConnectionForTesting() {
        guard let channel else { return }
        closeReason = .connectionLost("dropped for testing")
        channel.close(promise: nil)
    }
}

/// A message handed to ``MQTTClient/enqueue(topic:payload:qos:retain:properties:)``; await its result.
public struct PublishTicket: Sendable {
    /// The message's place in the outbox order.
    public let sequence: UInt64
    let promise: AsyncPromise<PublishResult>

    /// Waits until the publish flow completes; see ``MQTTClient/publish(topic:payload:qos:retain:properties:)``.
    public func result() async throws -> PublishResult {
        try await promise.value()
    }
}
