import Logging
import MQTTCore
import NIOCore

/// What routing one message came to.
struct RouteOutcome: Sendable, Equatable {
    /// Sessions that received (or queued) a copy.
    var deliveries: Int
    /// Persistent sessions whose copy could not be queued (a queue limit or the store's budget).
    var notQueued = 0
}

/// Hands a message to every session that subscribed to its topic, and keeps it when it is
/// retained: the one place where a PUBLISH fans out.
///
/// With a store, the copies for persistent sessions and the retained change are written
/// first; ``publishDurably(_:extra:now:completion:)`` delivers and answers only once they are
/// on disk.
final class MessageDistributor: Sendable {
    let router: SubscriptionRouter
    let retained: RetainedMessageStore
    private let configuration: ConfigurationInForce
    private let security: SecurityInForce
    private let statistics: BrokerStatistics
    private let storeReference: StoreReference
    private let logger: Logger

    init(
        router: SubscriptionRouter,
        retained: RetainedMessageStore,
        configuration: ConfigurationInForce,
        security: SecurityInForce,
        statistics: BrokerStatistics,
        storeReference: StoreReference,
        logger: Logger
    ) {
        self.router = router
        self.retained = retained
        self.configuration = configuration
        self.security = security
        self.statistics = statistics
        self.storeReference = storeReference
        self.logger = logger
    }

    private var store: SQLiteBrokerStore? { storeReference.store }

    /// A subscriber's copy of a message, with the packet identifier reserved when it is stored.
    private struct PreparedDelivery {
        let delivery: Delivery
        let packetIdentifier: UInt16?
    }

    /// Routes `message` to every matching subscriber and keeps it if it is retained, at once.
    /// With a store, copies for persistent sessions and the retained change are recorded
    /// without waiting (QoS 0, wills and `$SYS` topics, which nobody acknowledges).
    @discardableResult
    func publish(_ message: ApplicationMessage, now: NIODeadline) -> RouteOutcome {
        let (prepared, operations) = prepare(message)
        if let store, !operations.isEmpty { store.record(operations) }
        deliver(message, prepared, now: now)
        return RouteOutcome(deliveries: prepared.count)
    }

    /// Routes a QoS 1/2 message from a client: with a store, its copies for persistent
    /// sessions, the retained change and `extra` are on disk before anyone receives it, and
    /// `completion` (which sends the PUBACK/PUBREC) runs only then, on the store's thread.
    func publishDurably(
        _ message: ApplicationMessage,
        extra: [StoreOperation],
        now: NIODeadline,
        completion: @escaping @Sendable (Result<RouteOutcome, any Error>) -> Void
    ) {
        let (prepared, operations) = prepare(message)
        guard let store, !(operations.isEmpty && extra.isEmpty) else {
            deliver(message, prepared, now: now)
            return completion(.success(RouteOutcome(deliveries: prepared.count)))
        }
        store.commit(operations + extra) { result in
            switch result {
            case .success:
                // Delivered as of the publish time: a message expiry interval of 0 still reaches
                // connected subscribers, as it would have without the store.
                self.deliver(message, prepared, now: now)
                completion(.success(RouteOutcome(deliveries: prepared.count)))
            case .failure(let error):
                for item in prepared {
                    if let identifier = item.packetIdentifier { item.delivery.session.releaseReservation(identifier) }
                }
                completion(.failure(error))
            }
        }
    }

    private func prepare(_ message: ApplicationMessage) -> ([PreparedDelivery], [StoreOperation]) {
        var deliveries = router.deliveries(for: message)
        if security.checksAccess {
            let before = deliveries.count
            deliveries.removeAll { !$0.session.mayRead(message.topic) }
            for _ in deliveries.count..<before { statistics.dropped(.notAuthorized) }
        }
        var operations: [StoreOperation] = []
        let store = self.store
        if store != nil && message.retain && configuration.retainAvailable && !message.topic.hasPrefix("$SYS") {
            operations.append(message.payload.readableBytes == 0 ? .deleteRetained(topic: message.topic) : .putRetained(message))
        }
        var prepared: [PreparedDelivery] = []
        prepared.reserveCapacity(deliveries.count)
        for delivery in deliveries {
            var identifier: UInt16?
            if store != nil, delivery.qos != .atMostOnce, delivery.session.isPersistent,
                let reserved = delivery.session.reservePacketIdentifier()
            {
                identifier = reserved
                operations.append(
                    .putMessage(
                        clientID: delivery.session.clientID,
                        packetIdentifier: reserved,
                        qos: delivery.qos,
                        retain: delivery.retainAsPublished && message.retain,
                        subscriptionIdentifiers: delivery.subscriptionIdentifiers,
                        message: message
                    )
                )
            }
            prepared.append(PreparedDelivery(delivery: delivery, packetIdentifier: identifier))
        }
        return (prepared, operations)
    }

    private func deliver(_ message: ApplicationMessage, _ prepared: [PreparedDelivery], now: NIODeadline) {
        if message.retain && configuration.retainAvailable { retained.retain(message) }
        for item in prepared {
            let delivery = item.delivery
            delivery.session.deliver(
                message,
                qos: delivery.qos,
                retain: delivery.retainAsPublished && message.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers,
                sharedGroup: delivery.sharedGroup,
                packetIdentifier: item.packetIdentifier,
                now: now
            )
        }
    }

    /// Publishes a client's will, checked when it goes out as mosquitto does: never to `$SYS`,
    /// and only to a topic the ACL in force lets the client write; otherwise dropped and logged.
    func publishWill(_ message: ApplicationMessage, of session: Session, now: NIODeadline) {
        if message.topic.hasPrefix("$SYS") {
            statistics.dropped(.forbiddenTopic)
            logger.notice("dropping a will on $SYS", metadata: ["client": "\(session.clientID)", "topic": "\(message.topic)"])
            return
        }
        if security.checksAccess, let access = session.access, !access.allows(.write, topic: message.topic) {
            statistics.dropped(.notAuthorized)
            logger.notice("dropping a will the ACL does not allow", metadata: ["client": "\(session.clientID)", "topic": "\(message.topic)"])
            return
        }
        publish(message, now: now)
    }

    /// Hands shared-subscription messages that `session` did not acknowledge to other members
    /// of their groups; dropped (and counted) when no other member is left.
    func redistribute(_ messages: [Session.Unacknowledged], from session: Session, now: NIODeadline) {
        for item in messages {
            guard let member = router.alternate(in: item.group, excluding: session) else {
                statistics.dropped(.noSharedMember)
                continue
            }
            if security.checksAccess && !member.session.mayRead(item.message.topic) {
                statistics.dropped(.notAuthorized)
                continue
            }
            member.session.deliver(
                item.message,
                qos: min(item.qos, member.options.qos),
                retain: false,
                subscriptionIdentifiers: member.identifier.map { [$0] } ?? [],
                sharedGroup: item.group,
                now: now
            )
        }
    }
}

/// Holds the store: written once before the listeners start, read-only afterwards.
final class StoreReference: @unchecked Sendable {
    var store: SQLiteBrokerStore?
}
