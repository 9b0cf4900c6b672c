import Atomics
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// The state all connections share: sessions, subscriptions, retained messages, counters.
final class BrokerCore: Sendable {
    let configuration: BrokerConfiguration
    let logger: Logger
    let authenticator: (any Authenticator)?
    let router = SubscriptionRouter()
    let retained = RetainedMessageStore()
    let statistics = BrokerStatistics()
    let startTime = NIODeadline.now()
    private let sessions = NIOLockedValueBox<[String: Session]>([:])
    private let assignedIdentifiers = ManagedAtomic<Int>(0)
    /// Every open client connection, to close them on shutdown.
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])

    init(configuration: BrokerConfiguration, logger: Logger, authenticator: (any Authenticator)?) {
        self.configuration = configuration
        self.logger = logger
        self.authenticator = authenticator
    }

    var sessionLimits: Session.Limits {
        Session.Limits(
            maxInflight: configuration.maxInflightMessages == 0 ? 65_535 : configuration.maxInflightMessages,
            maxQueuedMessages: configuration.maxQueuedMessages,
            maxQueuedBytes: configuration.maxQueuedBytes
        )
    }

    /// The receive maximum we announce: how many QoS 2 messages a client may leave unreleased.
    var receiveMaximum: Int { sessionLimits.maxInflight }

    // MARK: Messages

    /// Routes `message` to every matching subscriber and keeps it if it is retained.
    /// - Returns: how many sessions it went to.
    @discardableResult
    func publish(_ message: ApplicationMessage, now: NIODeadline) -> Int {
        if message.retain && configuration.retainAvailable { retained.retain(message) }
        let deliveries = router.deliveries(for: message)
        for delivery in deliveries {
            delivery.session.deliver(
                message,
                qos: delivery.qos,
                retain: delivery.retainAsPublished && message.retain,
                subscriptionIdentifiers: delivery.subscriptionIdentifiers,
                sharedGroup: delivery.sharedGroup,
                now: now
            )
        }
        return deliveries.count
    }

    /// Hands shared-subscription messages that `session` did not acknowledge to other members
    /// of their groups; dropped (and counted) when no other member is left.
    func redistribute(_ messages: [Session.Unacknowledged], from session: Session, now: NIODeadline) {
        for item in messages {
            guard let member = router.alternate(in: item.group, excluding: session) else {
                statistics.messagesDropped.wrappingIncrement(ordering: .relaxed)
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
            let session = Session(clientID: clientID, limits: sessionLimits, statistics: statistics)
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
        if removed { discard(session) }
    }

    private func discard(_ session: Session) {
        for filter in session.subscriptions.keys {
            if let shared = try? SharedSubscription.parse(filter) {
                router.unsubscribe(shared, session: session)
            } else {
                router.unsubscribe(filter, session: session)
            }
        }
        if let will = session.takeDelayedWill() { publish(will, now: .now()) }
    }

    var sessionCount: Int { sessions.withLockedValue { $0.count } }

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
