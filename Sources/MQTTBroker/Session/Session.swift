import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore

/// What every session shares: counters, the store, the log.
final class SessionEnvironment: Sendable {
    let statistics: BrokerStatistics
    let store: SQLiteBrokerStore?
    let logger: Logger
    /// Finds the shared-subscription group of a copy read from the store.
    let router: SubscriptionRouter?

    init(statistics: BrokerStatistics, store: SQLiteBrokerStore?, logger: Logger, router: SubscriptionRouter? = nil) {
        self.statistics = statistics
        self.store = store
        self.logger = logger
        self.router = router
    }

    /// The groups of the shared subscriptions `messages` read from the store came through,
    /// each looked up once.
    func sharedGroups(of messages: [StoredState.StoredMessage]) -> [String: SharedGroup] {
        var groups: [String: SharedGroup] = [:]
        guard let router else { return groups }
        for share in Set(messages.compactMap(\.share)) {
            if let group = router.sharedGroup(share) { groups[share] = group }
        }
        return groups
    }
}

/// The state the broker keeps for one client identifier, across its connections: its
/// subscriptions, its outbound messages (``OutboundMessages``: in flight, queued in memory,
/// waiting in the store), and the QoS 2 messages it sent that await PUBREL.
///
/// Any event loop may deliver to a session; a lock guards its state. Packets leave through a
/// ``SessionOutlet`` while the lock is held, so their order on the wire is the order the
/// session decided on.
final class Session: @unchecked Sendable {
    /// Per-client bounds from the configuration.
    struct Limits: Shareable {
        var maxInflight: Int
        /// `max_queued_messages` when set; see ``outbound(usesStore:persistent:)`` for the defaults.
        var maxQueuedMessages: Int?
        var maxQueuedBytes: Int
        /// Publishers wait for a connected client whose backlog passes ``highWater`` until it
        /// falls to ``lowWater`` (our key `backpressure`, on by default); off, messages over the
        /// queue limits are dropped as in mosquitto.
        var backpressure = true

        /// The backlog (messages waiting to be sent to one connected client) at which
        /// publishers feeding it stop being read, and at which they go on.
        static let highWater = 256
        static let lowWater = 128
        /// The copies sessions share (see ``SharedValue``).
        static let shared = SharedValues<Limits>()

        /// mosquitto's default `max_queued_messages`.
        static let mosquittoQueueLimit = 1000
        /// The default for clients whose session ends with their connection, with
        /// back-pressure on: publishers are held back long before, so this bounds only a
        /// subscriber that stops reading altogether.
        static let connectedQueueLimit = 100_000

        /// The limits of the outbound messages. Without `max_queued_messages`: no count limit
        /// for a persistent session whose copies the store keeps (the store's budget bounds it),
        /// ``connectedQueueLimit`` for a session that ends with its connection while
        /// back-pressure is on, and mosquitto's 1000 otherwise.
        func outbound(usesStore: Bool, persistent: Bool) -> OutboundMessages.Limits {
            let count: Int
            if let maxQueuedMessages {
                count = maxQueuedMessages
            } else if usesStore {
                count = 0
            } else if !persistent && backpressure {
                count = Self.connectedQueueLimit
            } else {
                count = Self.mosquittoQueueLimit
            }
            return OutboundMessages.Limits(
                maxQueuedMessages: count,
                maxQueuedBytes: maxQueuedBytes,
                highWater: backpressure ? Self.highWater : 0,
                lowWater: Self.lowWater
            )
        }
    }

    struct SubscriptionState: Sendable {
        var options: SubscriptionOptions
        var identifier: Int?
        /// For shared subscriptions, the group; the router holds them separately.
        var sharedGroup: String?
    }

    typealias Unacknowledged = OutboundMessages.Unacknowledged

    /// Who the client logged in as, and on which listener, for recomputing its access on reload.
    struct Identity: Sendable {
        var username: String?
        var port: Int
        var address: String?
        /// How the client got in ("password_file", "anonymous", "jwt", "certificate", ...).
        var method: String
        /// For "password_file": the hash its password matched, to notice a change on reload.
        var credential: PasswordHash?
    }

    /// Drops are logged at most this often per client.
    static let dropLogInterval = TimeAmount.seconds(60)

    let clientID: String
    private let lock = InlineLock()
    // Guarded by `lock`; next to it, where four bytes would otherwise be padding.
    /// Seconds the session outlives its connection; `UInt32.max` means for ever.
    private var expiryIntervalStorage: UInt32 = 0
    private let environment: SessionEnvironment

    // Everything below is guarded by `lock`.
    /// A shared copy: sessions nearly all have the same.
    @Shared private var limits: Limits
    private var accessStorage: ClientAccess?
    private var identityStorage: Identity?
    private var outlet: SessionOutlet?
    private var outbound: OutboundMessages
    private var subscriptionStates: [String: SubscriptionState] = [:]
    private var awaitingRelease = Set<UInt16>()
    /// Out of line, as the delayed will: set only while the session waits for its client.
    private var expiryTask: ExpiryTask?
    /// Out of line: rare, and inline it would cost every session ~100 bytes.
    private var delayedWill: DelayedWill?
    /// Messages dropped for this client: made at the first drop (most sessions have none,
    /// and inline it would cost every session 32 bytes).
    private var dropRecord: DropRecord?
    /// Publishers waiting for this client's backlog to drain (back-pressure).
    private var drainWaiters: [@Sendable () -> Void] = []
    private var ended = false
    /// A bridge's session: it never holds publishers back (see ``forwardsToBridge()``).
    private var isBridge = false

    init(clientID: String, limits: Limits, environment: SessionEnvironment) {
        self.clientID = clientID
        self.limits = limits
        self.environment = environment
        self.outbound = OutboundMessages(limits: limits.outbound(usesStore: false, persistent: false))
    }

    private var store: SQLiteBrokerStore? { environment.store }

    /// What the ACL lets this client read and write (nil: no ACL); set at each connect and
    /// on reload, read by every event loop that delivers to it.
    var access: ClientAccess? {
        get { lock.withLock { accessStorage } }
        set { lock.withLock { accessStorage = newValue } }
    }

    var identity: Identity? {
        get { lock.withLock { identityStorage } }
        set { lock.withLock { identityStorage = newValue } }
    }

    /// Whether the ACL lets this client receive a message on `topic`.
    func mayRead(_ topic: String) -> Bool {
        lock.withLock { accessStorage?.allows(.read, topic: topic) ?? true }
    }

    /// New queue limits after a configuration reload; messages already queued stay.
    func updateLimits(_ limits: Limits) {
        lock.withLock { applyLimitsLocked(limits) }
    }

    /// Puts `limits` in force (a bridge's session never holds publishers back). Under the lock.
    private func applyLimitsLocked(_ limits: Limits) {
        var limits = limits
        if isBridge { limits.backpressure = false }
        self.limits = limits
        outbound.limits = limits.outbound(usesStore: outbound.usesStore, persistent: expiryIntervalStorage != 0)
    }

    /// Whether the session outlives its connection, and so is kept in the store.
    var isPersistent: Bool { lock.withLock { expiryIntervalStorage != 0 } }

    var expiryInterval: UInt32 {
        get { lock.withLock { expiryIntervalStorage } }
        set {
            lock.withLock {
                expiryIntervalStorage = newValue
                outbound.usesStore = newValue != 0 && store != nil
                outbound.limits = limits.outbound(usesStore: outbound.usesStore, persistent: newValue != 0)
            }
        }
    }

    /// Rebuilds the session from the store at start-up.
    func restore(_ stored: StoredState.StoredSession) {
        // The groups are looked up before taking the session's lock (the router's lock comes first).
        let groups = environment.sharedGroups(of: stored.messages)
        lock.withLock {
            expiryIntervalStorage = stored.expiryInterval
            outbound.usesStore = stored.expiryInterval != 0 && store != nil
            outbound.limits = limits.outbound(usesStore: outbound.usesStore, persistent: stored.expiryInterval != 0)
            outbound.restore(stored.messages, storedOnly: stored.storedOnly, bytes: stored.storedOnlyBytes) { groups[$0] }
            awaitingRelease.formUnion(stored.incoming)
        }
    }

    /// Drops queued messages, and PUBLISHes in flight not yet received, that this client's ACL
    /// does not let it read: they were routed before it logged in again (restored after a
    /// restart, under an older ACL, or for the user that held the session before).
    /// - Returns: how many were dropped.
    @discardableResult
    func dropUnreadable() -> Int {
        withEffects { effects in
            guard let access = accessStorage else { return 0 }
            return outbound.dropUnreadable(access, effects: &effects)
        }
    }

    // MARK: Connection

    /// Binds the session to a new connection: it re-sends what was in flight (PUBLISH with
    /// DUP, or PUBREL) and then what was queued, through `outlet`.
    func attach(_ outlet: SessionOutlet, now: NIODeadline) {
        withEffects { effects in
            self.outlet = outlet
            effects.outlet = outlet
            expiryTask?.task.cancel()
            expiryTask = nil
            delayedWill?.task.cancel()
            delayedWill = nil
            outbound.attach(outlet, effects: &effects, now: now)
        }
    }

    /// Unbinds `outlet` if it is still the session's connection (a takeover may have replaced it).
    /// - Returns: whether it was.
    @discardableResult
    func detach(_ outlet: SessionOutlet) -> Bool {
        withEffects { effects in
            guard self.outlet === outlet else { return false }
            self.outlet = nil
            outbound.detached(effects: &effects)
            return true
        }
    }

    var isConnected: Bool { lock.withLock { outlet != nil } }

    /// Makes this the session of a bridge: local publishers are never held back for it (its
    /// backlog waits in the store, or within mosquitto's queue limits without persistence).
    func forwardsToBridge() {
        lock.withLock {
            isBridge = true
            applyLimitsLocked(limits)
        }
    }

    /// Marks the session as over (expired, or replaced by a clean start).
    func markEnded() { lock.withLock { ended = true } }

    /// Whether the session is over; a connection that still refers to it learns so when it closes.
    var hasEnded: Bool { lock.withLock { ended } }

    /// Whether the client is connected now through `channel`.
    func isConnected(through channel: any Channel) -> Bool {
        lock.withLock { outlet?.channel === channel }
    }

    /// Closes the client's connection (5.0: DISCONNECT with `reason`) while the session stays
    /// its own: the connection then ends as any lost connection does (will, expiry).
    func closeConnection(reason: ReasonCode) {
        let outlet = lock.withLock { self.outlet }
        outlet?.close(reason: reason, why: "the reloaded configuration no longer admits this client")
    }

    /// Closes the client's connection (5.0: DISCONNECT with `reason`) and unbinds it at once.
    func disconnectClient(reason: ReasonCode) {
        let outlet = withEffects { effects -> SessionOutlet? in
            defer { self.outlet = nil }
            outbound.detached(effects: &effects)
            return self.outlet
        }
        outlet?.close(reason: reason, why: "\(reason)")
    }

    /// Keeps the task that ends the session after its expiry interval, cancelling any earlier one.
    func setExpiryTask(_ task: Scheduled<Void>?) {
        lock.withLock {
            expiryTask?.task.cancel()
            expiryTask = task.map(ExpiryTask.init)
        }
    }

    /// Keeps a will that goes out after its delay unless the client reconnects first.
    func setDelayedWill(_ message: ApplicationMessage, task: Scheduled<Void>) {
        lock.withLock {
            delayedWill?.task.cancel()
            delayedWill = DelayedWill(message: message, task: task)
        }
    }

    /// Takes the delayed will, if one is still waiting (when its delay ends, or the session does).
    func takeDelayedWill() -> ApplicationMessage? {
        lock.withLock {
            defer { delayedWill = nil }
            delayedWill?.task.cancel()
            return delayedWill?.message
        }
    }

    // MARK: Subscriptions

    /// Records a subscription; returns whether one with the same filter existed.
    func addSubscription(_ filter: String, state: SubscriptionState) -> Bool {
        lock.withLock { subscriptionStates.updateValue(state, forKey: filter) != nil }
    }

    func removeSubscription(_ filter: String) -> SubscriptionState? {
        lock.withLock { subscriptionStates.removeValue(forKey: filter) }
    }

    var subscriptions: [String: SubscriptionState] { lock.withLock { subscriptionStates } }

    // MARK: Outgoing messages

    /// Takes a QoS 1/2 copy that is about to be stored, when this session's copies are kept
    /// in the store (see ``OutboundMessages/admit(bytes:online:)``); nil otherwise.
    func admit(bytes: Int) -> OutboundMessages.Admission? {
        withEffects { effects in
            guard outbound.usesStore else { return nil }
            let admission = outbound.admit(bytes: bytes, online: outlet != nil)
            if case .refused(let reason) = admission { effects.dropped(reason) }
            return admission
        }
    }

    /// The store could not keep an admitted copy.
    func admissionFailed(_ admission: OutboundMessages.Admission, bytes: Int) {
        lock.withLock { outbound.admissionFailed(admission, bytes: bytes) }
    }

    /// Sends `message` to the client now, or queues it; see ``OutboundMessages/deliver(_:admitted:to:effects:now:)``.
    /// - Returns: whether the client is congested (back-pressure): the publisher should wait
    ///   with ``whenDrained(_:)``.
    @discardableResult
    func deliver(
        _ message: ApplicationMessage,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [Int],
        sharedGroup: SharedGroup? = nil,
        admission: OutboundMessages.Admission? = nil,
        now: NIODeadline
    ) -> Bool {
        withEffects { effects in
            switch admission {
            case .storeOnly:
                outbound.storedCopyArrived(to: outlet, effects: &effects, now: now)
                return outbound.congested
            case .refused:
                return false
            case .memory(let identifier):
                let copy = OutboundMessages.Message(
                    message: message,
                    qos: qos,
                    retain: retain,
                    subscriptionIdentifiers: subscriptionIdentifiers,
                    sharedGroup: sharedGroup,
                    packetIdentifier: identifier,
                    stored: true
                )
                return outbound.deliver(copy, admitted: true, to: outlet, effects: &effects, now: now)
            case nil:
                let copy = OutboundMessages.Message(
                    message: message,
                    qos: qos,
                    retain: retain,
                    subscriptionIdentifiers: subscriptionIdentifiers,
                    sharedGroup: sharedGroup
                )
                return outbound.deliver(copy, to: outlet, effects: &effects, now: now)
            }
        }
    }

    /// Runs `waiter` once this client's backlog has drained to the low-water mark (or the client
    /// has gone): at once when it is not congested.
    func whenDrained(_ waiter: @escaping @Sendable () -> Void) {
        let now = lock.withLock { () -> Bool in
            guard outbound.congested else { return true }
            drainWaiters.append(waiter)
            return false
        }
        if now { waiter() }
    }

    /// Takes the shared-subscription messages not yet acknowledged whose group is in `groups`
    /// (see ``SubscriptionRouter/groupsWithOtherMembers(than:)``), so that another member of
    /// their group receives them instead; the others stay for this client.
    func takeUnacknowledgedShared(in groups: Set<ObjectIdentifier>) -> [Unacknowledged] {
        lock.withLock { outbound.takeUnacknowledgedShared(in: groups) }
    }

    /// The same, for another member that connected: only while this client is away, as many as
    /// fit `room`, and only those `wanted`.
    func takeSharedWhileAway(
        in groups: Set<ObjectIdentifier>,
        room: OutboundMessages.Room,
        where wanted: (ApplicationMessage) -> Bool
    ) -> [Unacknowledged] {
        lock.withLock {
            guard outlet == nil else { return [] }
            return outbound.takeUnacknowledgedShared(in: groups, room: room, where: wanted)
        }
    }

    /// How many more copies the queue limits let this session take.
    var queueRoom: OutboundMessages.Room { lock.withLock { outbound.room } }

    /// Whether any of its subscriptions is a shared one.
    var hasSharedSubscriptions: Bool { lock.withLock { subscriptionStates.values.contains { $0.sharedGroup != nil } } }

    /// Whether the store keeps this session's QoS 1/2 copies (persistent, persistence on).
    var keepsCopiesInStore: Bool { lock.withLock { outbound.usesStore } }

    /// Copies waiting in the store went to another member of their shared group.
    func copiesMovedOut(count: Int, bytes: Int) {
        lock.withLock { outbound.movedOut(count: count, bytes: bytes) }
    }

    /// Copies waiting in the store came from another member of their shared group.
    func copiesMovedIn(count: Int, bytes: Int) {
        withEffects { effects in outbound.movedIn(count: count, bytes: bytes, to: outlet, effects: &effects, now: .now()) }
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the message is delivered.
    /// - Returns: false when no such message was in flight.
    @discardableResult
    func acknowledge(_ identifier: UInt16, now: NIODeadline) -> Bool {
        withEffects { effects in outbound.acknowledge(identifier, connection: outlet, effects: &effects, now: now) }
    }

    /// The client's PUBACK, PUBREC or PUBCOMP for a message sent to it.
    func acknowledged(_ acknowledgement: ConnectionStateMachine.OutboundAcknowledgement, now: NIODeadline) {
        switch acknowledgement {
        case .puback(let identifier), .pubcomp(let identifier):
            acknowledge(identifier, now: now)
        case .pubrec(let identifier, let reason):
            received(identifier, reasonCode: reason, now: now)
        }
    }

    /// PUBREC from the client.
    func received(_ identifier: UInt16, reasonCode: ReasonCode, now: NIODeadline) {
        withEffects { effects in outbound.received(identifier, reasonCode: reasonCode, connection: outlet, effects: &effects, now: now) }
    }

    /// The connection's buffer drained: send what waited for it.
    func resumeSending(now: NIODeadline) {
        withEffects { effects in
            guard let outlet else { return }
            outbound.drain(to: outlet, effects: &effects, now: now)
        }
    }

    var queuedMessageCount: Int { lock.withLock { outbound.queuedCount } }
    var inflightMessageCount: Int { lock.withLock { outbound.inflightCount } }

    // MARK: Reading the store's backlog

    /// Reads the next copies that wait only in the store; packet identifiers are given (and
    /// stored) in the same transaction, so that a copy is never sent under an identifier a
    /// restart would not know.
    private func fetch(limit: Int) {
        guard let store else { return }
        store.fetchQueued(
            clientID: clientID,
            limit: limit,
            assign: { [self] count in lock.withLock { outbound.assignIdentifiers(count: count) } },
            completion: { [self] messages, unused in
                let groups = environment.sharedGroups(of: messages)
                let copies = messages.map {
                    OutboundMessages.Message(
                        message: $0.message,
                        qos: $0.qos,
                        retain: $0.retain,
                        subscriptionIdentifiers: $0.subscriptionIdentifiers,
                        sharedGroup: $0.share.flatMap { groups[$0] },
                        packetIdentifier: $0.packetIdentifier,
                        stored: true
                    )
                }
                withEffects { effects in
                    outbound.releaseIdentifiers(unused)
                    outbound.fetched(copies, access: accessStorage, to: outlet, effects: &effects, now: .now())
                }
            }
        )
    }

    // MARK: Incoming QoS 2

    /// Records an incoming QoS 2 PUBLISH; false if its identifier awaits PUBREL already (a re-send).
    func beginIncoming(_ identifier: UInt16) -> Bool {
        lock.withLock { awaitingRelease.insert(identifier).inserted }
    }

    /// PUBREL from the client; false if the identifier was unknown.
    func releaseIncoming(_ identifier: UInt16) -> Bool {
        lock.withLock { awaitingRelease.remove(identifier) != nil }
    }

    var incomingAwaitingRelease: Int { lock.withLock { awaitingRelease.count } }

    /// Forgets every incoming QoS 2 identifier (the peer started a new session: it will not
    /// send PUBREL for them, and may use them again).
    /// - Returns: the identifiers forgotten.
    func releaseAllIncoming() -> [UInt16] {
        lock.withLock {
            defer { awaitingRelease.removeAll() }
            return Array(awaitingRelease)
        }
    }

    // MARK: Drops

    /// Counts a message dropped for (or from) this client; logged at most once a minute.
    func recordDrop(_ reason: DropReason, now: NIODeadline = .now()) {
        let line = lock.withLock { countDropLocked(reason, now: now) }
        if let line { log(line) }
    }

    /// Messages dropped for this client, by reason.
    var dropCounts: [DropReason: Int] { lock.withLock { dropRecord?.drops ?? [:] } }

    private func countDropLocked(_ reason: DropReason, now: NIODeadline) -> [DropReason: Int]? {
        environment.statistics.dropped(reason)
        let record: DropRecord
        if let existing = dropRecord {
            record = existing
        } else {
            record = DropRecord()
            dropRecord = record
        }
        record.drops[reason, default: 0] += 1
        record.unlogged[reason, default: 0] += 1
        if let last = record.lastLog, now - last < Self.dropLogInterval { return nil }
        record.lastLog = now
        defer { record.unlogged = [:] }
        return record.unlogged
    }

    private func log(_ drops: [DropReason: Int]) {
        let counts = drops.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue)=\($0.value)" }.joined(separator: ",")
        environment.logger.warning(
            "messages dropped for this client (logged at most once a minute)",
            metadata: ["client": "\(clientID)", "drops": "\(counts)"]
        )
    }

    // MARK: Effects

    /// Runs `body` under the lock with the effects of the outbound messages carried out:
    /// packets go to the outlet at once (in order), store changes and a read of the store's
    /// backlog are queued, drops are counted; the log line and the read start after unlocking.
    private func withEffects<T>(_ body: (inout Effects) -> T) -> T {
        let (result, effects) = lock.withLock { () -> (T, Effects) in
            var effects = Effects(session: self, outlet: outlet, store: store)
            let result = body(&effects)
            effects.flushStoreOperations()
            return (result, effects)
        }
        if let drops = effects.dropsToLog { log(drops) }
        if let limit = effects.fetchLimit { fetch(limit: limit) }
        for waiter in effects.waiters { waiter() }
        return result
    }

    /// The effects of ``OutboundMessages`` as this session carries them out.
    fileprivate struct Effects: OutboundEffects {
        unowned let session: Session
        var outlet: SessionOutlet?
        let store: SQLiteBrokerStore?
        var operations: [StoreOperation] = []
        var dropsToLog: [DropReason: Int]?
        var fetchLimit: Int?
        /// Publishers to wake: the backlog drained.
        var waiters: [@Sendable () -> Void] = []

        init(session: Session, outlet: SessionOutlet?, store: SQLiteBrokerStore?) {
            self.session = session
            self.outlet = outlet
            self.store = store
        }

        mutating func send(_ packet: MQTTPacket) { outlet?.send(packet) }

        mutating func forgetStored(_ identifier: UInt16) {
            operations.append(.deleteMessage(clientID: session.clientID, packetIdentifier: identifier))
        }

        mutating func releaseStored(_ identifier: UInt16, thenSend packet: MQTTPacket) {
            flushStoreOperations()
            guard let store else { return send(packet) }
            let outlet = self.outlet
            store.commit([.releaseMessage(clientID: session.clientID, packetIdentifier: identifier)]) { _ in outlet?.send(packet) }
        }

        mutating func dropped(_ reason: DropReason) {
            // Called under the session's lock.
            if let line = session.countDropLocked(reason, now: .now()) { dropsToLog = line }
        }

        mutating func fetch(limit: Int) { fetchLimit = limit }

        mutating func drained() {
            // Called under the session's lock.
            waiters += session.drainWaiters
            session.drainWaiters = []
        }

        mutating func flushStoreOperations() {
            guard !operations.isEmpty else { return }
            store?.record(operations)
            operations = []
        }
    }
}

extension SessionOutlet: OutboundConnection {}

/// A will waiting for its delay to end.
private final class DelayedWill {
    let message: ApplicationMessage
    let task: Scheduled<Void>

    init(message: ApplicationMessage, task: Scheduled<Void>) {
        self.message = message
        self.task = task
    }
}

/// A session's drops, by reason (for `/metrics`), those not logged yet, and when drops were
/// last logged; guarded by the session's lock.
private final class DropRecord {
    var drops: [DropReason: Int] = [:]
    var unlogged: [DropReason: Int] = [:]
    var lastLog: NIODeadline?
}

/// The task that ends a session after its expiry interval.
private final class ExpiryTask {
    let task: Scheduled<Void>

    init(_ task: Scheduled<Void>) { self.task = task }
}
