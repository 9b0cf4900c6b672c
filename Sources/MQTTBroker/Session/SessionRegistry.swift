import Atomics
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// Every session by client identifier: opened at CONNECT (taking over any connection that
/// holds it), ended when it expires or a clean start replaces it.
final class SessionRegistry: Sendable {
    private let sessions = NIOLockedValueBox<[String: Session]>([:])
    private let assignedIdentifiers = ManagedAtomic<Int>(0)
    private let configuration: ConfigurationInForce
    private let statistics: BrokerStatistics
    private let storeReference: StoreReference
    private let distributor: MessageDistributor
    private let logger: Logger
    private let environmentBox = NIOLockedValueBox<SessionEnvironment?>(nil)

    init(
        configuration: ConfigurationInForce,
        statistics: BrokerStatistics,
        storeReference: StoreReference,
        distributor: MessageDistributor,
        logger: Logger
    ) {
        self.configuration = configuration
        self.statistics = statistics
        self.storeReference = storeReference
        self.distributor = distributor
        self.logger = logger
    }

    private var store: SQLiteBrokerStore? { storeReference.store }

    /// What every session shares; made once the store is open (before any session exists).
    var environment: SessionEnvironment {
        environmentBox.withLockedValue { environment in
            if let environment { return environment }
            let made = SessionEnvironment(statistics: statistics, store: storeReference.store, logger: logger, router: distributor.router)
            environment = made
            return made
        }
    }

    /// A client identifier for a client that sent an empty one.
    func assignClientIdentifier() -> String {
        let number = assignedIdentifiers.wrappingIncrementThenLoad(ordering: .relaxed)
        let random = UInt64.random(in: 0...UInt64.max)
        return "\(configuration.value.autoIDPrefix)\(String(random, radix: 16))-\(number)"
    }

    /// Finds or creates the session for `clientID`, closing any connection that holds it.
    /// - Returns: the session and whether it existed before (CONNACK's session present).
    func open(clientID: String, cleanStart: Bool) -> (Session, present: Bool) {
        let limits = configuration.sessionLimits
        let environment = self.environment
        let (session, previous, present) = sessions.withLockedValue { sessions -> (Session, Session?, Bool) in
            let existing = sessions[clientID]
            existing?.disconnectClient(reason: .sessionTakenOver)
            if let existing, !cleanStart { return (existing, nil, true) }
            let session = Session(clientID: clientID, limits: limits, environment: environment)
            sessions[clientID] = session
            return (session, existing, false)
        }
        if let previous { discard(previous) }
        return (session, present)
    }

    /// Adds a session rebuilt from the store at start-up.
    func insertRestored(_ session: Session) {
        sessions.withLockedValue { $0[session.clientID] = session }
    }

    /// Ends `session` (expiry, or a clean start replaced it): its subscriptions go, its delayed will goes out.
    func end(_ session: Session) {
        let removed = sessions.withLockedValue { sessions -> Bool in
            guard sessions[session.clientID] === session else { return false }
            sessions[session.clientID] = nil
            return true
        }
        if removed { discard(session, deletingFromStore: true) }
    }

    private func discard(_ session: Session, deletingFromStore: Bool = false) {
        session.markEnded()
        // Shared-subscription copies still waiting for it go to another member of their group
        // (MQTT 5.0 section 4.8.2), before it leaves the groups; in the store, they are moved
        // before the session is deleted.
        distributor.redistributeShared(of: session, sessionEnds: true, now: .now())
        if deletingFromStore { store?.record([.deleteSession(clientID: session.clientID)]) }
        for filter in session.subscriptions.keys {
            if let shared = try? SharedSubscription.parse(filter) {
                distributor.router.unsubscribe(shared, session: session)
            } else {
                distributor.router.unsubscribe(filter, session: session)
            }
        }
        if let will = session.takeDelayedWill() { distributor.publishWill(will, of: session, now: .now()) }
    }

    /// Every session, connected or not, at this moment.
    var all: [Session] { sessions.withLockedValue { Array($0.values) } }

    var count: Int { sessions.withLockedValue { $0.count } }

    /// Messages waiting in every session's queue.
    var queuedMessageCount: Int { all.reduce(0) { $0 + $1.queuedMessageCount } }
}

extension SubscriptionRouter {
    /// Removes `session`'s subscription to `filter`, unless a newer session of the same client holds it.
    @discardableResult
    func unsubscribe(_ filter: String, session: Session) -> Bool {
        removeIf(filter, clientID: session.clientID) { $0.session === session }
    }
}
