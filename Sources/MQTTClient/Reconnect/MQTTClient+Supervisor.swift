import Logging
import MQTTCore
import NIOCore

/// Connecting and staying connected: the supervisor that connects, serves the connection,
/// backs off by the ``MQTTClient/Configuration/reconnect`` policy and reconnects until told to stop.
extension MQTTClient {

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
                write(.disconnect(disconnect))
                let bytes = output
                output = ByteBuffer()
                try? await channel.writeAndFlush(bytes).get()
            }
            try? await channel.close().get()
        }
        supervisor.cancel()
        _ = await supervisor.value
        await waitUntilPersisted()
    }

    /// Waits until the persistence has stored every change so far (the last acknowledgements'
    /// deletes), so that a process that exits after ``disconnect()`` leaves the store as it
    /// left memory.
    func waitUntilPersisted() async {
        guard let writer = outboxWriter else { return }
        let submission = persistChanges() ?? writer.lastSubmission
        do {
            try await writer.waitUntilStored(submission)
        } catch {
            logger.error("outbox persistence failed", metadata: ["mqtt.error": "\(error)"])
        }
    }

    func restoreOutboxIfNeeded() throws(MQTTClientError) {
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
    func startSupervisor(firstAttempt: AsyncPromise<ConnAckPacket>?) -> Task<SupervisorOutcome, Never> {
        stopRequested = false
        firstConnectionOfRun = true
        let task = Task { await self.supervise(firstAttempt: firstAttempt) }
        supervisor = task
        return task
    }

    /// Connects, serves the connection, backs off and reconnects until told to stop.
    func supervise(firstAttempt: AsyncPromise<ConnAckPacket>?) async -> SupervisorOutcome {
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
    func stopped(_ outcome: SupervisorOutcome) {
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
        let batches = batchWaiters
        batchWaiters.removeAll()
        for batch in batches { batch.promise.fail(error) }
        writtenAtMostOnce.removeAll()
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
}
