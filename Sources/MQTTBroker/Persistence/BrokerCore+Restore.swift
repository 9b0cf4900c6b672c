import MQTTCore
import NIOCore

extension BrokerCore {
    /// Opens the store and rebuilds what it holds: retained messages, and sessions with their
    /// subscriptions, messages and QoS 2 state. Called once, before listeners are bound.
    func openStore(on eventLoop: any EventLoop) throws {
        let configuration = self.configuration.value
        guard configuration.persistence else { return }
        let store = try SQLiteBrokerStore(
            folder: configuration.persistenceLocation,
            logger: logger,
            maximumBytes: configuration.persistenceMaxBytes,
            writeLatency: metrics.persistenceWriteLatency
        )
        let state = try store.load()
        storeReference.store = store
        for message in state.retained { retained.retain(message) }
        let limits = self.configuration.sessionLimits
        var restored: [(Session, StoredState.StoredSession)] = []
        for stored in state.sessions {
            let session = Session(clientID: stored.clientID, limits: limits, environment: sessions.environment)
            restored.append((session, stored))
            sessions.insertRestored(session)
            for subscription in stored.subscriptions {
                let shared = try? SharedSubscription.parse(subscription.filter)
                _ = session.addSubscription(
                    subscription.filter,
                    state: .init(options: subscription.options, identifier: subscription.identifier, sharedGroup: shared?.group)
                )
                let entry = RouteEntry(session: session, options: subscription.options, identifier: subscription.identifier)
                if let shared { router.subscribe(shared, entry: entry) } else { router.subscribe(subscription.filter, entry: entry) }
            }
        }
        // Messages once every shared group has its members again, so that copies that came
        // through one find their group.
        for (session, stored) in restored {
            session.restore(stored)
            if stored.expiryInterval != UInt32.max {
                // The restart counts as the disconnection: the session expires that long from now.
                let sessions = self.sessions
                let task = eventLoop.scheduleTask(in: .seconds(Int64(stored.expiryInterval))) {
                    if !session.isConnected { sessions.end(session) }
                }
                session.setExpiryTask(task)
            }
        }
        logger.notice(
            "restored the persistent state",
            metadata: [
                "store": "\(configuration.persistenceLocation)", "sessions": "\(state.sessions.count)",
                "messages": "\(state.sessions.reduce(0) { $0 + $1.messages.count + $1.storedOnly })", "retained": "\(state.retained.count)",
            ]
        )
    }
}
