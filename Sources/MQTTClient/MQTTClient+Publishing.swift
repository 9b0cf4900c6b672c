import MQTTCore
import NIOCore

extension MQTTClient {
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
