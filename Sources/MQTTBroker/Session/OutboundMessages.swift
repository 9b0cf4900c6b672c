import DequeModule
import MQTTCore
import NIOCore
import OrderedCollections

/// A client's connection as its outbound messages see it.
protocol OutboundConnection {
    /// Whether the connection's buffer has room (false while the client reads slowly).
    var isWritable: Bool { get }
    /// QoS 1/2 messages that may be in flight to the client (our maximum and its receive maximum).
    var sendQuota: Int { get }
    /// Whether `packet` fits the client's maximum packet size.
    func fits(_ packet: MQTTPacket) -> Bool
}

/// What the outbound messages ask for; a ``Session`` carries it out.
protocol OutboundEffects {
    /// Hands `packet` to the connection, in the order of the calls.
    mutating func send(_ packet: MQTTPacket)
    /// Deletes the stored copy with this packet identifier (no one waits for it).
    mutating func forgetStored(_ identifier: UInt16)
    /// Marks the stored copy with this packet identifier released, then sends `packet` (PUBREL)
    /// once that is on disk.
    mutating func releaseStored(_ identifier: UInt16, thenSend packet: MQTTPacket)
    mutating func dropped(_ reason: DropReason)
    /// Reads up to `limit` of the messages that wait only in the store, giving each a packet
    /// identifier (see ``OutboundMessages/assignIdentifiers(count:)`` and ``OutboundMessages/fetched(_:access:to:effects:now:)``).
    mutating func fetch(limit: Int)
    /// Back-pressure: the backlog fell to the low-water mark; publishers waiting for it may go on.
    mutating func drained()
}

/// The messages on their way to one client, without locks or I/O: those in flight (sent,
/// awaiting PUBACK, PUBREC or PUBCOMP), those waiting in memory, and — for a persistent
/// session with a store — how many more wait only in the store.
///
/// A persistent session's QoS 1/2 copies are admitted before they are stored
/// (``admit(bytes:online:)``): while the client is connected and its memory window has room,
/// a copy gets a packet identifier and comes to memory once stored; otherwise (offline, or a
/// backlog) it stays only in the store, and is read back a window at a time as the client
/// takes messages. Memory therefore stays bounded however long a client is away, and order is
/// kept: nothing is admitted to memory while older copies wait in the store.
///
/// Explicit limits (`max_queued_messages`, `max_queued_bytes`) count every queued copy,
/// in memory or in the store; a copy over them is refused, so that a 5.0 publisher learns
/// it (0x97).
///
/// Back-pressure: while the client is connected and its backlog (copies waiting, not in flight)
/// is over ``Limits/highWater``, the session is *congested*: ``deliver(_:admitted:to:effects:now:)``
/// says so, and the publishers that fed it stop until the backlog falls to ``Limits/lowWater``
/// (``OutboundEffects/drained()``).
struct OutboundMessages {
    struct Limits: Shareable {
        /// Queued copies allowed (0: no limit).
        var maxQueuedMessages: Int
        /// Queued payload bytes allowed (0: no limit).
        var maxQueuedBytes: Int
        /// Backlog above which publishers are paused (0: no back-pressure, as mosquitto).
        var highWater = 0
        /// Backlog at which paused publishers go on.
        var lowWater = 0
        /// Copies kept in memory ahead of the connection while the store holds the rest.
        var memoryWindow: Int = 1000
        /// Payload bytes kept in memory ahead of the connection while the store holds the rest.
        var memoryWindowBytes: Int = 4 << 20

        /// The copies sessions share (see ``SharedValue``).
        static let shared = SharedValues<Limits>()
    }

    /// One copy of a message for this client.
    struct Message {
        var message: ApplicationMessage
        var qos: QoS
        var retain: Bool
        var subscriptionIdentifiers: [Int]
        var sharedGroup: SharedGroup? = nil
        /// Reserved when the copy was admitted, read from the store, or restored.
        var packetIdentifier: UInt16? = nil
        /// The store holds this copy (it is deleted from there once acknowledged or dropped).
        var stored = false
        /// It may have been sent before (restored after a restart).
        var dup = false

        var bytes: Int { message.payload.readableBytes }
    }

    private enum OutgoingState {
        /// PUBLISH sent, awaiting PUBACK (QoS 1) or PUBREC (QoS 2).
        case published
        /// PUBREL sent, awaiting PUBCOMP.
        case released
    }

    private struct Outgoing {
        var message: Message
        var state: OutgoingState
    }

    /// How a persistent session takes a copy it is about to be stored for.
    enum Admission: Equatable {
        /// Kept in memory too, under this packet identifier.
        case memory(packetIdentifier: UInt16)
        /// Kept in the store only, for now.
        case storeOnly
        /// Not queued: a limit is reached.
        case refused(DropReason)
    }

    /// A QoS 1/2 message that reached this session through a shared subscription and was not
    /// acknowledged when its connection dropped: it goes to another member of the group.
    struct Unacknowledged {
        var message: ApplicationMessage
        var qos: QoS
        var group: SharedGroup
        /// The packet identifier the store keeps this session's copy under, if stored: the
        /// copy is deleted there in the same transaction that stores the new member's.
        var storedIdentifier: UInt16?
    }

    /// A shared copy: sessions nearly all have the same.
    @Shared var limits: Limits

    private var inflight = OrderedDictionary<UInt16, Outgoing>()
    private var queue = Deque<Message>()
    private var queuedBytes = 0
    /// Admitted to memory, not yet delivered (their store write is under way).
    private var pendingAdmissions = 0
    private var pendingBytes = 0
    /// Copies only in the store, and their payload bytes.
    private(set) var storedOnly = 0
    private(set) var storedOnlyBytes = 0
    /// A read from the store is under way.
    private(set) var fetching = false
    /// Back-pressure: the backlog passed the high-water mark and has not fallen to the low one.
    private(set) var congested = false
    /// Whether the store keeps this session's QoS 1/2 copies (persistent session, persistence on).
    /// (The flags and the identifier sit together: apart, each would take 8 bytes.)
    var usesStore = false
    private var lastPacketIdentifier: UInt16 = 0
    /// Identifiers given to copies not yet in flight.
    private var reservedIdentifiers = Set<UInt16>()

    init(limits: Limits) {
        self.limits = limits
    }

    /// Copies waiting (in memory and in the store).
    var queuedCount: Int { queue.count + pendingAdmissions + storedOnly }
    /// The backlog back-pressure watches: copies waiting to be sent.
    var backlog: Int { queuedCount }
    var inflightCount: Int { inflight.count }
    /// Copies held in memory (waiting or in flight).
    var inMemoryCount: Int { queue.count + pendingAdmissions + inflight.count }

    // MARK: Admission (persistent sessions with a store)

    /// Takes a QoS 1/2 copy that is about to be stored.
    mutating func admit(bytes: Int, online: Bool) -> Admission {
        if limits.maxQueuedMessages > 0 && queuedCount >= limits.maxQueuedMessages { return .refused(.queueFull) }
        if limits.maxQueuedBytes > 0 && queuedBytes + pendingBytes + storedOnlyBytes + bytes > limits.maxQueuedBytes {
            return .refused(.queueFull)
        }
        if online && storedOnly == 0 && queue.count + pendingAdmissions < limits.memoryWindow
            && queuedBytes + pendingBytes + bytes <= limits.memoryWindowBytes,
            let identifier = nextPacketIdentifier()
        {
            reservedIdentifiers.insert(identifier)
            pendingAdmissions += 1
            pendingBytes += bytes
            return .memory(packetIdentifier: identifier)
        }
        storedOnly += 1
        storedOnlyBytes += bytes
        return .storeOnly
    }

    /// The store could not keep an admitted copy: forget it.
    mutating func admissionFailed(_ admission: Admission, bytes: Int) {
        switch admission {
        case .memory(let identifier):
            reservedIdentifiers.remove(identifier)
            pendingAdmissions -= 1
            pendingBytes -= bytes
        case .storeOnly:
            storedOnly -= 1
            storedOnlyBytes -= bytes
        case .refused:
            break
        }
    }

    // MARK: Delivery

    /// A copy for the client: sent now, or queued (while offline — QoS 1/2 only — while the
    /// in-flight window is full, or while the connection's buffer is full). `admitted` copies
    /// were counted against the limits when admitted; others are checked here and dropped
    /// when the queue is full.
    /// - Returns: whether the session is congested (back-pressure): the publisher should wait
    ///   for ``OutboundEffects/drained()``.
    @discardableResult
    mutating func deliver(
        _ item: Message,
        admitted: Bool = false,
        to connection: (some OutboundConnection)?,
        effects: inout some OutboundEffects,
        now: NIODeadline
    ) -> Bool {
        if admitted {
            pendingAdmissions -= 1
            pendingBytes -= item.bytes
        }
        guard let connection else {
            if item.qos == .atMostOnce {
                effects.dropped(.offlineQoS0)
            } else {
                enqueue(item, admitted: admitted, effects: &effects)
            }
            return false
        }
        if queue.isEmpty && connection.isWritable && (item.qos == .atMostOnce || inflight.count < connection.sendQuota) {
            send(item, through: connection, effects: &effects, now: now)
        } else {
            enqueue(item, admitted: admitted, effects: &effects)
        }
        return checkCongestion()
    }

    /// Marks the session congested once its backlog passes the high-water mark.
    private mutating func checkCongestion() -> Bool {
        if !congested && limits.highWater > 0 && backlog > limits.highWater { congested = true }
        return congested
    }

    /// Ends congestion once the backlog is down to the low-water mark (or the client left:
    /// an offline session never holds publishers back).
    private mutating func checkDrained(online: Bool, effects: inout some OutboundEffects) {
        guard congested, !online || backlog <= limits.lowWater else { return }
        congested = false
        effects.drained()
    }

    /// The client went away: publishers waiting for it go on.
    mutating func detached(effects: inout some OutboundEffects) {
        checkDrained(online: false, effects: &effects)
    }

    /// A store-only copy is on disk: read the backlog when the client can take it.
    mutating func storedCopyArrived(to connection: (some OutboundConnection)?, effects: inout some OutboundEffects, now: NIODeadline) {
        guard let connection else { return }
        drain(to: connection, effects: &effects, now: now)
    }

    private mutating func enqueue(_ item: Message, admitted: Bool, effects: inout some OutboundEffects) {
        if !admitted {
            let effectiveCount = limits.maxQueuedMessages
            let countFull = effectiveCount > 0 && queuedCount >= effectiveCount
            let bytesFull = limits.maxQueuedBytes > 0 && queuedBytes + pendingBytes + storedOnlyBytes + item.bytes > limits.maxQueuedBytes
            if countFull || bytesFull {
                // Make room by dropping the oldest QoS 0 message, if there is one; otherwise drop this one.
                if item.qos != .atMostOnce, let index = queue.firstIndex(where: { $0.qos == .atMostOnce }) {
                    queuedBytes -= queue[index].bytes
                    queue.remove(at: index)
                    effects.dropped(.queueFull)
                } else {
                    effects.dropped(.queueFull)
                    forget(item, effects: &effects)
                    return
                }
            }
        }
        queue.append(item)
        queuedBytes += item.bytes
    }

    /// Moves queued copies to the client while the window and the connection allow, then
    /// asks for more from the store when memory runs low.
    mutating func drain(to connection: some OutboundConnection, effects: inout some OutboundEffects, now: NIODeadline) {
        while let next = queue.first, connection.isWritable, next.qos == .atMostOnce || inflight.count < connection.sendQuota {
            queue.removeFirst()
            queuedBytes -= next.bytes
            send(next, through: connection, effects: &effects, now: now)
        }
        if usesStore && storedOnly > 0 && !fetching && queue.count + pendingAdmissions <= limits.memoryWindow / 2 {
            fetching = true
            effects.fetch(limit: max(1, limits.memoryWindow - queue.count - pendingAdmissions))
        }
        checkDrained(online: true, effects: &effects)
    }

    /// Packet identifiers for `count` copies read from the store (fewer when they run out),
    /// reserved until the copies arrive through ``fetched(_:access:to:effects:now:)``.
    mutating func assignIdentifiers(count: Int) -> [UInt16] {
        var identifiers: [UInt16] = []
        identifiers.reserveCapacity(count)
        for _ in 0..<count {
            guard let identifier = nextPacketIdentifier() else { break }
            reservedIdentifiers.insert(identifier)
            identifiers.append(identifier)
        }
        return identifiers
    }

    /// Gives back identifiers assigned to copies that could not be read.
    mutating func releaseIdentifiers(_ identifiers: [UInt16]) {
        for identifier in identifiers { reservedIdentifiers.remove(identifier) }
    }

    /// Copies read from the store (identifiers assigned and stored), oldest first. Copies the
    /// client's ACL no longer lets it read are dropped.
    mutating func fetched(
        _ items: [Message],
        access: ClientAccess?,
        to connection: (some OutboundConnection)?,
        effects: inout some OutboundEffects,
        now: NIODeadline
    ) {
        fetching = false
        for item in items {
            storedOnly -= 1
            storedOnlyBytes -= item.bytes
            if let access, !access.allows(.read, topic: item.message.topic) {
                effects.dropped(.notAuthorized)
                forget(item, effects: &effects)
                continue
            }
            queue.append(item)
            queuedBytes += item.bytes
        }
        guard let connection else { return }
        // An empty read while copies are counted: their store writes are still under way, and
        // each one's arrival asks again.
        if items.isEmpty { return }
        drain(to: connection, effects: &effects, now: now)
    }

    /// Sends one copy, giving QoS 1/2 a packet identifier and an in-flight slot.
    private mutating func send(_ item: Message, through connection: some OutboundConnection, effects: inout some OutboundEffects, now: NIODeadline) {
        if item.message.isExpired(at: now) {
            effects.dropped(.expired)
            forget(item, effects: &effects)
            return
        }
        var item = item
        if item.qos != .atMostOnce {
            if let reserved = item.packetIdentifier {
                reservedIdentifiers.remove(reserved)
            } else {
                guard let next = nextPacketIdentifier() else {
                    effects.dropped(.queueFull)
                    return
                }
                item.packetIdentifier = next
            }
        } else {
            item.packetIdentifier = nil
        }
        let publish = item.message.publishPacket(
            qos: item.qos,
            retain: item.retain,
            packetIdentifier: item.packetIdentifier,
            dup: item.dup,
            subscriptionIdentifiers: item.subscriptionIdentifiers,
            now: now
        )
        let packet = MQTTPacket.publish(publish)
        guard connection.fits(packet) else {
            effects.dropped(.tooLargeForClient)
            forget(item, effects: &effects)
            return
        }
        if let identifier = item.packetIdentifier {
            inflight[identifier] = Outgoing(message: item, state: .published)
        }
        effects.send(packet)
    }

    /// A copy that will not be sent: its identifier is free again and its stored record goes.
    private mutating func forget(_ item: Message, effects: inout some OutboundEffects) {
        guard let identifier = item.packetIdentifier else { return }
        reservedIdentifiers.remove(identifier)
        if item.stored { effects.forgetStored(identifier) }
    }

    /// The next identifier not in flight and not reserved; nil when all are taken.
    private mutating func nextPacketIdentifier() -> UInt16? {
        guard inflight.count + reservedIdentifiers.count < Int(UInt16.max) else { return nil }
        repeat {
            lastPacketIdentifier = lastPacketIdentifier == UInt16.max ? 1 : lastPacketIdentifier + 1
        } while inflight[lastPacketIdentifier] != nil || reservedIdentifiers.contains(lastPacketIdentifier)
        return lastPacketIdentifier
    }

    // MARK: Acknowledgements

    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) from the client: the copy is delivered.
    /// - Returns: false when no such copy was in flight.
    @discardableResult
    mutating func acknowledge(
        _ identifier: UInt16,
        connection: (some OutboundConnection)?,
        effects: inout some OutboundEffects,
        now: NIODeadline
    )
        -> Bool
    {
        guard let outgoing = inflight.removeValue(forKey: identifier) else { return false }
        if outgoing.message.stored { effects.forgetStored(identifier) }
        if let connection { drain(to: connection, effects: &effects, now: now) }
        return true
    }

    /// PUBREC from the client: answer PUBREL (once the release is stored, for a stored copy),
    /// end the flow if the client refused the message, or answer 0x92 for an unknown identifier.
    mutating func received(
        _ identifier: UInt16,
        reasonCode: ReasonCode,
        connection: (some OutboundConnection)?,
        effects: inout some OutboundEffects,
        now: NIODeadline
    ) {
        guard var outgoing = inflight[identifier], outgoing.message.qos == .exactlyOnce else {
            effects.send(.pubrel(PubRelPacket(packetIdentifier: identifier, reasonCode: .packetIdentifierNotFound)))
            return
        }
        if reasonCode.isFailure {
            acknowledge(identifier, connection: connection, effects: &effects, now: now)
            return
        }
        outgoing.state = .released
        inflight[identifier] = outgoing
        let pubrel = MQTTPacket.pubrel(PubRelPacket(packetIdentifier: identifier))
        if outgoing.message.stored {
            // PUBREL only once the release is on disk: after a crash the message must not be sent again.
            effects.releaseStored(identifier, thenSend: pubrel)
        } else {
            effects.send(pubrel)
        }
    }

    // MARK: Connections

    /// A new connection: re-sends what was in flight (PUBLISH with DUP, or PUBREL), honouring
    /// a receive maximum the client may have lowered (the rest go back to the queue), then
    /// what was queued.
    mutating func attach(_ connection: some OutboundConnection, effects: inout some OutboundEffects, now: NIODeadline) {
        var expired: [UInt16] = []
        var overQuota: [Message] = []
        var resent = 0
        for (identifier, outgoing) in inflight {
            switch outgoing.state {
            case .published:
                if outgoing.message.message.isExpired(at: now) {
                    expired.append(identifier)
                    continue
                }
                guard resent < connection.sendQuota else {
                    var item = outgoing.message
                    item.dup = true
                    overQuota.append(item)
                    continue
                }
                resent += 1
                let item = outgoing.message
                let publish = item.message.publishPacket(
                    qos: item.qos,
                    retain: item.retain,
                    packetIdentifier: identifier,
                    dup: true,
                    subscriptionIdentifiers: item.subscriptionIdentifiers,
                    now: now
                )
                effects.send(.publish(publish))
            case .released:
                effects.send(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            }
        }
        for identifier in expired {
            let outgoing = inflight.removeValue(forKey: identifier)
            effects.dropped(.expired)
            if let outgoing, outgoing.message.stored { effects.forgetStored(identifier) }
        }
        for item in overQuota.reversed() {
            guard let identifier = item.packetIdentifier else { continue }
            inflight.removeValue(forKey: identifier)
            reservedIdentifiers.insert(identifier)
            queue.prepend(item)
            queuedBytes += item.bytes
        }
        drain(to: connection, effects: &effects, now: now)
    }

    /// Drops queued copies, and PUBLISHes in flight not yet received, that `access` does not let
    /// the client read (it logged in again as someone else, or the ACL changed).
    /// - Returns: how many were dropped.
    @discardableResult
    mutating func dropUnreadable(_ access: ClientAccess, effects: inout some OutboundEffects) -> Int {
        var kept = Deque<Message>()
        var dropped = 0
        for item in queue {
            if access.allows(.read, topic: item.message.topic) {
                kept.append(item)
            } else {
                queuedBytes -= item.bytes
                forget(item, effects: &effects)
                effects.dropped(.notAuthorized)
                dropped += 1
            }
        }
        queue = kept
        for (identifier, outgoing) in inflight where outgoing.state == .published {
            guard !access.allows(.read, topic: outgoing.message.message.topic) else { continue }
            inflight.removeValue(forKey: identifier)
            if outgoing.message.stored { effects.forgetStored(identifier) }
            effects.dropped(.notAuthorized)
            dropped += 1
        }
        return dropped
    }

    /// Takes the shared-subscription copies not yet acknowledged whose group is in `groups`, so
    /// that another member of it receives them instead: QoS 1 copies sent and not acknowledged,
    /// and copies not sent yet. A QoS 2 copy sent (or perhaps sent, before a restart) stays: its
    /// delivery is completed with this client or not at all (MQTT-4.8.2-4, MQTT-4.8.2-5). Copies
    /// of a group with no other member stay too: they wait for this client, as any copy does.
    /// Their stored copies stay in the store: the caller deletes them (``Unacknowledged/storedIdentifier``).
    /// `room` bounds how many copies (and payload bytes) are taken, `wanted` which.
    mutating func takeUnacknowledgedShared(
        in groups: Set<ObjectIdentifier>,
        room: Room = .unlimited,
        where wanted: (ApplicationMessage) -> Bool = { _ in true }
    ) -> [Unacknowledged] {
        var taken: [Unacknowledged] = []
        guard !groups.isEmpty else { return taken }
        var room = room
        for (identifier, outgoing) in inflight {
            guard let group = outgoing.message.sharedGroup, groups.contains(ObjectIdentifier(group)), outgoing.state == .published,
                outgoing.message.qos == .atLeastOnce, wanted(outgoing.message.message), room.take(outgoing.message.bytes)
            else { continue }
            taken.append(
                Unacknowledged(
                    message: outgoing.message.message,
                    qos: outgoing.message.qos,
                    group: group,
                    storedIdentifier: outgoing.message.stored ? identifier : nil
                )
            )
            inflight.removeValue(forKey: identifier)
        }
        var kept = Deque<Message>()
        for item in queue {
            if let group = item.sharedGroup, groups.contains(ObjectIdentifier(group)),
                item.qos == .atLeastOnce || (item.qos == .exactlyOnce && !item.dup), wanted(item.message), room.take(item.bytes)
            {
                taken.append(
                    Unacknowledged(message: item.message, qos: item.qos, group: group, storedIdentifier: item.stored ? item.packetIdentifier : nil)
                )
                queuedBytes -= item.bytes
                if let identifier = item.packetIdentifier { reservedIdentifiers.remove(identifier) }
            } else {
                kept.append(item)
            }
        }
        queue = kept
        return taken
    }

    /// How many more copies, and payload bytes, fit in a queue.
    struct Room: Equatable {
        var count: Int
        var bytes: Int

        static let unlimited = Room(count: .max, bytes: .max)

        /// Takes one copy of `bytes` if it fits.
        mutating func take(_ bytes: Int) -> Bool {
            guard count > 0, bytes <= self.bytes else { return false }
            count -= 1
            if self.bytes != .max { self.bytes -= bytes }
            return true
        }
    }

    /// What the queue limits leave room for.
    var room: Room {
        Room(
            count: limits.maxQueuedMessages > 0 ? max(0, limits.maxQueuedMessages - queuedCount) : .max,
            bytes: limits.maxQueuedBytes > 0 ? max(0, limits.maxQueuedBytes - queuedBytes - pendingBytes - storedOnlyBytes) : .max
        )
    }

    // MARK: Restart

    /// Rebuilds what the store held for this session: copies with a packet identifier (in
    /// flight, or read into memory before the restart) and how many wait only in the store.
    /// `group` finds the shared-subscription group of a copy that came through one.
    mutating func restore(
        _ messages: [StoredState.StoredMessage],
        storedOnly count: Int,
        bytes: Int,
        group: (String) -> SharedGroup?
    ) {
        for item in messages {
            let copy = Message(
                message: item.message,
                qos: item.qos,
                retain: item.retain,
                subscriptionIdentifiers: item.subscriptionIdentifiers,
                sharedGroup: item.share.flatMap(group),
                packetIdentifier: item.packetIdentifier,
                stored: true,
                dup: true
            )
            if item.released {
                inflight[item.packetIdentifier] = Outgoing(message: copy, state: .released)
            } else {
                reservedIdentifiers.insert(item.packetIdentifier)
                queue.append(copy)
                queuedBytes += copy.bytes
            }
            lastPacketIdentifier = max(lastPacketIdentifier, item.packetIdentifier)
        }
        storedOnly = count
        storedOnlyBytes = bytes
    }

    // MARK: Copies moved in the store

    /// Copies waiting in the store were given to another member of their shared group.
    mutating func movedOut(count: Int, bytes: Int) {
        storedOnly = max(0, storedOnly - count)
        storedOnlyBytes = max(0, storedOnlyBytes - bytes)
    }

    /// Copies waiting in the store were given to this session by another member of their
    /// shared group: read them when the client can take them.
    mutating func movedIn(count: Int, bytes: Int, to connection: (some OutboundConnection)?, effects: inout some OutboundEffects, now: NIODeadline) {
        storedOnly += count
        storedOnlyBytes += bytes
        guard let connection else { return }
        drain(to: connection, effects: &effects, now: now)
    }
}
