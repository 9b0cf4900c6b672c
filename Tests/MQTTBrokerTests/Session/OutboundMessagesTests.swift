import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

/// A connection as a test plays it.
private struct ScriptedConnection: OutboundConnection {
    var isWritable = true
    var sendQuota = 20
    var maximumPacketSize: Int?
    func fits(_ packet: MQTTPacket) -> Bool {
        guard let maximumPacketSize else { return true }
        return ((try? packet.encodedSize(version: .v5)) ?? .max) <= maximumPacketSize
    }
}

/// Everything the outbound messages asked for, in order.
private struct RecordedEffects: OutboundEffects {
    var sent: [MQTTPacket] = []
    var forgotten: [UInt16] = []
    var released: [(UInt16, MQTTPacket)] = []
    var drops: [DropReason] = []
    var fetches: [Int] = []
    var drains = 0

    mutating func drained() { drains += 1 }
    mutating func send(_ packet: MQTTPacket) { sent.append(packet) }
    mutating func forgetStored(_ identifier: UInt16) { forgotten.append(identifier) }
    mutating func releaseStored(_ identifier: UInt16, thenSend packet: MQTTPacket) { released.append((identifier, packet)) }
    mutating func dropped(_ reason: DropReason) { drops.append(reason) }
    mutating func fetch(limit: Int) { fetches.append(limit) }

    /// The payloads of the PUBLISH packets sent, and their packet identifiers.
    var published: [(String, UInt16?)] {
        sent.compactMap { packet in
            guard case .publish(let publish) = packet else { return nil }
            return (String(buffer: publish.payload), publish.packetIdentifier)
        }
    }
}

private let now = NIODeadline.uptimeNanoseconds(5_000_000_000)

private func copy(_ payload: String, qos: QoS = .atLeastOnce, identifier: UInt16? = nil, stored: Bool = false) -> OutboundMessages.Message {
    OutboundMessages.Message(
        message: ApplicationMessage(topic: "lpr/cam-1/plate", payload: ByteBuffer(string: payload), qos: qos, retain: false),
        qos: qos,
        retain: false,
        subscriptionIdentifiers: [],
        packetIdentifier: identifier,
        stored: stored
    )
}

/// A persistent session's outbound messages kept in the store, with a small memory window.
private func persistent(maxQueuedMessages: Int = 0, window: Int = 4) -> OutboundMessages {
    var outbound = OutboundMessages(limits: .init(maxQueuedMessages: maxQueuedMessages, maxQueuedBytes: 0, memoryWindow: window))
    outbound.usesStore = true
    return outbound
}

@Suite("Outbound messages: the store keeps what memory does not")
struct OutboundMessagesStoreTests {
    @Test("an offline persistent session keeps nothing in memory: every copy waits in the store")
    func offlineCopiesStayInTheStore() {
        var outbound = persistent()
        for _ in 0..<10_000 {
            #expect(outbound.admit(bytes: 600, online: false) == .storeOnly)
        }
        #expect(outbound.storedOnly == 10_000 && outbound.storedOnlyBytes == 6_000_000)
        #expect(outbound.inMemoryCount == 0)
    }

    @Test("online, copies come to memory up to the window; after that, and while older copies wait in the store, they stay there")
    func memoryWindowKeepsOrder() {
        var outbound = persistent(window: 2)
        #expect(outbound.admit(bytes: 10, online: true) == .memory(packetIdentifier: 1))
        #expect(outbound.admit(bytes: 10, online: true) == .memory(packetIdentifier: 2))
        #expect(outbound.admit(bytes: 10, online: true) == .storeOnly)
        var effects = RecordedEffects()
        let slow = ScriptedConnection(isWritable: false)
        // The first two arrive (stored) and wait in memory; the window has room again only
        // after they leave, but a copy older than any newcomer waits in the store.
        outbound.deliver(copy("1", identifier: 1, stored: true), admitted: true, to: slow, effects: &effects, now: now)
        outbound.deliver(copy("2", identifier: 2, stored: true), admitted: true, to: slow, effects: &effects, now: now)
        #expect(outbound.admit(bytes: 10, online: true) == .storeOnly)
        #expect(effects.sent.isEmpty)
    }

    @Test("explicit limits count copies in memory and in the store; a copy over them is refused")
    func explicitLimits() {
        var outbound = persistent(maxQueuedMessages: 3)
        for _ in 0..<3 { #expect(outbound.admit(bytes: 600, online: false) == .storeOnly) }
        #expect(outbound.admit(bytes: 600, online: false) == .refused(.queueFull))

        var bytes = OutboundMessages(limits: .init(maxQueuedMessages: 0, maxQueuedBytes: 1000))
        bytes.usesStore = true
        #expect(bytes.admit(bytes: 600, online: false) == .storeOnly)
        #expect(bytes.admit(bytes: 600, online: false) == .refused(.queueFull))
    }

    @Test("a copy whose store write failed is forgotten")
    func admissionFailed() {
        var outbound = persistent(maxQueuedMessages: 1)
        let memory = outbound.admit(bytes: 10, online: true)
        #expect(memory == .memory(packetIdentifier: 1))
        outbound.admissionFailed(memory, bytes: 10)
        #expect(outbound.queuedCount == 0)
        #expect(outbound.assignIdentifiers(count: 65_535).count == 65_535, "its packet identifier is free again")

        var offline = persistent(maxQueuedMessages: 1)
        #expect(offline.admit(bytes: 10, online: false) == .storeOnly)
        offline.admissionFailed(.storeOnly, bytes: 10)
        #expect(offline.storedOnly == 0 && offline.storedOnlyBytes == 0)
        #expect(offline.admit(bytes: 10, online: false) == .storeOnly, "the limit has room again")
    }

    @Test("the client taking messages reads the store's backlog a window at a time, oldest first, under the identifiers it assigned")
    func backlogIsFetched() {
        var outbound = persistent(window: 4)
        for _ in 0..<6 { _ = outbound.admit(bytes: 1, online: false) }
        var effects = RecordedEffects()
        let connection = ScriptedConnection(sendQuota: 2)
        outbound.attach(connection, effects: &effects, now: now)
        #expect(effects.fetches == [4])
        #expect(outbound.fetching)
        // Nothing else is asked while a read is under way.
        outbound.drain(to: connection, effects: &effects, now: now)
        #expect(effects.fetches == [4])

        let identifiers = outbound.assignIdentifiers(count: 4)
        #expect(identifiers == [1, 2, 3, 4])
        let read = zip(["1", "2", "3", "4"], identifiers).map { copy($0.0, identifier: $0.1, stored: true) }
        outbound.fetched(read, access: nil, to: connection, effects: &effects, now: now)
        #expect(effects.published.map(\.0) == ["1", "2"], "two fit the in-flight window")
        #expect(effects.published.map(\.1) == [1, 2])
        #expect(effects.fetches == [4, 2], "memory is at half the window: the last two are asked for")

        outbound.acknowledge(1, connection: connection, effects: &effects, now: now)
        outbound.acknowledge(2, connection: connection, effects: &effects, now: now)
        #expect(effects.published.map(\.0) == ["1", "2", "3", "4"])
        #expect(effects.forgotten == [1, 2], "acknowledged copies leave the store")
    }

    @Test("an empty read while copies are counted (their writes still under way) is not retried until one arrives")
    func emptyReadWaits() {
        var outbound = persistent(window: 4)
        _ = outbound.admit(bytes: 1, online: true)  // memory
        _ = outbound.admit(bytes: 1, online: false)  // store only
        var effects = RecordedEffects()
        let connection = ScriptedConnection()
        outbound.attach(connection, effects: &effects, now: now)
        #expect(effects.fetches.count == 1)
        outbound.fetched([], access: nil, to: connection, effects: &effects, now: now)
        #expect(effects.fetches.count == 1)
        outbound.storedCopyArrived(to: connection, effects: &effects, now: now)
        #expect(effects.fetches.count == 2)
    }

    @Test("copies read from the store that the client's ACL no longer allows are dropped and forgotten")
    func fetchedUnreadable() throws {
        var outbound = persistent(window: 4)
        _ = outbound.admit(bytes: 1, online: false)
        let access = try AccessControlList(parsing: "topic read other/#\n").access(username: nil, clientID: "c")
        var effects = RecordedEffects()
        let identifiers = outbound.assignIdentifiers(count: 1)
        outbound.fetched(
            [copy("secret", identifier: identifiers[0], stored: true)],
            access: access,
            to: ScriptedConnection(),
            effects: &effects,
            now: now
        )
        #expect(effects.sent.isEmpty)
        #expect(effects.drops == [.notAuthorized])
        #expect(effects.forgotten == identifiers)
        #expect(outbound.storedOnly == 0)
    }
}

@Suite("Outbound messages: sending, acknowledgements, reconnecting")
struct OutboundMessagesFlowTests {
    @Test("QoS 0 for an offline client is dropped; QoS 1 waits for it")
    func offline() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 1000, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        outbound.deliver(copy("zero", qos: .atMostOnce), to: ScriptedConnection?.none, effects: &effects, now: now)
        outbound.deliver(copy("one"), to: ScriptedConnection?.none, effects: &effects, now: now)
        #expect(effects.drops == [.offlineQoS0])
        #expect(outbound.queuedCount == 1)
        outbound.attach(ScriptedConnection(), effects: &effects, now: now)
        #expect(effects.published.map(\.0) == ["one"])
    }

    @Test("a full queue drops its oldest QoS 0 message before any QoS 1 message, then the newcomer")
    func queueFull() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 2, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        let blocked = ScriptedConnection(isWritable: false)
        outbound.deliver(copy("a"), to: blocked, effects: &effects, now: now)
        outbound.deliver(copy("b", qos: .atMostOnce), to: blocked, effects: &effects, now: now)
        outbound.deliver(copy("c"), to: blocked, effects: &effects, now: now)
        outbound.deliver(copy("d"), to: blocked, effects: &effects, now: now)
        #expect(effects.drops == [.queueFull, .queueFull])
        outbound.drain(to: ScriptedConnection(), effects: &effects, now: now)
        #expect(effects.published.map(\.0) == ["a", "c"])
    }

    @Test("PUBREC: PUBREL once a stored release is on disk; 0x92 for an unknown identifier; a refusal ends the flow")
    func exactlyOnce() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 0, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        let connection = ScriptedConnection()
        outbound.deliver(copy("two", qos: .exactlyOnce, identifier: 7, stored: true), to: connection, effects: &effects, now: now)
        outbound.received(7, reasonCode: .success, connection: connection, effects: &effects, now: now)
        #expect(effects.released.map(\.0) == [7])
        outbound.received(9, reasonCode: .success, connection: connection, effects: &effects, now: now)
        #expect(effects.sent.last == .pubrel(PubRelPacket(packetIdentifier: 9, reasonCode: .packetIdentifierNotFound)))

        outbound.deliver(copy("refused", qos: .exactlyOnce), to: connection, effects: &effects, now: now)
        guard case .publish(let publish) = effects.sent.last, let identifier = publish.packetIdentifier else {
            Issue.record("not sent")
            return
        }
        outbound.received(identifier, reasonCode: .unspecifiedError, connection: connection, effects: &effects, now: now)
        #expect(outbound.inflightCount == 1, "only the released message is left in flight")
    }

    @Test("on a new connection, messages in flight are re-sent with DUP up to the client's receive maximum; the rest wait")
    func resendOnAttach() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 0, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        let first = ScriptedConnection(sendQuota: 3)
        for payload in ["1", "2", "3"] { outbound.deliver(copy(payload), to: first, effects: &effects, now: now) }
        var again = RecordedEffects()
        outbound.attach(ScriptedConnection(sendQuota: 2), effects: &again, now: now)
        let dups = again.sent.compactMap { packet -> (String, Bool)? in
            guard case .publish(let publish) = packet else { return nil }
            return (String(buffer: publish.payload), publish.dup)
        }
        #expect(dups.map(\.0) == ["1", "2"])
        #expect(dups.allSatisfy { $0.1 })
        #expect(outbound.queuedCount == 1)
    }

    @Test("a message larger than the client's maximum packet size is dropped and its stored copy forgotten")
    func tooLargeForClient() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 0, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        outbound.deliver(
            copy(String(repeating: "x", count: 200), identifier: 3, stored: true),
            to: ScriptedConnection(maximumPacketSize: 100),
            effects: &effects,
            now: now
        )
        #expect(effects.drops == [.tooLargeForClient])
        #expect(effects.forgotten == [3])
        #expect(effects.sent.isEmpty)
    }
}

@Suite("Outbound messages: back-pressure")
struct OutboundMessagesBackPressureTests {
    private func limits(highWater: Int = 4, lowWater: Int = 2) -> OutboundMessages.Limits {
        .init(maxQueuedMessages: 0, maxQueuedBytes: 0, highWater: highWater, lowWater: lowWater)
    }

    @Test("a connected client whose backlog passes the high-water mark is congested until it drains to the low-water mark")
    func congestion() {
        var outbound = OutboundMessages(limits: limits())
        var effects = RecordedEffects()
        let blocked = ScriptedConnection(isWritable: false)
        var congested: [Bool] = []
        for number in 1...6 { congested.append(outbound.deliver(copy("\(number)"), to: blocked, effects: &effects, now: now)) }
        #expect(congested == [false, false, false, false, true, true])

        // Draining to three is not enough; to two is.
        let reader = ScriptedConnection(sendQuota: 3)
        outbound.drain(to: reader, effects: &effects, now: now)
        #expect(outbound.backlog == 3 && outbound.congested && effects.drains == 0)
        outbound.acknowledge(1, connection: reader, effects: &effects, now: now)
        #expect(outbound.backlog == 2 && !outbound.congested && effects.drains == 1)
    }

    @Test("a client that goes away is never waited for")
    func detachedReleasesPublishers() {
        var outbound = OutboundMessages(limits: limits())
        var effects = RecordedEffects()
        for number in 1...6 { outbound.deliver(copy("\(number)"), to: ScriptedConnection(isWritable: false), effects: &effects, now: now) }
        #expect(outbound.congested)
        outbound.detached(effects: &effects)
        #expect(!outbound.congested && effects.drains == 1)
        #expect(!outbound.deliver(copy("7"), to: ScriptedConnection?.none, effects: &effects, now: now), "an offline session holds no one back")
    }

    @Test("without back-pressure (mosquitto's behaviour) nobody waits and the queue limit drops")
    func mosquittoDropping() {
        var outbound = OutboundMessages(limits: .init(maxQueuedMessages: 3, maxQueuedBytes: 0))
        var effects = RecordedEffects()
        var congested = false
        for number in 1...10 {
            congested = outbound.deliver(copy("\(number)"), to: ScriptedConnection(isWritable: false), effects: &effects, now: now) || congested
        }
        #expect(!congested)
        #expect(effects.drops == Array(repeating: .queueFull, count: 7))
    }

    @Test("the defaults: no count limit in the store, 100,000 for a connected client with back-pressure, mosquitto's 1000 otherwise")
    func defaultLimits() {
        let limits = Session.Limits(maxInflight: 20, maxQueuedMessages: nil, maxQueuedBytes: 0)
        #expect(limits.outbound(usesStore: true, persistent: true).maxQueuedMessages == 0)
        #expect(limits.outbound(usesStore: false, persistent: false).maxQueuedMessages == 100_000)
        #expect(limits.outbound(usesStore: false, persistent: true).maxQueuedMessages == 1000)
        var dropping = limits
        dropping.backpressure = false
        #expect(dropping.outbound(usesStore: false, persistent: false).maxQueuedMessages == 1000)
        #expect(dropping.outbound(usesStore: false, persistent: false).highWater == 0)
        var explicit = limits
        explicit.maxQueuedMessages = 5
        #expect(explicit.outbound(usesStore: true, persistent: true).maxQueuedMessages == 5)
    }
}
