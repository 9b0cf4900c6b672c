import DequeModule
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import OrderedCollections

/// The state the broker keeps for one client identifier, across its connections: its
/// subscriptions, the QoS 1/2 messages in flight to it, the messages queued for it, and the
/// QoS 2 messages it sent that await PUBREL.
///
/// Any event loop may deliver to a session; a lock guards its state. Packets leave through a
/// ``SessionOutlet`` while the lock is held, so their order on the wire is the order the
/// session decided on.
final class Session: @unchecked Sendable {
    /// Per-client bounds from the configuration.
    struct Limits: Sendable {
        var maxInflight: Int
        var maxQueuedMessages: Int
        var maxQueuedBytes: Int
    }

    struct SubscriptionState: Sendable {
        var options: SubscriptionOptions
        var identifier: Int?
        /// For shared subscriptions, the group; the router holds them separately.
        var sharedGroup: String?
    }

    private enum OutgoingState {
        /// PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
        case published
        /// PUBREL sent, awaiting PUBCOMP.
        case released
    }

    private struct Outgoing {
        var message: ApplicationMessage
        var qos: QoS
        var retain: Bool
        var subscriptionIdentifiers: [Int]
        var sharedGroup: SharedGroup?
        var state: OutgoingState
    }

    private struct Queued {
        var message: ApplicationMessage
        var qos: QoS
        var retain: Bool
        var subscriptionIdentifiers: [Int]
        var sharedGroup: SharedGroup? = nil
        /// Reserved when the message was stored (persistence), so it survives a restart.
        var packetIdentifier: UInt16? = nil
        /// Restored from the store: it may have been sent before the restart.
        var dup = false
    }

    /// A QoS 1/2 message that reached this session through a shared subscription and was not
    /// acknowledged when its connection dropped: it goes to another member of the group.
    struct Unacknowledged {
        var message: ApplicationMessage
        var qos: QoS
        var group: SharedGroup
    }

    let clientID: String
    private let lock = NIOLock()
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
    private var limits: Limits
    private let statistics: BrokerStatistics
    /// Where a persistent session records acknowledgements and drops.
    private let store: SQLiteBrokerStore?

    // Everything below is guarded by `lock`.
    private var accessStorage: ClientAccess?
    private var identityStorage: Identity?
    private var outlet: SessionOutlet?
    private var inflight = OrderedDictionary<UInt16, Outgoing>()
    private var queue = Deque<Queued>()
    private var queuedBytes = 0
    private var lastPacketIdentifier: UInt16 = 0
    /// Identifiers given to queued, stored messages.
    private var reservedIdentifiers = Set<UInt16>()
    private var subscriptionStates: [String: SubscriptionState] = [:]
    private var awaitingRelease = Set<UInt16>()
    /// Seconds the session outlives its connection; `UInt32.max` means for ever.
    private var expiryIntervalStorage: UInt32 = 0
    private var expiryTask: Scheduled<Void>?
    private var delayedWill: (message: ApplicationMessage, task: Scheduled<Void>)?
    private var ended = false

    init(clientID: String, limits: Limits, statistics: BrokerStatistics, store: SQLiteBrokerStore? = nil) {
        self.clientID = clientID
        self.limits = limits
        self.statistics = statistics
        self.store = store
    }

    /// New queue limits after a configuration reload; messages already queued stay.
    /// What the ACL lets this client read and write (nil: no ACL); set at each connect and
    /// on reload, read by every event loop that delivers to it. Guarded by `lock`.
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

    func updateLimits(_ limits: Limits) {
        lock.withLock { self.limits = limits }
    }

    /// Whether the session outlives its connection, and so is kept in the store.
    var isPersistent: Bool { lock.withLock { expiryIntervalStorage != 0 } }

    /// Rebuilds in-flight and queued messages and incoming QoS 2 identifiers from the store.
    func restore(_ stored: StoredState.StoredSession) {
        lock.withLock {
            expiryIntervalStorage = stored.expiryInterval
            for item in stored.messages {
                if item.released {
                    inflight[item.packetIdentifier] = Outgoing(
                        message: item.message,
                        qos: item.qos,
                        retain: item.retain,
                        subscriptionIdentifiers: item.subscriptionIdentifiers,
                        sharedGroup: nil,
                        state: .released
                    )
                } else {
                    reservedIdentifiers.insert(item.packetIdentifier)
                    queue.append(
                        Queued(
                            message: item.message,
                            qos: item.qos,
                            retain: item.retain,
                            subscriptionIdentifiers: item.subscriptionIdentifiers,
                            packetIdentifier: item.packetIdentifier,
                            dup: true
                        )
                    )
                    queuedBytes += item.message.payload.readableBytes
                }
                lastPacketIdentifier = max(lastPacketIdentifier, item.packetIdentifier)
            }
            awaitingRelease.formUnion(stored.incoming)
        }
    }

    /// Reserves a packet identifier for a message about to be stored for this session.
    /// - Returns: nil when all 65,535 are taken.
    func reservePacketIdentifier() -> UInt16? {
        lock.withLock {
            guard let identifier = nextPacketIdentifierLocked() else { return nil }
            reservedIdentifiers.insert(identifier)
            return identifier
        }
    }

    /// Gives back an identifier reserved for a message that could not be stored.
    func releaseReservation(_ identifier: UInt16) {
        _ = lock.withLock { reservedIdentifiers.remove(identifier) }
    }

    private func forgetStoredLocked(_ item: Queued) {
        guard let identifier = item.packetIdentifier else { return }
        reservedIdentifiers.remove(identifier)
        store?.record([.deleteMessage(clientID: clientID, packetIdentifier: identifier)])
    }

    /// Drops queued messages, and PUBLISHes in flight not yet received, that this client's ACL
    /// does not let it read: they were routed before it logged in again (restored after a
    /// restart, under an older ACL, or for the user that held the session before).
    /// - Returns: how many were dropped.
    @discardableResult
    func dropUnreadable() -> Int {
        lock.withLock {
            guard let access = accessStorage else { return 0 }
            let before = queue.count
            var kept = Deque<Queued>()
            for item in queue {
                if access.allows(.read, topic: item.message.topic) {
                    kept.append(item)
                } else {
                    queuedBytes -= item.message.payload.readableBytes
                    forgetStoredLocked(item)
                    statistics.dropped(.notAuthorized)
                }
            }
            queue = kept
            var dropped = before - queue.count
            for (identifier, outgoing) in inflight where outgoing.state == .published {
                guard !access.allows(.read, topic: outgoing.message.topic) else { continue }
                inflight.removeValue(forKey: identifier)
                store?.record([.deleteMessage(clientID: clientID, packetIdentifier: identifier)])
                statistics.dropped(.notAuthorized)
                dropped += 1
            }
            return dropped
        }
    }

    // MARK: Connection

    /// Binds the session to a new connection and returns nothing: it re-sends what was in
    /// flight (PUBLISH with DUP, or PUBREL) and then what was queued, through `outlet`.
    func attach(_ outlet: SessionOutlet, now: NIODeadline) {
        lock.withLock {
            self.outlet = outlet
            expiryTask?.cancel()
            expiryTask = nil
            delayedWill?.task.cancel()
            delayedWill = nil
            var packets: [MQTTPacket] = []
            var expired: [UInt16] = []
            var overQuota: [Queued] = []
            var resent = 0
            for (identifier, outgoing) in inflight {
                switch outgoing.state {
                case .published:
                    if outgoing.message.isExpired(at: now) {
                        expired.append(identifier)
                        continue
                    }
                    // The client may have lowered its receive maximum: the rest wait in the queue.
                    guard resent < outlet.sendQuota else {
                        overQuota.append(
                            Queued(
                                message: outgoing.message,
                                qos: outgoing.qos,
                                retain: outgoing.retain,
                                subscriptionIdentifiers: outgoing.subscriptionIdentifiers,
                                sharedGroup: outgoing.sharedGroup,
                                packetIdentifier: identifier,
                                dup: true
                            )
                        )
                        continue
                    }
                    resent += 1
                    let publish = outgoing.message.publishPacket(
                        qos: outgoing.qos,
                        retain: outgoing.retain,
                        packetIdentifier: identifier,
                        dup: true,
                        subscriptionIdentifiers: outgoing.subscriptionIdentifiers,
                        now: now
                    )
                    packets.append(.publish(publish))
                case .released:
                    packets.append(.pubrel(PubRelPacket(packetIdentifier: identifier)))
                }
            }
            for identifier in expired {
                inflight.removeValue(forKey: identifier)
                statistics.dropped(.expired)
            }
            for item in overQuota.reversed() {
                inflight.removeValue(forKey: item.packetIdentifier!)
                reservedIdentifiers.insert(item.packetIdentifier!)
                queue.prepend(item)
                queuedBytes += item.message.payload.readableBytes
            }
            outlet.send(packets)
            drainLocked(now: now)
        }
    }

    /// Unbinds `outlet` if it is still the session's connection (a takeover may have replaced it).
    /// - Returns: whether it was.
    @discardableResult
    func detach(_ outlet: SessionOutlet) -> Bool {
        lock.withLock {
            guard self.outlet === outlet else { return false }
            self.outlet = nil
            return true
        }
    }

    var isConnected: Bool { lock.withLock { outlet != nil } }

    /// Marks the session as over (expired, or replaced by a clean start).
    func markEnded() { lock.withLock { ended = true } }

    /// Whether the session is over; a connection that still refers to it learns so when it closes.
    var hasEnded: Bool { lock.withLock { ended } }

    /// Whether the client is connected now through `channel`.
    func isConnected(through channel: any Channel) -> Bool {
        lock.withLock { outlet?.channel === channel }
    }

    /// Closes the current connection, if any, telling a 5.0 client `reason`.
    /// Closes the client's connection (5.0: DISCONNECT with `reason`) while the session stays
    /// its own: the connection then ends as any lost connection does (will, expiry).
    func closeConnection(reason: ReasonCode) {
        let outlet = lock.withLock { self.outlet }
        outlet?.close(reason: reason)
    }

    func disconnectClient(reason: ReasonCode) {
        let outlet = lock.withLock { () -> SessionOutlet? in
            defer { self.outlet = nil }
            return self.outlet
        }
        outlet?.close(reason: reason)
    }

    var expiryInterval: UInt32 {
        get { lock.withLock { expiryIntervalStorage } }
        set { lock.withLock { expiryIntervalStorage = newValue } }
    }

    /// Keeps the task that ends the session after its expiry interval, cancelling any earlier one.
    func setExpiryTask(_ task: Scheduled<Void>?) {
        lock.withLock {
            expiryTask?.cancel()
            expiryTask = task
        }
    }

    /// Keeps a will that goes out after its delay unless the client reconnects first.
    func setDelayedWill(_ message: ApplicationMessage, task: Scheduled<Void>) {
        lock.withLock {
            delayedWill?.task.cancel()
            delayedWill = (message, task)
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

    /// Sends `message` to the client now, or queues it: while offline (QoS 1/2 only), while the
    /// in-flight window is full, or while the connection's buffer is full. Drops and counts it
    /// when the queue is full or it is too large for the client.
    func deliver(
        _ message: ApplicationMessage,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [Int],
        sharedGroup: SharedGroup? = nil,
        packetIdentifier: UInt16? = nil,
        now: NIODeadline
    ) {
        let item = Queued(
            message: message,
            qos: qos,
            retain: retain,
            subscriptionIdentifiers: subscriptionIdentifiers,
            sharedGroup: sharedGroup,
            packetIdentifier: packetIdentifier
        )
        lock.withLock {
            guard let outlet else {
                if qos == .atMostOnce {
                    statistics.dropped(.offlineQoS0)
                } else {
                    enqueueLocked(item)
                }
                return
            }
            if queue.isEmpty && outlet.isWritable && (qos == .atMostOnce || inflight.count < outlet.sendQuota) {
                sendLocked(item, through: outlet, now: now)
            } else {
                enqueueLocked(item)
            }
        }
    }

    /// Takes the shared-subscription messages not yet acknowledged (in flight before PUBREL,
    /// or queued), so that another member of their group receives them instead.
    func takeUnacknowledgedShared() -> [Unacknowledged] {
        lock.withLock {
            var taken: [Unacknowledged] = []
            for (identifier, outgoing) in inflight {
                guard let group = outgoing.sharedGroup, outgoing.state == .published else { continue }
                taken.append(Unacknowledged(message: outgoing.message, qos: outgoing.qos, group: group))
                inflight.removeValue(forKey: identifier)
                if expiryIntervalStorage != 0 { store?.record([.deleteMessage(clientID: clientID, packetIdentifier: identifier)]) }
            }
            var kept = Deque<Queued>()
            for item in queue {
                if let group = item.sharedGroup, item.qos != .atMostOnce {
                    taken.append(Unacknowledged(message: item.message, qos: item.qos, group: group))
                    queuedBytes -= item.message.payload.readableBytes
                    forgetStoredLocked(item)
                } else {
                    kept.append(item)
                }
            }
            queue = kept
            return taken
        }
    }

    /// Sends one message, giving QoS 1/2 a packet identifier and an in-flight slot.
    private func sendLocked(_ item: Queued, through outlet: SessionOutlet, now: NIODeadline) {
        if item.message.isExpired(at: now) {
            statistics.dropped(.expired)
            forgetStoredLocked(item)
            return
        }
        var identifier: UInt16?
        if item.qos != .atMostOnce {
            if let reserved = item.packetIdentifier {
                reservedIdentifiers.remove(reserved)
                identifier = reserved
            } else {
                guard let next = nextPacketIdentifierLocked() else {
                    statistics.dropped(.queueFull)
                    return
                }
                identifier = next
            }
        }
        let publish = item.message.publishPacket(
            qos: item.qos,
            retain: item.retain,
            packetIdentifier: identifier,
            dup: item.dup,
            subscriptionIdentifiers: item.subscriptionIdentifiers,
            now: now
        )
        let packet = MQTTPacket.publish(publish)
        guard outlet.fits(packet) else {
            statistics.dropped(.tooLargeForClient)
            forgetStoredLocked(item)
            return
        }
        if let identifier {
            inflight[identifier] = Outgoing(
                message: item.message,
                qos: item.qos,
                retain: item.retain,
                subscriptionIdentifiers: item.subscriptionIdentifiers,
                sharedGroup: item.sharedGroup,
                state: .published
            )
        }
        outlet.send(packet)
    }

    private func enqueueLocked(_ item: Queued) {
        let size = item.message.payload.readableBytes
        let countFull = limits.maxQueuedMessages > 0 && queue.count >= limits.maxQueuedMessages
        let bytesFull = limits.maxQueuedBytes > 0 && queuedBytes + size > limits.maxQueuedBytes
        if countFull || bytesFull {
            // Make room by dropping the oldest QoS 0 message, if there is one; otherwise drop this one.
            if item.qos != .atMostOnce, let index = queue.firstIndex(where: { $0.qos == .atMostOnce }) {
                queuedBytes -= queue[index].message.payload.readableBytes
                queue.remove(at: index)
                statistics.dropped(.queueFull)
            } else {
                statistics.dropped(.queueFull)
                forgetStoredLocked(item)
                return
            }
        }
        queue.append(item)
        queuedBytes += size
    }

    /// Moves queued messages to the client while the window and the connection allow.
    private func drainLocked(now: NIODeadline) {
        guard let outlet else { return }
        while let next = queue.first, outlet.isWritable, next.qos == .atMostOnce || inflight.count < outlet.sendQuota {
            queue.removeFirst()
            queuedBytes -= next.message.payload.readableBytes
            sendLocked(next, through: outlet, now: now)
        }
    }

    /// The next identifier not in flight and not reserved; nil when all are taken.
    private func nextPacketIdentifierLocked() -> UInt16? {
        guard inflight.count + reservedIdentifiers.count < Int(UInt16.max) else { return nil }
        repeat {
            lastPacketIdentifier = lastPacketIdentifier == UInt16.max ? 1 : lastPacketIdentifier + 1
        } while inflight[lastPacketIdentifier] != nil || reservedIdentifiers.contains(lastPacketIdentifier)
        return lastPacketIdentifier
    }

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the message is delivered.
    /// - Returns: false when no such message was in flight.
    @discardableResult
    func acknowledge(_ identifier: UInt16, now: NIODeadline) -> Bool {
        lock.withLock {
            guard inflight.removeValue(forKey: identifier) != nil else { return false }
            if expiryIntervalStorage != 0 { store?.record([.deleteMessage(clientID: clientID, packetIdentifier: identifier)]) }
            drainLocked(now: now)
            return true
        }
    }

    /// PUBREC from the client: answer PUBREL, or end the flow if the client refused the message.
    /// - Returns: false when no such QoS 2 message was in flight.
    func received(_ identifier: UInt16, reasonCode: ReasonCode, now: NIODeadline) -> Bool {
        lock.withLock {
            guard var outgoing = inflight[identifier], outgoing.qos == .exactlyOnce else { return false }
            if reasonCode.isFailure {
                inflight.removeValue(forKey: identifier)
                if expiryIntervalStorage != 0 { store?.record([.deleteMessage(clientID: clientID, packetIdentifier: identifier)]) }
                drainLocked(now: now)
                return true
            }
            outgoing.state = .released
            inflight[identifier] = outgoing
            let pubrel = MQTTPacket.pubrel(PubRelPacket(packetIdentifier: identifier))
            if let store, expiryIntervalStorage != 0 {
                // PUBREL only once the release is on disk: after a crash the message must not be sent again.
                let outlet = self.outlet
                store.commit([.releaseMessage(clientID: clientID, packetIdentifier: identifier)]) { _ in outlet?.send(pubrel) }
            } else {
                outlet?.send(pubrel)
            }
            return true
        }
    }

    /// The connection's buffer drained: send what waited for it.
    func resumeSending(now: NIODeadline) {
        lock.withLock { drainLocked(now: now) }
    }

    var queuedMessageCount: Int { lock.withLock { queue.count } }
    var inflightMessageCount: Int { lock.withLock { inflight.count } }

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
}
