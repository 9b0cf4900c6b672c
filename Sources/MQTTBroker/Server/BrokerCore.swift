import Logging
import NIOCore

/// What every connection of one broker shares, each part named for what it does:
///
/// - ``configuration``: the configuration in force (SIGHUP replaces it);
/// - ``security``: password files, ACLs and JWT keys in force;
/// - ``sessions``: every session by client identifier;
/// - ``distributor``: fans a PUBLISH out to the sessions that subscribed (through
///   ``router``, the subscription trie) and keeps retained messages (``retained``);
/// - ``connections``: open connections, closed on shutdown;
/// - ``statistics`` and ``metrics``: counters for `$SYS` and `/metrics`;
/// - ``loginThrottle``: slows down addresses that keep failing to log in;
/// - ``bridges``: connections to other brokers (`Bridge/`).
///
/// Reload is in `BrokerCore+Reload.swift`, rebuilding the state from the store in
/// `Persistence/BrokerCore+Restore.swift`. The order in which their locks may be taken is
/// written in ``LockOrder``.
final class BrokerCore: Sendable {
    let configuration: ConfigurationInForce
    let security = SecurityInForce()
    let sessions: SessionRegistry
    let distributor: MessageDistributor
    /// The open connections, by event loop (keep alive, shutdown).
    let connections = ConnectionRegistry()
    let statistics = BrokerStatistics()
    let metrics = BrokerMetrics()
    let loginThrottle = LoginThrottle()
    let logger: Logger
    let authenticator: (any Authenticator)?
    let startTime = NIODeadline.now()
    let storeReference = StoreReference()
    /// The `connection` blocks at work (`Bridge/`).
    let bridges = BridgeSet()

    init(configuration: BrokerConfiguration, logger: Logger, authenticator: (any Authenticator)?) {
        let inForce = ConfigurationInForce(configuration)
        self.configuration = inForce
        self.logger = logger
        self.authenticator = authenticator
        self.distributor = MessageDistributor(
            router: SubscriptionRouter(),
            retained: RetainedMessageStore(),
            configuration: inForce,
            security: security,
            statistics: statistics,
            storeReference: storeReference,
            logger: logger
        )
        self.sessions = SessionRegistry(
            configuration: inForce,
            statistics: statistics,
            storeReference: storeReference,
            distributor: distributor,
            logger: logger
        )
    }

    var router: SubscriptionRouter { distributor.router }
    var retained: RetainedMessageStore { distributor.retained }

    /// The durable store when `persistence` is on; set once by ``openStore(on:)`` before any
    /// listener is bound, read-only afterwards.
    var store: SQLiteBrokerStore? { storeReference.store }

    /// The receive maximum we announce: how many QoS 2 messages a client may leave unreleased.
    var receiveMaximum: Int { configuration.sessionLimits.maxInflight }

    /// Tells 5.0 clients the server is shutting down and closes every connection.
    func disconnectAll() {
        for session in sessions.all { session.disconnectClient(reason: .serverShuttingDown) }
        connections.closeAll()
    }

    /// Waits until everything recorded so far is on disk.
    func flushStore() async {
        await store?.flush()
    }
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
