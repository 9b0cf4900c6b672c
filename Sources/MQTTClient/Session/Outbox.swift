import DequeModule
import MQTTCore
import NIOCore

/// What the outbox does with a new message when it is full.
public enum OutboxOverflowPolicy: Sendable, Hashable {
    /// `publish` throws ``MQTTClientError/Code-swift.struct/outboxFull``; the messages already kept stay.
    case rejectNewest
    /// The oldest message not yet sent is dropped (its `publish` throws
    /// ``MQTTClientError/Code-swift.struct/droppedFromOutbox``) to make room. Messages already
    /// sent and waiting for their acknowledgement are never dropped.
    case dropOldest
}

/// Limits of the outbox, what happens when they are reached, and where it is kept.
public struct OutboxConfiguration: Sendable {
    /// The most messages kept, sent-but-unacknowledged ones included.
    public var maximumMessages: Int
    /// The most bytes (topics plus payloads) kept.
    public var maximumBytes: Int
    /// What happens to a new message when the outbox is full.
    public var overflowPolicy: OutboxOverflowPolicy
    /// Where entries are kept beyond the process; `nil` keeps them in memory only.
    public var persistence: (any OutboxPersistence)?
    /// With a ``persistence``, how many unsent messages are kept in memory as well; the rest
    /// wait only in the store and are read back as the memory empties, so a long backlog
    /// (a device offline for hours) takes no more memory than this. Without a persistence
    /// every message is in memory.
    public var messagesInMemory: Int

    /// - Parameters:
    ///   - maximumMessages: the most messages kept; 100,000 by default.
    ///   - maximumBytes: the most bytes kept; 64 MiB by default.
    ///   - overflowPolicy: reject the newest message (the default) or drop the oldest unsent one.
    ///   - persistence: where entries are kept beyond the process; in memory only by default.
    ///   - messagesInMemory: with a persistence, the most unsent messages also kept in memory; 8,192 by default.
    public init(
        maximumMessages: Int = 100_000,
        maximumBytes: Int = 64 << 20,
        overflowPolicy: OutboxOverflowPolicy = .rejectNewest,
        persistence: (any OutboxPersistence)? = nil,
        messagesInMemory: Int = 8_192
    ) {
        self.maximumMessages = maximumMessages
        self.maximumBytes = maximumBytes
        self.overflowPolicy = overflowPolicy
        self.persistence = persistence
        self.messagesInMemory = max(1, messagesInMemory)
    }
}

/// Numbers about the outbox, for logs and metrics.
public struct OutboxStatistics: Sendable, Hashable {
    /// Messages kept now, unsent and unacknowledged.
    public var messages: Int
    /// Bytes (topics plus payloads) kept now.
    public var bytes: Int
    /// Messages dropped to make room under ``OutboxOverflowPolicy/dropOldest``, since the client was created.
    public var dropped: Int
    /// Messages refused under ``OutboxOverflowPolicy/rejectNewest``, since the client was created.
    public var rejected: Int
}

/// The messages the application handed over and the broker has not acknowledged yet, in order.
///
/// Entries not yet sent on the current session are queued in order; sent ones keep their
/// place by sequence number until their flow completes. Every sent entry is older than every
/// queued one, because messages are always sent from the front.
///
/// The outbox does no I/O: what the persistence should store is collected in ``changes``,
/// which the client takes and hands to its ``OutboxWriter`` (group commit). With a
/// persistence, at most ``OutboxConfiguration/messagesInMemory`` unsent entries are in memory;
/// newer ones are only in the store (the *stored tail*) until ``refill(with:)`` brings them in.
struct Outbox {
    /// In memory, by sequence: slot `i` holds sequence `firstSequence + i`, `nil` once removed.
    private var slots = Deque<OutboxEntry?>()
    private var firstSequence: UInt64 = 1
    /// Sequences of in-memory entries not sent on the current session, in order.
    private var queued = Deque<UInt64>()
    private var memoryCount = 0
    private var memoryBytes = 0
    /// Entries only in the store: sequences from the end of `slots` up to `nextSequence`.
    private(set) var storedTailCount = 0
    private var storedTailBytes = 0
    private(set) var droppedCount = 0
    private(set) var rejectedCount = 0
    private var nextSequence: UInt64 = 1
    /// What the persistence has not been told yet.
    private(set) var changes = OutboxChanges()
    let configuration: OutboxConfiguration

    init(configuration: OutboxConfiguration) {
        self.configuration = configuration
    }

    private var isPersistent: Bool { configuration.persistence != nil }

    var count: Int { memoryCount + storedTailCount }
    var byteCount: Int { memoryBytes + storedTailBytes }
    var queuedCount: Int { queued.count + storedTailCount }
    var statistics: OutboxStatistics {
        OutboxStatistics(messages: count, bytes: byteCount, dropped: droppedCount, rejected: rejectedCount)
    }

    /// The entry with this sequence number, when it is in memory.
    subscript(sequence: UInt64) -> OutboxEntry? {
        guard sequence >= firstSequence, sequence - firstSequence < UInt64(slots.count) else { return nil }
        return slots[Int(sequence - firstSequence)]
    }

    /// The entries in memory, oldest first.
    var entriesInMemory: [OutboxEntry] { slots.compactMap { $0 } }

    /// The sequence after the last one in memory: where the stored tail starts.
    private var memoryEnd: UInt64 { firstSequence + UInt64(slots.count) }

    /// Takes the changes for the persistence.
    mutating func takeChanges() -> OutboxChanges {
        defer { changes = OutboxChanges() }
        return changes
    }

    /// Loads what the persistence kept: every entry sent before (they are the oldest) and
    /// unsent ones up to the memory limit; the rest stay in the store.
    mutating func restore() throws {
        guard let persistence = configuration.persistence else { return }
        let totals = try persistence.loadTotals()
        guard totals.messages > 0 else { return }
        var loaded: [OutboxEntry] = []
        var after: UInt64 = 0
        while true {
            let chunk = try persistence.loadEntries(after: after, limit: configuration.messagesInMemory)
            loaded += chunk
            guard let last = chunk.last else { break }
            after = last.sequence
            // Sent entries must all be in memory; they come first.
            if chunk.count < configuration.messagesInMemory || last.state == .queued { break }
        }
        guard let first = loaded.first else { return }
        firstSequence = first.sequence
        nextSequence = max(totals.lastSequence, loaded.last!.sequence) + 1
        for entry in loaded { place(entry) }
        storedTailCount = max(0, totals.messages - loaded.count)
        storedTailBytes = storedTailCount == 0 ? 0 : max(0, totals.bytes - memoryBytes)
    }

    /// Puts an entry read from the store into memory, after the ones there.
    private mutating func place(_ entry: OutboxEntry) {
        if slots.isEmpty && memoryCount == 0 { firstSequence = entry.sequence }
        while memoryEnd < entry.sequence { slots.append(nil) }
        slots.append(entry)
        memoryCount += 1
        memoryBytes += entry.byteCount
        if entry.state == .queued { queued.append(entry.sequence) }
    }

    /// Adds a message at the end, making room first as the overflow policy says.
    ///
    /// - Returns: the new entry and the entries dropped to make room for it.
    mutating func append(
        topic: String,
        payload: ByteBuffer,
        qos: QoS,
        retain: Bool,
        properties: Properties
    ) throws(MQTTClientError) -> (entry: OutboxEntry, dropped: [OutboxEntry]) {
        let entry = OutboxEntry(sequence: nextSequence, topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        var dropped: [OutboxEntry] = []
        while count + 1 > configuration.maximumMessages || byteCount + entry.byteCount > configuration.maximumBytes {
            guard configuration.overflowPolicy == .dropOldest, entry.byteCount <= configuration.maximumBytes,
                let oldest = queued.first
            else {
                rejectedCount += 1
                throw MQTTClientError(
                    .outboxFull,
                    "the outbox holds \(count) messages of \(byteCount) bytes; its limits are "
                        + "\(configuration.maximumMessages) messages and \(configuration.maximumBytes) bytes"
                )
            }
            if let removed = remove(sequence: oldest) {
                dropped.append(removed)
                droppedCount += 1
            }
        }
        nextSequence += 1
        if isPersistent {
            changes.append(entry)
            if storedTailCount > 0 || queued.count >= configuration.messagesInMemory {
                // Memory holds enough unsent messages: this one waits in the store only.
                storedTailCount += 1
                storedTailBytes += entry.byteCount
                return (entry, dropped)
            }
        }
        if memoryCount == 0 && slots.isEmpty { firstSequence = entry.sequence }
        while memoryEnd < entry.sequence { slots.append(nil) }
        slots.append(entry)
        memoryCount += 1
        memoryBytes += entry.byteCount
        queued.append(entry.sequence)
        return (entry, dropped)
    }

    /// Whether unsent messages wait in the store and memory has room for them.
    var wantsRefill: Bool { storedTailCount > 0 && queued.count <= configuration.messagesInMemory / 2 }

    /// Where a refill reads from, and how many entries.
    var refillRequest: (after: UInt64, limit: Int) { (memoryEnd - 1, configuration.messagesInMemory - queued.count) }

    /// Brings entries of the stored tail into memory (read with ``refillRequest``).
    mutating func refill(with entries: [OutboxEntry]) {
        guard !entries.isEmpty else {
            // The store has fewer than counted (it failed, or was changed underneath): stop asking.
            storedTailCount = 0
            storedTailBytes = 0
            return
        }
        for entry in entries where entry.sequence >= memoryEnd && storedTailCount > 0 {
            var entry = entry
            entry.state = .queued
            place(entry)
            storedTailCount -= 1
            storedTailBytes -= entry.byteCount
        }
        if storedTailCount == 0 { storedTailBytes = 0 }
    }

    /// The oldest entry not yet sent on the current session.
    var firstQueued: OutboxEntry? { queued.first.flatMap { self[$0] } }

    /// Takes the oldest queued entry off the queue; it stays in the outbox until marked or removed.
    mutating func popQueued() -> OutboxEntry? {
        guard let sequence = queued.popFirst() else { return nil }
        return self[sequence]
    }

    /// Records a new state for an entry.
    mutating func setState(_ state: OutboxEntry.State, of sequence: UInt64) {
        guard sequence >= firstSequence, sequence < memoryEnd, var entry = slots[Int(sequence - firstSequence)] else { return }
        entry.state = state
        slots[Int(sequence - firstSequence)] = entry
        if isPersistent { changes.update(entry) }
    }

    /// Removes an entry whose flow completed (or that was dropped), wherever it is in memory.
    @discardableResult
    mutating func remove(sequence: UInt64) -> OutboxEntry? {
        guard sequence >= firstSequence, sequence < memoryEnd else { return nil }
        let index = Int(sequence - firstSequence)
        guard let entry = slots[index] else { return nil }
        slots[index] = nil
        memoryCount -= 1
        memoryBytes -= entry.byteCount
        while let first = slots.first, first == nil {
            slots.removeFirst()
            firstSequence += 1
        }
        if slots.isEmpty { firstSequence = memoryEnd }
        // The queue is sorted; an entry popped for sending is older than its front.
        if entry.state == .queued, let front = queued.first, sequence >= front, let position = queued.firstIndex(of: sequence) {
            queued.remove(at: position)
        }
        if isPersistent { changes.remove(sequence) }
        return entry
    }

    /// Entries sent and not yet acknowledged, oldest first.
    var unacknowledged: [OutboxEntry] {
        slots.compactMap { entry in entry.flatMap { $0.state == .queued ? nil : $0 } }
    }

    /// Puts sent entries back at the front of the queue, in order, to be sent again as new
    /// messages (the broker did not keep the session).
    mutating func requeue(_ sequences: [UInt64]) {
        for sequence in sequences.sorted().reversed() where self[sequence] != nil {
            setState(.queued, of: sequence)
            queued.prepend(sequence)
        }
    }
}
