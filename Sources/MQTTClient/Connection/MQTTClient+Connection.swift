import Logging
import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// One connection: TCP/TLS, CONNECT/CONNACK, then the loop that hands what the broker sends to
/// the session and carries out what the session decides.
///
/// The client runs on its connection's event loop (see ``MQTTClient/unownedExecutor``), so
/// what it writes goes to the channel without a thread hop: packets are encoded into one
/// buffer and written with one flush per burst.
extension MQTTClient {
    struct EstablishedConnection {
        let channel: any Channel
        let events: ConnectionEvents
        let connack: ConnAckPacket
        /// Packets that came in the same read as CONNACK, after it.
        var pending: ArraySlice<MQTTPacket>
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

        let events = ConnectionEvents()
        let channel: any Channel
        do {
            // The handler runs on the client's event loop, so it calls the client directly.
            channel = try await ChannelFactory.connect(
                configuration: configuration,
                eventLoop: eventLoop,
                events: events,
                deliver: { [weak self] event in
                    guard let self else { return events.yield(event) }
                    self.assumeIsolated { $0.connectionEvent(event, on: events) }
                },
                logger: logger
            )
        } catch let error as MQTTClientError {
            return .failure(.connectionFailed(error.description))
        } catch {
            return .failure(.connectionFailed("\(error)"))
        }
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
            switch await events.next() {
            case .ready:
                let connect = connectPacket(username: username, password: password, authenticationData: authenticationData)
                write(.connect(connect))
                flush()
            case .writable:
                continue
            case .packets(let packets):
                for (index, packet) in packets.enumerated() {
                    switch packet {
                    case .connack(let connack):
                        guard !connack.reasonCode.isFailure else { return failed(.connectionRefused(connack.reasonCode)) }
                        return .success(
                            EstablishedConnection(channel: channel, events: events, connack: connack, pending: packets[(index + 1)...])
                        )
                    case .auth(let auth):
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
                        write(.auth(AuthPacket(reasonCode: .continueAuthentication, properties: properties)))
                        flush()
                    default:
                        return failed(.protocolError("\(packet.type) before CONNACK"))
                    }
                }
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
        if !connection.pending.isEmpty { handle(connection.pending) }
        // From here on the channel's events are handled as they come, in the handler's call
        // (same event loop, no task switch); only the close goes through the queue. What came
        // in before is handled first, in order.
        servedEvents = connection.events
        for event in connection.events.takeBuffered() {
            connectionEvent(event, on: connection.events)
        }

        var lostReason: DisconnectReason?
        loop: while let event = await connection.events.next() {
            switch event {
            case .packets(let packets):
                handle(packets[...])
            case .writable:
                pump()
            case .ready:
                continue
            case .closed(let reason):
                lostReason = reason
                break loop
            }
        }
        servedEvents = nil
        keepAliveTask?.cancel()
        keepAliveTask = nil
        keepAlive = nil
        if connection.channel.isActive { connection.channel.close(promise: nil) }
        channel = nil
        output.clear()
        heldForStorage = nil
        session.connectionLost()
        persistChanges()
        return closeReason ?? lostReason ?? (Task.isCancelled ? .clientDisconnected : .connectionLost("closed by the broker"))
    }

    /// An event from a connection's channel handler, on the client's event loop: handled at once
    /// on the connection being served, queued for ``establish()`` otherwise.
    func connectionEvent(_ event: ConnectionEvent, on events: ConnectionEvents) {
        guard let servedEvents, servedEvents === events else { return events.yield(event) }
        switch event {
        case .packets(let packets): handle(packets[...])
        case .writable: pump()
        case .ready: break
        case .closed: events.yield(event)
        }
    }

    /// Handles the packets of one read: the session's decisions for all of them, then one
    /// round of sending and one flush.
    func handle(_ packets: ArraySlice<MQTTPacket>) {
        keepAlive?.packetReceived()
        var actions: [ClientSession.Action] = []
        var freed = false
        for packet in packets {
            switch packet {
            case .pingresp:
                keepAlive?.pingResponseReceived()
                continue
            case .puback, .pubcomp:
                freed = true
            case .pubrec(let rec) where rec.reasonCode.isFailure:
                freed = true
            default:
                break
            }
            session.receive(packet, into: &actions)
        }
        execute(actions, flushing: false)
        if freed { pump(flushing: false) }
        if freed, output.readableBytes == 0, session.inflightCount > 0 { acknowledgeReadsNow() }
        flush()
    }

    /// Has the kernel acknowledge what was read at once (Linux `TCP_QUICKACK`), when
    /// acknowledgements came in, more are awaited and there is nothing to send that would
    /// carry the TCP ACK.
    ///
    /// A broker with Nagle's algorithm on (mosquitto's default, `set_tcp_nodelay false`) holds
    /// its next acknowledgements until its previous segment is ACKed; a client with nothing to
    /// send delays that ACK (40 ms on Linux), so the last messages of every burst waited 40 ms.
    func acknowledgeReadsNow() {
        #if canImport(Glibc)
        try? channel?.syncOptions?.setOption(.tcpOption(.init(rawValue: CInt(TCP_QUICKACK))), value: 1)
        #endif
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
        guard number == connectionNumber, channel != nil, var monitor = keepAlive else { return }
        let action = monitor.tick()
        keepAlive = monitor
        switch action {
        case .none:
            break
        case .sendPing:
            logger.trace("PINGREQ")
            write(.pingreq)
            flush()
        case .timedOut:
            logger.warning("no PINGRESP in time: closing the dead connection")
            close(sending: nil, reason: .keepAliveTimeout)
        }
    }

    // MARK: Writing

    /// Encodes a packet into the output buffer; ``flush()`` writes the buffer.
    func write(_ packet: MQTTPacket) {
        guard channel != nil else { return }
        keepAlive?.packetSent()
        do {
            try packet.write(to: &output, version: configuration.protocolVersion)
        } catch {
            // Sizes are checked before a packet is made; this is a bug, not the broker's doing.
            logger.error("could not encode a packet; closing the connection", metadata: ["mqtt.error": "\(error)"])
            closeReason = closeReason ?? .protocolError("could not encode \(packet.type): \(error)")
            channel?.close(promise: nil)
        }
    }

    /// Writes what was encoded since the last flush, and completes the QoS 0 messages in it
    /// once the socket took them.
    func flush() {
        guard let channel else { return }
        guard output.readableBytes > 0 else { return }
        let bytes = output
        output = channel.allocator.buffer(capacity: 4_096)
        if writtenAtMostOnce.isEmpty {
            channel.writeAndFlush(bytes, promise: nil)
            return
        }
        let written = writtenAtMostOnce
        writtenAtMostOnce.removeAll()
        let promise = channel.eventLoop.makePromise(of: Void.self)
        promise.futureResult.whenComplete { result in
            self.assumeIsolated { client in
                let outcome: Result<PublishResult, MQTTClientError> = result.map { PublishResult() }.mapError {
                    MQTTClientError(.connectionClosed, "the QoS 0 message could not be written: \($0)")
                }
                for sequence in written { client.completePublish(sequence, outcome) }
            }
        }
        channel.writeAndFlush(bytes, promise: promise)
    }

    /// Closes the current connection on purpose.
    func close(sending disconnect: DisconnectPacket?, reason: DisconnectReason) {
        guard let channel else { return }
        closeReason = closeReason ?? reason
        if let disconnect { write(.disconnect(disconnect)) }
        flush()
        channel.close(promise: nil)
    }

    /// Sends queued outbox entries while the channel is writable and the broker's receive maximum allows.
    ///
    /// With a persistence, a QoS 2 PUBLISH waits until its packet identifier is stored: sent
    /// again after a crash under another identifier, it could be delivered twice.
    func pump(flushing: Bool = true) {
        defer {
            persistChanges()
            refillIfNeeded()
            if flushing { flush() }
        }
        guard let channel, heldForStorage == nil else { return }
        while channel.isWritable, let outgoing = session.nextOutgoing() {
            switch outgoing {
            case .publish(let packet, let sequence, let qos):
                if qos == .atMostOnce {
                    write(packet)
                    if hasWaiter(sequence) { writtenAtMostOnce.append(sequence) }
                } else if qos == .exactlyOnce, let writer = outboxWriter {
                    let submission = writer.submit(session.takeOutboxChanges())
                    heldForStorage = packet
                    let number = connectionNumber
                    Task {
                        try? await writer.waitUntilStored(submission)
                        self.releaseHeld(connectionNumber: number)
                    }
                    return
                } else {
                    write(packet)
                }
            case .failed(let sequence, let error):
                logger.warning("message refused before sending", metadata: ["mqtt.outbox.sequence": "\(sequence)", "mqtt.error": "\(error)"])
                completePublish(sequence, .failure(error))
            }
        }
    }

    /// Sends the QoS 2 PUBLISH that waited for its state to be stored, and goes on sending.
    func releaseHeld(connectionNumber number: UInt64) {
        guard number == connectionNumber, let packet = heldForStorage else { return }
        heldForStorage = nil
        write(packet)
        pump()
    }

    /// Carries out what the session decided, flushing what it wrote.
    func execute(_ actions: [ClientSession.Action], flushing: Bool = true) {
        for action in actions {
            switch action {
            case .send(let packet):
                write(packet)
            case .publishCompleted(let sequence, let result):
                if case .failure(let error) = result, error.code == .droppedFromOutbox {
                    logger.warning(
                        "outbox full: dropped the oldest message",
                        metadata: ["mqtt.outbox.sequence": "\(sequence)", "mqtt.outbox.dropped": "\(session.outbox.droppedCount)"]
                    )
                }
                completePublish(sequence, result)
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
        persistChanges()
        if flushing { flush() }
    }

    // MARK: Persistence

    /// Hands what the outbox changed to the writer (group commit); returns the submission, if any.
    @discardableResult
    func persistChanges() -> OutboxWriter.Submission? {
        guard let writer = outboxWriter else { return nil }
        for failure in writer.takeFailures() {
            logger.error("outbox persistence failed; continuing in memory", metadata: ["mqtt.error": "\(failure)"])
        }
        let changes = session.takeOutboxChanges()
        guard !changes.isEmpty else { return nil }
        return writer.submit(changes)
    }

    /// Reads unsent messages back from the store when memory has room for them.
    func refillIfNeeded() {
        guard let writer = outboxWriter, !refilling, session.outbox.wantsRefill else { return }
        refilling = true
        let request = session.outbox.refillRequest
        Task {
            let entries: [OutboxEntry]
            do {
                entries = try await writer.load { try $0.loadEntries(after: request.after, limit: request.limit) }
            } catch {
                self.logger.error("could not read the outbox back from the store", metadata: ["mqtt.error": "\(error)"])
                entries = []
            }
            self.refilled(entries)
        }
    }

    func refilled(_ entries: [OutboxEntry]) {
        refilling = false
        session.refillOutbox(with: entries)
        pump()
    }
}
