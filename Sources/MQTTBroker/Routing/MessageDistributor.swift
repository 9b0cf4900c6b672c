import Logging
import MQTTCore
import NIOCore

/// What routing one message came to.
struct RouteOutcome: Sendable {
    /// Sessions that received (or queued) a copy.
    var deliveries: Int
    /// Persistent sessions whose copy could not be queued (a queue limit or the store's budget).
    var notQueued = 0
    /// Connected clients whose backlog is over the high-water mark: the publisher waits for them.
    var congested: [Session] = []
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

    /// A subscriber's copy of a message; for a persistent session with a store, how the session
    /// admitted it (see ``OutboundMessages/admit(bytes:online:)``).
    private struct PreparedDelivery {
        let delivery: Delivery
        let admission: OutboundMessages.Admission?
    }

    /// Routes `message` to every matching subscriber and keeps it if it is retained, at once.
    /// With a store, copies for persistent sessions and the retained change are recorded
    /// without waiting (QoS 0, wills and `$SYS` topics, which nobody acknowledges).
    @discardableResult
    func publish(_ message: ApplicationMessage, now: NIODeadline) -> RouteOutcome {
        var (prepared, operations, outcome) = prepare(message)
        if let store, !operations.isEmpty { store.record(operations) }
        outcome.congested = deliver(message, prepared, now: now)
        return outcome
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
        var (prepared, operations, outcome) = prepare(message)
        guard let store, !(operations.isEmpty && extra.isEmpty) else {
            outcome.congested = deliver(message, prepared, now: now)
            return completion(.success(outcome))
        }
        store.commit(operations + extra) { [outcome, prepared] result in
            switch result {
            case .success:
                // Delivered as of the publish time: a message expiry interval of 0 still reaches
                // connected subscribers, as it would have without the store.
                var outcome = outcome
                outcome.congested = self.deliver(message, prepared, now: now)
                completion(.success(outcome))
            case .failure(let error):
                let bytes = message.payload.readableBytes
                for item in prepared {
                    if let admission = item.admission { item.delivery.session.admissionFailed(admission, bytes: bytes) }
                }
                completion(.failure(error))
            }
        }
    }

    /// Finds the subscribers, drops the copies the ACL keeps from them, and has persistent
    /// sessions admit their QoS 1/2 copies, which are stored (those refused are counted in
    /// the outcome: a 5.0 publisher learns it as 0x97).
    private func prepare(_ message: ApplicationMessage) -> ([PreparedDelivery], [StoreOperation], RouteOutcome) {
        var deliveries = router.deliveries(for: message)
        if security.checksAccess {
            deliveries.removeAll { delivery in
                guard !delivery.session.mayRead(message.topic) else { return false }
                delivery.session.recordDrop(.notAuthorized)
                return true
            }
        }
        var operations: [StoreOperation] = []
        var outcome = RouteOutcome(deliveries: 0)
        let store = self.store
        if store != nil && message.retain && configuration.retainAvailable && !message.topic.hasPrefix("$SYS") {
            operations.append(message.payload.readableBytes == 0 ? .deleteRetained(topic: message.topic) : .putRetained(message))
        }
        var prepared: [PreparedDelivery] = []
        prepared.reserveCapacity(deliveries.count)
        for delivery in deliveries {
            let admitted = admitToStore(
                message,
                for: delivery.session,
                qos: delivery.qos,
                retain: delivery.retainAsPublished && message.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers,
                through: delivery.sharedGroup
            )
            switch admitted {
            case .notStored:
                prepared.append(PreparedDelivery(delivery: delivery, admission: nil))
            case .notQueued:
                outcome.notQueued += 1
            case .stored(let admission, let operation):
                operations.append(operation)
                prepared.append(PreparedDelivery(delivery: delivery, admission: admission))
            }
        }
        outcome.deliveries = prepared.count
        return (prepared, operations, outcome)
    }

    /// How a QoS 1/2 copy for a session was taken into the store.
    private enum StoreAdmission {
        /// Not for the store (no store, QoS 0, a session the store does not keep): delivered as it is.
        case notStored
        /// Admitted by the session, and stored by the operation.
        case stored(OutboundMessages.Admission, StoreOperation)
        /// Not queued: a queue limit or the store's budget (counted on the session).
        case notQueued
    }

    /// Has a persistent `session` admit its copy of `message` and makes the operation that
    /// stores it.
    private func admitToStore(
        _ message: ApplicationMessage,
        for session: Session,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [Int],
        through group: SharedGroup?
    ) -> StoreAdmission {
        guard let store, qos != .atMostOnce else { return .notStored }
        let bytes = message.payload.readableBytes
        guard let admission = session.admit(bytes: bytes) else { return .notStored }
        let identifier: UInt16?
        switch admission {
        case .refused:
            return .notQueued
        case .memory(let reserved):
            identifier = reserved
        case .storeOnly:
            identifier = nil
        }
        guard store.hasRoom(for: message.storedSize) else {
            session.admissionFailed(admission, bytes: bytes)
            session.recordDrop(.storeFull)
            return .notQueued
        }
        let operation = StoreOperation.putMessage(
            clientID: session.clientID,
            sequence: store.nextSequence(),
            packetIdentifier: identifier,
            qos: qos,
            retain: retain,
            subscriptionIdentifiers: subscriptionIdentifiers,
            share: group?.subscription,
            message: message
        )
        return .stored(admission, operation)
    }

    /// Hands each copy to its session. Returns the sessions that are congested (back-pressure).
    private func deliver(_ message: ApplicationMessage, _ prepared: [PreparedDelivery], now: NIODeadline) -> [Session] {
        if message.retain && configuration.retainAvailable { retained.retain(message) }
        var congested: [Session] = []
        for item in prepared {
            let delivery = item.delivery
            let full = delivery.session.deliver(
                message,
                qos: delivery.qos,
                retain: delivery.retainAsPublished && message.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers,
                sharedGroup: delivery.sharedGroup,
                admission: item.admission,
                now: now
            )
            if full { congested.append(delivery.session) }
        }
        return congested
    }

    /// Publishes a client's will, checked when it goes out as mosquitto does: never to `$SYS`,
    /// and only to a topic the ACL in force lets the client write; otherwise dropped and logged.
    func publishWill(_ message: ApplicationMessage, of session: Session, now: NIODeadline) {
        if message.topic.hasPrefix("$SYS") {
            session.recordDrop(.forbiddenTopic)
            logger.notice("dropping a will on $SYS", metadata: ["client": "\(session.clientID)", "topic": "\(message.topic)"])
            return
        }
        if security.checksAccess, let access = session.access, !access.allows(.write, topic: message.topic) {
            session.recordDrop(.notAuthorized)
            logger.notice("dropping a will the ACL does not allow", metadata: ["client": "\(session.clientID)", "topic": "\(message.topic)"])
            return
        }
        publish(message, now: now)
    }

    /// Gives the shared-subscription copies `session` holds and has not had acknowledged to
    /// other members of their groups (its connection ended, or — `sessionEnds` — the session
    /// did); copies of a group it is alone in stay with it. See
    /// ``OutboundMessages/takeUnacknowledgedShared(in:)`` for which copies go.
    ///
    /// With a store, a persistent session's copies go to a persistent member when there is one,
    /// stored for it in the transaction that deletes them from this session; its copies waiting
    /// only in the store move there to a persistent member (when the connection ended, only to
    /// one that is connected), or, when the session ends and no member keeps a session, are
    /// read back and handed to one that does not.
    func redistributeShared(of session: Session, sessionEnds: Bool, now: NIODeadline) {
        let groups = router.groupsWithOtherMembers(than: session)
        guard !groups.isEmpty else { return }
        let taken = session.takeUnacknowledgedShared(in: Set(groups.keys))
        let durable = store != nil && session.keepsCopiesInStore
        let waiting = durable ? waitingCopiesOperations(of: session, in: groups.values, sessionEnds: sessionEnds) : []
        handOver(taken, from: session, with: waiting, now: now) { item in
            let persistent = durable ? self.router.alternate(in: item.group, excluding: session, where: { Self.keepsCopies($0) }) : nil
            return persistent ?? self.router.alternate(in: item.group, excluding: session)
        }
    }

    /// `session` is connected and a member of shared groups: the copies waiting for members of
    /// them that are away (which got messages while nobody in the group was connected) come to
    /// it now instead of when those return or their sessions end — as many as its queue limits
    /// leave room for and its ACL lets it read; the rest stay where they are. Copies the store
    /// keeps for an absent member come only to a session the store keeps too.
    func gatherSharedCopies(for session: Session, now: NIODeadline) {
        guard session.hasSharedSubscriptions else { return }
        let access = security.checksAccess ? session.access : nil
        let readable: (ApplicationMessage) -> Bool = { access?.allows(.read, topic: $0.topic) ?? true }
        var room = session.queueRoom
        let unlimited = room == .unlimited
        let durable = store != nil && session.keepsCopiesInStore
        for absent in router.absentMembers(sharingWith: session) {
            let absentDurable = store != nil && absent.keepsCopiesInStore
            if absentDurable && !durable { continue }
            let groups = router.groupsShared(by: session, and: absent)
            guard !groups.isEmpty, room.count > 0 else { continue }
            let taken = absent.takeSharedWhileAway(in: Set(groups.keys), room: room, where: readable)
            for item in taken { _ = room.take(item.message.payload.readableBytes) }
            var waiting: [StoreOperation] = []
            // Copies waiting only in the store move in one piece: only when nothing limits this
            // session's queue and no ACL has to look at each of them.
            if absentDurable && unlimited && access == nil {
                for (group, entry) in groups.values where entry.options.qos != .atMostOnce {
                    waiting.append(moveWaiting(from: absent, to: entry, in: group))
                }
            }
            handOver(taken, from: absent, with: waiting, now: now) { groups[ObjectIdentifier($0.group)]?.entry }
        }
    }

    /// Gives `taken` (copies `session` no longer holds) to the members `choose` names, storing
    /// a persistent member's copy in the transaction that deletes `session`'s (and applies
    /// `operations`), and delivers them once that is on disk.
    private func handOver(
        _ taken: [Session.Unacknowledged],
        from session: Session,
        with operations: [StoreOperation],
        now: NIODeadline,
        to choose: (Session.Unacknowledged) -> RouteEntry?
    ) {
        var prepared: [(entry: RouteEntry, item: Session.Unacknowledged, admission: OutboundMessages.Admission?)] = []
        var operations = operations
        let store = self.store
        for item in taken {
            guard let member = choose(item) else {
                statistics.dropped(.noSharedMember)
                continue
            }
            if security.checksAccess && !member.session.mayRead(item.message.topic) {
                member.session.recordDrop(.notAuthorized)
                continue
            }
            // A persistent member's copy is stored like any copy routed to it.
            let admitted = admitToStore(
                item.message,
                for: member.session,
                qos: min(item.qos, member.options.qos),
                retain: false,
                subscriptionIdentifiers: member.identifier.map { [$0] } ?? [],
                through: item.group
            )
            switch admitted {
            case .notStored:
                prepared.append((member, item, nil))
            case .notQueued:
                continue
            case .stored(let admission, let operation):
                operations.append(operation)
                prepared.append((member, item, admission))
            }
        }
        guard let store else {
            for (member, item, _) in prepared { deliverRedistributed(item, to: member, admission: nil, now: now) }
            return
        }
        // The copies `session` held leave the store in the transaction that stores the new
        // members' copies: a crash in between keeps one or the other.
        for item in taken {
            if let identifier = item.storedIdentifier { operations.append(.deleteMessage(clientID: session.clientID, packetIdentifier: identifier)) }
        }
        guard !operations.isEmpty else {
            for (member, item, admission) in prepared { deliverRedistributed(item, to: member, admission: admission, now: now) }
            return
        }
        store.commit(operations) { [prepared] result in
            for (member, item, admission) in prepared {
                guard case .success = result else {
                    // Not stored for the member (and still stored for `session`): it gets the
                    // copy all the same, held in memory only.
                    if let admission { member.session.admissionFailed(admission, bytes: item.message.payload.readableBytes) }
                    self.deliverRedistributed(item, to: member, admission: nil, now: now)
                    continue
                }
                self.deliverRedistributed(item, to: member, admission: admission, now: now)
            }
        }
    }

    /// Moves `session`'s copies of `group` that wait only in the store to `receiver`'s session.
    private func moveWaiting(from session: Session, to receiver: RouteEntry, in group: SharedGroup) -> StoreOperation {
        let target = receiver.session
        return .moveWaiting(
            from: session.clientID,
            to: target.clientID,
            share: group.subscription,
            qos: receiver.options.qos,
            subscriptionIdentifiers: receiver.identifier.map { [$0] } ?? [],
            moved: { count, bytes in
                session.copiesMovedOut(count: count, bytes: bytes)
                target.copiesMovedIn(count: count, bytes: bytes)
            }
        )
    }

    /// A member whose copies the store keeps, at QoS 1 or 2.
    private static func keepsCopies(_ entry: RouteEntry) -> Bool {
        entry.options.qos != .atMostOnce && entry.session.keepsCopiesInStore
    }

    /// Store operations for `session`'s copies of each of `groups` that wait only in the store:
    /// moved to a member the store keeps copies for (whether there are any is for the store to
    /// say, not this session's count, which a move to it may not have reached yet), or — when the
    /// session ends and no such member is left — read back for a member without a stored session.
    private func waitingCopiesOperations(
        of session: Session,
        in groups: some Sequence<SharedGroup>,
        sessionEnds: Bool
    ) -> [StoreOperation] {
        var operations: [StoreOperation] = []
        for group in groups {
            let receiver = router.alternate(in: group, excluding: session) { entry in
                Self.keepsCopies(entry) && (sessionEnds || entry.session.isConnected)
            }
            if let receiver {
                operations.append(moveWaiting(from: session, to: receiver, in: group))
            } else if sessionEnds {
                operations.append(
                    .takeWaiting(from: session.clientID, share: group.subscription) { copies, bytes in
                        session.copiesMovedOut(count: copies.count, bytes: bytes)
                        let taken = copies.map { Session.Unacknowledged(message: $0.message, qos: $0.qos, group: group, storedIdentifier: nil) }
                        self.handOver(taken, from: session, with: [], now: .now()) { self.router.alternate(in: $0.group, excluding: session) }
                    }
                )
            }
        }
        return operations
    }

    private func deliverRedistributed(
        _ item: Session.Unacknowledged,
        to member: RouteEntry,
        admission: OutboundMessages.Admission?,
        now: NIODeadline
    ) {
        member.session.deliver(
            item.message,
            qos: min(item.qos, member.options.qos),
            retain: false,
            subscriptionIdentifiers: member.identifier.map { [$0] } ?? [],
            sharedGroup: item.group,
            admission: admission,
            now: now
        )
    }
}

/// Holds the store: written once before the listeners start, read-only afterwards.
final class StoreReference: @unchecked Sendable {
    var store: SQLiteBrokerStore?
}
