import Atomics
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// One configuration, immutable, shared by every connection opened while it was in force.
final class ConfigurationSnapshot: Sendable {
    let value: BrokerConfiguration
    init(_ value: BrokerConfiguration) { self.value = value }
}

/// The state all connections share: sessions, subscriptions, retained messages, counters.
final class BrokerCore: Sendable {
    private let configurationBox: NIOLockedValueBox<ConfigurationSnapshot>
    /// Read on every retained message; kept apart so that routing takes no lock for it.
    private let retainAvailable: ManagedAtomic<Bool>

    /// The configuration in force; SIGHUP may replace it (connections read it when they open).
    var configuration: BrokerConfiguration { configurationBox.withLockedValue { $0.value } }
    /// The configuration in force, shared by reference: every connection keeps one pointer to
    /// it instead of a copy of its own (idle connections are many on a small machine).
    var configurationSnapshot: ConfigurationSnapshot { configurationBox.withLockedValue { $0 } }
    let logger: Logger
    let authenticator: (any Authenticator)?
    /// Password files, ACLs and JWT keys in force; replaced whole on reload.
    private let policyBox = NIOLockedValueBox<SecurityPolicy>(.open)
    /// Read on every message: whether any ACL must be consulted.
    private let aclActive = ManagedAtomic<Bool>(false)
    let loginThrottle = LoginThrottle()
    let router = SubscriptionRouter()
    let retained = RetainedMessageStore()
    let statistics = BrokerStatistics()
    let metrics = BrokerMetrics()
    let startTime = NIODeadline.now()
    private let sessions = NIOLockedValueBox<[String: Session]>([:])
    private let storeReference = StoreReference()

    /// The durable store when `persistence` is on; set once by ``MQTTBroker/start()`` before
    /// any listener is bound, read-only afterwards.
    var store: SQLiteBrokerStore? { storeReference.store }
    private let assignedIdentifiers = ManagedAtomic<Int>(0)
    /// Every open client connection, to close them on shutdown.
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    init(configuration: BrokerConfiguration, logger: Logger, authenticator: (any Authenticator)?) {
        self.configurationBox = NIOLockedValueBox(ConfigurationSnapshot(configuration))
        self.retainAvailable = ManagedAtomic(configuration.retainAvailable)
        self.logger = logger
        self.authenticator = authenticator
    }

    var sessionLimits: Session.Limits {
        let configuration = self.configuration
        return Session.Limits(
            maxInflight: configuration.maxInflightMessages == 0 ? 65_535 : configuration.maxInflightMessages,
            maxQueuedMessages: configuration.maxQueuedMessages,
            maxQueuedBytes: configuration.maxQueuedBytes
        )
    }

    var policy: SecurityPolicy { policyBox.withLockedValue { $0 } }

    /// Puts `policy` in force: new connections use it, and every session's access is
    /// recomputed from the ACL for the user it last logged in as.
    func apply(_ policy: SecurityPolicy) {
        policyBox.withLockedValue { $0 = policy }
        aclActive.store(policy.hasACL, ordering: .relaxed)
        let configuration = self.configuration
        for session in sessions.withLockedValue({ Array($0.values) }) {
            guard let identity = session.identity else { continue }
            // The listener as the new configuration has it (its per-listener settings may have changed).
            guard let listener = configuration.listeners.first(where: { $0.port == identity.port && $0.address == identity.address }) else {
                continue
            }
            if session.isConnected && !policy.stillAdmits(identity, on: listener, configuration) {
                logger.notice(
                    "disconnecting: the reloaded configuration no longer admits this client",
                    metadata: ["client": "\(session.clientID)", "user": "\(identity.username ?? "-")", "auth": "\(identity.method)"]
                )
                session.closeConnection(reason: .notAuthorized)
                continue
            }
            session.access = policy.access(on: listener, configuration, username: identity.username, clientID: session.clientID)
            session.dropUnreadable()
        }
    }

    /// Whether ACLs are in force, so messages must be checked.
    var checksAccess: Bool { aclActive.load(ordering: .relaxed) }

    /// The receive maximum we announce: how many QoS 2 messages a client may leave unreleased.
    var receiveMaximum: Int { sessionLimits.maxInflight }

    // MARK: Messages

    /// A subscriber's copy of a message, with the packet identifier reserved when it is stored.
    private struct PreparedDelivery {
        let delivery: Delivery
        let packetIdentifier: UInt16?
    }

    /// Routes `message` to every matching subscriber and keeps it if it is retained, at once.
    /// With a store, copies for persistent sessions and the retained change are recorded
    /// without waiting (wills and `$SYS` topics, which nobody acknowledges).
    /// - Returns: how many sessions it went to.
    @discardableResult
    func publish(_ message: ApplicationMessage, now: NIODeadline) -> Int {
        let (prepared, operations) = prepare(message)
        if let store, !operations.isEmpty { store.record(operations) }
        deliver(message, prepared, now: now)
        return prepared.count
    }

    /// Routes a QoS 1/2 message from a client: with a store, its copies for persistent
    /// sessions, the retained change and `extra` are on disk before anyone receives it, and
    /// `completion` (which sends the PUBACK/PUBREC) runs only then.
    func publishDurably(
        _ message: ApplicationMessage,
        extra: [StoreOperation],
        now: NIODeadline,
        completion: @escaping @Sendable (Result<Int, any Error>) -> Void
    ) {
        let (prepared, operations) = prepare(message)
        guard let store, !(operations.isEmpty && extra.isEmpty) else {
            deliver(message, prepared, now: now)
            return completion(.success(prepared.count))
        }
        store.commit(operations + extra) { result in
            switch result {
            case .success:
                // Delivered as of the publish time: a message expiry interval of 0 still reaches
                // connected subscribers, as it would have without the store.
                self.deliver(message, prepared, now: now)
                completion(.success(prepared.count))
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
        if aclActive.load(ordering: .relaxed) {
            let before = deliveries.count
            deliveries.removeAll { !$0.session.mayRead(message.topic) }
            for _ in deliveries.count..<before { statistics.dropped(.notAuthorized) }
        }
        var operations: [StoreOperation] = []
        let store = self.store
        if store != nil && message.retain && retainAvailable.load(ordering: .relaxed) && !message.topic.hasPrefix("$SYS") {
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
        if message.retain && retainAvailable.load(ordering: .relaxed) { retained.retain(message) }
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
        if checksAccess, let access = session.access, !access.allows(.write, topic: message.topic) {
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
            if aclActive.load(ordering: .relaxed) && !member.session.mayRead(item.message.topic) {
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

    // MARK: Sessions

    /// A client identifier for a client that sent an empty one.
    func assignClientIdentifier() -> String {
        let number = assignedIdentifiers.wrappingIncrementThenLoad(ordering: .relaxed)
        let random = UInt64.random(in: 0...UInt64.max)
        return "\(configuration.autoIDPrefix)\(String(random, radix: 16))-\(number)"
    }

    /// Finds or creates the session for `clientID`, closing any connection that holds it.
    /// - Returns: the session and whether it existed before (CONNACK's session present).
    func openSession(clientID: String, cleanStart: Bool) -> (Session, present: Bool) {
        let (session, previous, present) = sessions.withLockedValue { sessions -> (Session, Session?, Bool) in
            let existing = sessions[clientID]
            existing?.disconnectClient(reason: .sessionTakenOver)
            if let existing, !cleanStart { return (existing, nil, true) }
            let session = Session(clientID: clientID, limits: sessionLimits, statistics: statistics, store: store)
            sessions[clientID] = session
            return (session, existing, false)
        }
        if let previous { discard(previous) }
        return (session, present)
    }

    /// Ends `session` (expiry, or a clean start replaced it): its subscriptions go, its delayed will goes out.
    func endSession(_ session: Session) {
        let removed = sessions.withLockedValue { sessions -> Bool in
            guard sessions[session.clientID] === session else { return false }
            sessions[session.clientID] = nil
            return true
        }
        if removed {
            store?.record([.deleteSession(clientID: session.clientID)])
            discard(session)
        }
    }

    private func discard(_ session: Session) {
        session.markEnded()
        for filter in session.subscriptions.keys {
            if let shared = try? SharedSubscription.parse(filter) {
                router.unsubscribe(shared, session: session)
            } else {
                router.unsubscribe(filter, session: session)
            }
        }
        if let will = session.takeDelayedWill() { publishWill(will, of: session, now: .now()) }
    }

    var sessionCount: Int { sessions.withLockedValue { $0.count } }

    /// Every session, connected or not.
    var allSessions: [Session] { sessions.withLockedValue { Array($0.values) } }

    /// Messages waiting in every session's queue.
    var queuedMessageCount: Int {
        sessions.withLockedValue { Array($0.values) }.reduce(0) { $0 + $1.queuedMessageCount }
    }

    /// Applies a re-read configuration: limits, behaviour and per-listener security for new
    /// connections, queue limits for existing sessions. Adding, removing or rebinding a
    /// listener (port, address, max_connections, TLS on or off) and persistence need a restart.
    /// - Returns: the settings that changed but need a restart to take effect.
    func reload(_ new: BrokerConfiguration, policy: SecurityPolicy) -> [String] {
        let old = configuration
        var ignored: [String] = []
        var applied = new
        if new.listeners.map(\.binding) != old.listeners.map(\.binding) {
            ignored.append("listeners")
            applied.listeners = old.listeners
        }
        if new.metricsListener != old.metricsListener {
            ignored.append("metrics_listener")
            applied.metricsListener = old.metricsListener
        }
        if new.persistence != old.persistence || new.persistenceLocation != old.persistenceLocation {
            ignored.append("persistence")
            applied.persistence = old.persistence
            applied.persistenceLocation = old.persistenceLocation
        }
        if new.sysInterval != old.sysInterval {
            ignored.append("sys_interval")
            applied.sysInterval = old.sysInterval
        }
        configurationBox.withLockedValue { $0 = ConfigurationSnapshot(applied) }
        retainAvailable.store(applied.retainAvailable, ordering: .relaxed)
        let limits = sessionLimits
        for session in sessions.withLockedValue({ Array($0.values) }) { session.updateLimits(limits) }
        apply(policy)
        return ignored
    }

    // MARK: Persistence

    /// Opens the store and rebuilds what it holds: retained messages, and sessions with their
    /// subscriptions, messages and QoS 2 state. Called once, before listeners are bound.
    func openStore(on eventLoop: any EventLoop) throws {
        guard configuration.persistence else { return }
        let store = try SQLiteBrokerStore(
            folder: configuration.persistenceLocation,
            logger: logger,
            writeLatency: metrics.persistenceWriteLatency
        )
        let state = try store.load()
        storeReference.store = store
        for message in state.retained { retained.retain(message) }
        for stored in state.sessions {
            let session = Session(clientID: stored.clientID, limits: sessionLimits, statistics: statistics, store: store)
            session.restore(stored)
            sessions.withLockedValue { $0[stored.clientID] = session }
            for subscription in stored.subscriptions {
                let shared = try? SharedSubscription.parse(subscription.filter)
                _ = session.addSubscription(
                    subscription.filter,
                    state: .init(options: subscription.options, identifier: subscription.identifier, sharedGroup: shared?.group)
                )
                let entry = RouteEntry(session: session, options: subscription.options, identifier: subscription.identifier)
                if let shared { router.subscribe(shared, entry: entry) } else { router.subscribe(subscription.filter, entry: entry) }
            }
            if stored.expiryInterval != UInt32.max {
                // The restart counts as the disconnection: the session expires that long from now.
                let task = eventLoop.scheduleTask(in: .seconds(Int64(stored.expiryInterval))) {
                    if !session.isConnected { self.endSession(session) }
                }
                session.setExpiryTask(task)
            }
        }
        logger.notice(
            "restored the persistent state",
            metadata: [
                "store": "\(configuration.persistenceLocation)", "sessions": "\(state.sessions.count)",
                "messages": "\(state.sessions.reduce(0) { $0 + $1.messages.count })", "retained": "\(state.retained.count)",
            ]
        )
    }

    /// Waits until everything recorded so far is on disk.
    func flushStore() async {
        await store?.flush()
    }

    // MARK: Connections

    func register(_ channel: any Channel) {
        connections.withLockedValue { $0[ObjectIdentifier(channel)] = channel }
    }

    func unregister(_ channel: any Channel) {
        connections.withLockedValue { $0[ObjectIdentifier(channel)] = nil }
    }

    /// Tells 5.0 clients the server is shutting down and closes every connection.
    func disconnectAll() {
        let sessions = sessions.withLockedValue { Array($0.values) }
        for session in sessions { session.disconnectClient(reason: .serverShuttingDown) }
        let channels = connections.withLockedValue { Array($0.values) }
        for channel in channels { channel.close(promise: nil) }
    }
}

extension SubscriptionRouter {
    /// Removes `session`'s subscription to `filter`, unless a newer session of the same client holds it.
    @discardableResult
    func unsubscribe(_ filter: String, session: Session) -> Bool {
        removeIf(filter, clientID: session.clientID) { $0.session === session }
    }
}

/// Holds the store: written once before the listeners start, read-only afterwards.
private final class StoreReference: @unchecked Sendable {
    var store: SQLiteBrokerStore?
}

extension BrokerConfiguration.Listener {
    /// What a listener's socket is bound with: changing it needs a restart.
    struct Binding: Hashable {
        let port: Int
        let address: String?
        let maxConnections: Int
        let tls: Bool
    }

    var binding: Binding { Binding(port: port, address: address, maxConnections: maxConnections, tls: tls.isEnabled) }

    /// `listener PORT [ADDRESS]`, as log lines name it.
    var displayName: String { address.map { "listener \(port) \($0)" } ?? "listener \(port)" }
}
