import MQTTCore
import NIOCore

extension MQTTClient {
    // MARK: Publishing

    /// Hands a message to the client and returns once it is in the outbox, without waiting for
    /// the broker; await the ticket's ``PublishTicket/result()`` for that.
    ///
    /// With a persistence (``OutboxConfiguration/persistence``) it returns once the message is
    /// stored: a process killed after this returned still sends it when it runs again.
    /// Messages are sent in the order they are enqueued, also across reconnects. Use this to
    /// keep many messages in flight from one task; ``publish(topic:payload:qos:retain:properties:)``
    /// waits for each, and ``enqueue(batch:)`` takes many messages in one call.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/invalidTopic``, ``MQTTClientError/Code-swift.struct/outboxFull``,
    ///   ``MQTTClientError/Code-swift.struct/packetTooLarge`` (over the MQTT limit), ``MQTTClientError/Code-swift.struct/persistenceFailed``
    ///   (the message stays in memory and is sent, but would not survive a crash).
    public func enqueue(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: Properties = []
    ) async throws(MQTTClientError) -> PublishTicket {
        try restoreOutboxIfNeeded()
        try validate(OutgoingMessage(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties))
        let (entry, actions) = try session.enqueue(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        let promise = AsyncPromise<PublishResult>()
        publishWaiters[entry.sequence] = promise
        execute(actions, flushing: false)
        pump()
        try await waitUntilStored()
        return PublishTicket(sequence: entry.sequence, promise: promise)
    }

    /// A message for ``enqueue(_:)`` and ``enqueue(batch:)``.
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
    /// their fate otherwise (an LPR server's acks). One call costs one trip into the client;
    /// with a persistence it returns once the messages are stored.
    ///
    /// - Returns: for each message, `nil` when it is in the outbox, or why it could not be
    ///   taken (invalid topic, too large, outbox full, not stored).
    @discardableResult
    public func enqueue(_ messages: [OutgoingMessage]) async -> [MQTTClientError?] {
        var results: [MQTTClientError?] = []
        results.reserveCapacity(messages.count)
        do throws(MQTTClientError) {
            try restoreOutboxIfNeeded()
        } catch {
            return Array(repeating: error, count: messages.count)
        }
        var actions: [ClientSession.Action] = []
        for message in messages {
            do throws(MQTTClientError) {
                try validate(message)
                let (_, entryActions) = try session.enqueue(
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos,
                    retain: message.retain,
                    properties: message.properties
                )
                actions += entryActions
                results.append(nil)
            } catch {
                results.append(error)
            }
        }
        execute(actions, flushing: false)
        pump()
        do throws(MQTTClientError) {
            try await waitUntilStored()
        } catch {
            return results.map { $0 ?? error }
        }
        return results
    }

    /// Hands many messages to the client in one call and returns one ticket for all of them,
    /// once they are in the outbox (stored, with a persistence): the fast way to publish a
    /// stream, with no task hop and no waiter per message.
    ///
    /// The batch is taken whole or not at all: every message is checked first, and with
    /// ``OutboxOverflowPolicy/rejectNewest`` the outbox must have room for all of them.
    ///
    /// ```swift
    /// let ticket = try await client.enqueue(batch: lines.map { .init(topic: "cameras/7/detection", payload: $0, qos: .atLeastOnce) })
    /// for case .failure(let error) in try await ticket.results() { ... }
    /// ```
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/invalidTopic`` or ``MQTTClientError/Code-swift.struct/packetTooLarge``
    ///   for the first bad message, ``MQTTClientError/Code-swift.struct/outboxFull``, or
    ///   ``MQTTClientError/Code-swift.struct/persistenceFailed`` (the messages stay in memory and
    ///   are sent, but would not survive a crash).
    public func enqueue(batch messages: [OutgoingMessage]) async throws(MQTTClientError) -> PublishBatchTicket {
        try restoreOutboxIfNeeded()
        var bytes = 0
        var lastValidTopic: String?
        for message in messages {
            try validate(message, knownValidTopic: lastValidTopic)
            lastValidTopic = message.topic
            bytes += message.topic.utf8.count + message.payload.readableBytes
        }
        let outbox = session.outbox
        if outbox.configuration.overflowPolicy == .rejectNewest
            && (outbox.count + messages.count > outbox.configuration.maximumMessages || outbox.byteCount + bytes > outbox.configuration.maximumBytes)
        {
            throw MQTTClientError(
                .outboxFull,
                "the outbox holds \(outbox.count) messages of \(outbox.byteCount) bytes; \(messages.count) more of \(bytes) bytes "
                    + "exceed its limits of \(outbox.configuration.maximumMessages) messages and \(outbox.configuration.maximumBytes) bytes"
            )
        }
        var actions: [ClientSession.Action] = []
        var first: UInt64?
        var taken = 0
        var refused: [Int: MQTTClientError] = [:]
        for (index, message) in messages.enumerated() {
            do throws(MQTTClientError) {
                let (entry, entryActions) = try session.enqueue(
                    topic: message.topic,
                    payload: message.payload,
                    qos: message.qos,
                    retain: message.retain,
                    properties: message.properties
                )
                if first == nil { first = entry.sequence }
                taken += 1
                actions += entryActions
            } catch {
                // dropOldest cannot make room for this one (the outbox is full of messages in flight).
                refused[index] = error
            }
        }
        let promise = AsyncPromise<[Result<PublishResult, MQTTClientError>]>()
        let start = first ?? 0
        if taken == 0 {
            promise.succeed(messages.indices.map { .failure(refused[$0] ?? MQTTClientError(.outboxFull, "the outbox is full")) })
        } else {
            batchWaiters.append(PublishBatchWaiter(first: start, count: taken, refused: refused, promise: promise))
        }
        execute(actions, flushing: false)
        pump()
        try await waitUntilStored()
        return PublishBatchTicket(sequences: start..<start + UInt64(taken), promise: promise)
    }

    /// Checks a message before it goes into the outbox.
    func validate(_ message: OutgoingMessage, knownValidTopic: String? = nil) throws(MQTTClientError) {
        if message.topic != knownValidTopic {
            do {
                try TopicName.validate(message.topic)
            } catch {
                throw MQTTClientError(.invalidTopic, "\(message.topic): \(error)")
            }
        }
        let probe = PublishPacket(
            topicName: message.topic,
            payload: message.payload,
            qos: message.qos,
            retain: message.retain,
            packetIdentifier: 1,
            properties: message.properties
        )
        do {
            _ = try MQTTPacket.publish(probe).encodedSize(version: configuration.protocolVersion)
        } catch {
            throw MQTTClientError(.packetTooLarge, "\(error)")
        }
    }

    /// Waits until everything handed to the persistence so far is stored; at once without one.
    func waitUntilStored() async throws(MQTTClientError) {
        guard let writer = outboxWriter else { return }
        let submission = persistChanges() ?? writer.lastSubmission
        try await writer.waitUntilStored(submission)
    }

    /// Whether someone waits for this message's outcome.
    func hasWaiter(_ sequence: UInt64) -> Bool {
        if !publishWaiters.isEmpty, publishWaiters[sequence] != nil { return true }
        return batchWaiterIndex(of: sequence) != nil
    }

    /// Tells whoever waits for a message how its flow ended.
    func completePublish(_ sequence: UInt64, _ result: Result<PublishResult, MQTTClientError>) {
        if let index = batchWaiterIndex(of: sequence) {
            let waiter = batchWaiters[index]
            if waiter.record(sequence, result) {
                batchWaiters.remove(at: index)
            }
            return
        }
        guard !publishWaiters.isEmpty else { return }
        publishWaiters.removeValue(forKey: sequence)?.complete(result.mapError { $0 as any Error })
    }

    private func batchWaiterIndex(of sequence: UInt64) -> Int? {
        guard let front = batchWaiters.first else { return nil }
        if front.contains(sequence) { return 0 }
        // Batches are in sequence order: search.
        var low = 0
        var high = batchWaiters.count
        while low < high {
            let middle = (low + high) / 2
            if batchWaiters[middle].end <= sequence { low = middle + 1 } else { high = middle }
        }
        return low < batchWaiters.count && batchWaiters[low].contains(sequence) ? low : nil
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
        let ticket = try await enqueue(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
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

/// Messages handed to ``MQTTClient/enqueue(batch:)`` together; await their results.
public struct PublishBatchTicket: Sendable {
    /// The messages' places in the outbox order.
    public let sequences: Range<UInt64>
    let promise: AsyncPromise<[Result<PublishResult, MQTTClientError>]>

    /// Waits until every message's flow has completed (written at QoS 0, PUBACK at QoS 1,
    /// PUBCOMP at QoS 2) and returns the outcomes in the order of the batch.
    ///
    /// - Throws: ``MQTTClientError/Code-swift.struct/clientStopped`` when the client stops
    ///   first (the messages stay in the outbox).
    public func results() async throws -> [Result<PublishResult, MQTTClientError>] {
        try await promise.value()
    }
}

/// Waits for the flows of one batch: counts them down and keeps only the outcomes that are
/// not a plain success, so a batch of thousands costs one promise.
final class PublishBatchWaiter {
    /// The sequence of the batch's first message in the outbox; the others follow without gaps.
    let first: UInt64
    /// How many of the batch's messages went into the outbox.
    let count: Int
    private var remaining: Int
    /// Outcomes other than a plain success, by offset from `first`.
    private var outcomes: [Int: Result<PublishResult, MQTTClientError>] = [:]
    /// Messages the outbox refused, by their place in the batch.
    private let refused: [Int: MQTTClientError]
    let promise: AsyncPromise<[Result<PublishResult, MQTTClientError>]>

    init(first: UInt64, count: Int, refused: [Int: MQTTClientError], promise: AsyncPromise<[Result<PublishResult, MQTTClientError>]>) {
        self.first = first
        self.count = count
        self.remaining = count
        self.refused = refused
        self.promise = promise
    }

    var end: UInt64 { first + UInt64(count) }

    func contains(_ sequence: UInt64) -> Bool { sequence >= first && sequence < end }

    /// Records one outcome; `true` when it was the last one (the promise is then completed).
    func record(_ sequence: UInt64, _ result: Result<PublishResult, MQTTClientError>) -> Bool {
        if case .success(let published) = result, published.reasonCode == .success, published.properties.isEmpty {
            // The common case: nothing to keep.
        } else {
            outcomes[Int(sequence - first)] = result
        }
        remaining -= 1
        guard remaining == 0 else { return false }
        var results: [Result<PublishResult, MQTTClientError>] = []
        results.reserveCapacity(count + refused.count)
        var offset = 0
        for index in 0..<(count + refused.count) {
            if let error = refused[index] {
                results.append(.failure(error))
            } else {
                results.append(outcomes[offset] ?? .success(PublishResult()))
                offset += 1
            }
        }
        promise.succeed(results)
        return true
    }
}
