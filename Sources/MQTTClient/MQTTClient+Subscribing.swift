import MQTTCore
import NIOCore

extension MQTTClient {
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
    func route(_ message: MQTTMessage) {
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
}
