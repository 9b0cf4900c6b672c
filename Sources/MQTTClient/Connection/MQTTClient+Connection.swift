import Logging
import MQTTCore
import NIOCore

/// One connection: TCP/TLS, CONNECT/CONNACK, then the loop that hands what the broker sends to
/// the session and carries out what the session decides.
extension MQTTClient {

    struct EstablishedConnection {
        let channel: any Channel
        var events: AsyncStream<ConnectionEvent>.AsyncIterator
        let connack: ConnAckPacket
    }

    /// Opens TCP/TLS, sends CONNECT with fresh credentials and waits for CONNACK.
    func establish() async -> Result<EstablishedConnection, DisconnectReason> {
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

    /// Runs a connection from CONNACK until it closes, and says why it closed.
    func serve(_ connection: inout EstablishedConnection) async -> DisconnectReason {
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

    func handle(_ packet: MQTTPacket) {
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

    func startKeepAlive(connack: ConnAckPacket, number: UInt64) {
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

    func keepAliveTick(number: UInt64) {
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

    func write(_ packet: MQTTPacket, promise: EventLoopPromise<Void>? = nil) {
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
    func pump() {
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

    func logPersistenceFailures() {
        for failure in session.takePersistenceFailures() {
            logger.error("outbox persistence failed; continuing in memory", metadata: ["mqtt.error": "\(failure)"])
        }
    }
}
