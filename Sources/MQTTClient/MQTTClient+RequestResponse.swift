import MQTTCore
import NIOCore

extension MQTTClient {
    /// Publishes a request with a response topic and correlation data (MQTT 5) and waits for
    /// the matching reply, as sent by ``respond(to:qos:handler:)`` on the other side.
    ///
    /// The client subscribes once to its own response topic,
    /// `{responseTopicPrefix}/{client identifier}`, on the first request.
    ///
    /// - Parameters:
    ///   - topic: where the responder listens.
    ///   - payload: the request.
    ///   - qos: the QoS of the request (and of the response subscription); at least once by default.
    ///   - properties: more MQTT 5 properties for the request (user properties, content type, ...).
    ///   - timeout: how long to wait for the reply, measured on the client's clock.
    /// - Returns: the reply message.
    /// - Throws: ``MQTTClientError/Code-swift.struct/timeout``, or
    ///   ``MQTTClientError/Code-swift.struct/unsupportedInProtocolVersion`` on MQTT 3.1.1.
    public func request(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atLeastOnce,
        properties: Properties = [],
        timeout: Duration = .seconds(10)
    ) async throws -> MQTTMessage {
        guard configuration.protocolVersion == .v5 else {
            throw MQTTClientError(.unsupportedInProtocolVersion, "request/response needs MQTT 5 (response topic and correlation data)")
        }
        let responseTopic = try await ensureResponseSubscription()
        var correlation = ByteBuffer()
        for _ in 0..<2 { correlation.writeInteger(UInt64.random(in: .min ... .max)) }
        let waiter = AsyncPromise<MQTTMessage>()
        pendingResponses[correlation] = waiter
        defer { pendingResponses[correlation] = nil }

        var requestProperties = properties
        requestProperties.set(.responseTopic(responseTopic))
        requestProperties.set(.correlationData(correlation))
        let ticket = try await enqueue(topic: topic, payload: payload, qos: qos, properties: requestProperties)
        let clock = self.clock
        let reply: MQTTMessage? = try await withThrowingTaskGroup(of: MQTTMessage?.self) { group in
            group.addTask {
                // A refused request fails at once instead of waiting for the timeout; the reply
                // may come before the acknowledgement, and the waiter keeps it.
                let result = try await ticket.result()
                guard result.isSuccess else {
                    throw MQTTClientError(.publishRefused, "the broker refused the request on \(topic)", reasonCode: result.reasonCode)
                }
                return try await waiter.value()
            }
            group.addTask {
                try await clock.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        guard let reply else { throw MQTTClientError(.timeout, "no response on \(responseTopic) within \(timeout)") }
        return reply
    }

    /// Publishes a UTF-8 string request; see ``request(topic:payload:qos:properties:timeout:)``.
    public func request(
        topic: String,
        payload: String,
        qos: QoS = .atLeastOnce,
        properties: Properties = [],
        timeout: Duration = .seconds(10)
    ) async throws -> MQTTMessage {
        try await request(topic: topic, payload: ByteBuffer(string: payload), qos: qos, properties: properties, timeout: timeout)
    }

    /// Answers requests: subscribes to `topicFilter` and, for each message with a response
    /// topic, publishes what `handler` returns to that topic with the request's correlation data.
    ///
    /// Runs until the task is cancelled, the filter is unsubscribed or the client disconnects.
    /// A request without a response topic is skipped; a handler that throws is logged and the
    /// request gets no reply.
    ///
    /// - Parameters:
    ///   - topicFilter: where requests arrive.
    ///   - qos: the QoS of the subscription and of the replies.
    ///   - handler: turns a request into the reply payload.
    public nonisolated func respond(
        to topicFilter: String,
        qos: QoS = .atLeastOnce,
        handler: @escaping @Sendable (MQTTMessage) async throws -> ByteBuffer
    ) async throws {
        let requests = try await subscribe(to: topicFilter, qos: qos)
        for await request in requests {
            guard let responseTopic = request.properties.responseTopic else {
                logger.debug("request without response topic skipped", metadata: ["mqtt.topic": "\(request.topic)"])
                continue
            }
            let reply: ByteBuffer
            do {
                reply = try await handler(request)
            } catch {
                logger.warning("request handler failed; no reply sent", metadata: ["mqtt.topic": "\(request.topic)", "mqtt.error": "\(error)"])
                continue
            }
            var properties: Properties = []
            if let correlation = request.properties.correlationData { properties.append(.correlationData(correlation)) }
            _ = try await enqueue(topic: responseTopic, payload: reply, qos: qos, properties: properties)
        }
    }

    /// Subscribes to the response topic once; concurrent first requests share the subscription.
    private func ensureResponseSubscription() async throws -> String {
        let topic = responseTopic ?? "\(configuration.responseTopicPrefix)/\(clientIdentifier.isEmpty ? "anonymous" : clientIdentifier)"
        responseTopic = topic
        if let responseSubscription {
            try await responseSubscription.value
            return topic
        }
        let task = Task {
            let codes = try await self.subscribe([Subscription(topicFilter: topic, options: SubscriptionOptions(qos: .atLeastOnce))])
            if let code = codes.first, code.isFailure {
                throw MQTTClientError(.subscriptionRefused, "the broker refused the response topic \(topic)", reasonCode: code)
            }
        }
        responseSubscription = task
        do {
            try await task.value
        } catch {
            responseSubscription = nil
            throw error
        }
        return topic
    }

    func failPendingResponses(_ error: MQTTClientError) {
        let waiters = pendingResponses.values
        pendingResponses.removeAll()
        for waiter in waiters { waiter.fail(error) }
    }
}
