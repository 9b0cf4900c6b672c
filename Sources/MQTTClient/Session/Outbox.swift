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

    /// - Parameters:
    ///   - maximumMessages: the most messages kept; 100,000 by default.
    ///   - maximumBytes: the most bytes kept; 64 MiB by default.
    ///   - overflowPolicy: reject the newest message (the default) or drop the oldest unsent one.
    ///   - persistence: where entries are kept beyond the process; in memory only by default.
    public init(
        maximumMessages: Int = 100_000,
        maximumBytes: Int = 64 << 20,
        overflowPolicy: OutboxOverflowPolicy = .rejectNewest,
        persistence: (any OutboxPersistence)? = nil
    ) {
        self.maximumMessages = maximumMessages
        self.maximumBytes = maximumBytes
        self.overflowPolicy = overflowPolicy
        self.persistence = persistence
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
struct Outbox {
    private(set) var entries: [UInt64: OutboxEntry] = [:]
    private var queued = CircularBuffer<UInt64>()
    private(set) var byteCount = 0
    private(set) var droppedCount = 0
    private(set) var rejectedCount = 0
    private var nextSequence: UInt64 = 1
    /// Persistence failures not yet reported; memory stays right when the persistence fails.
    private var persistenceFailures: [String] = []
    let configuration: OutboxConfiguration

    init(configuration: OutboxConfiguration) {
        self.configuration = configuration
    }

    var count: Int { entries.count }
    var queuedCount: Int { queued.count }
    var statistics: OutboxStatistics {
        OutboxStatistics(messages: entries.count, bytes: byteCount, dropped: droppedCount, rejected: rejectedCount)
    }

    /// Loads the entries kept by the persistence, if any.
    mutating func restore() throws {
        guard let persistence = configuration.persistence else { return }
        for entry in try persistence.loadEntries().sorted(by: { $0.sequence < $1.sequence }) {
            entries[entry.sequence] = entry
            byteCount += entry.byteCount
            if entry.state == .queued { queued.append(entry.sequence) }
            nextSequence = max(nextSequence, entry.sequence + 1)
        }
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
        while entries.count + 1 > configuration.maximumMessages || byteCount + entry.byteCount > configuration.maximumBytes {
            guard configuration.overflowPolicy == .dropOldest, entry.byteCount <= configuration.maximumBytes,
                let oldest = queued.first
            else {
                rejectedCount += 1
                throw MQTTClientError(
                    .outboxFull,
                    "the outbox holds \(entries.count) messages of \(byteCount) bytes; its limits are "
                        + "\(configuration.maximumMessages) messages and \(configuration.maximumBytes) bytes"
                )
            }
            if let removed = remove(sequence: oldest) {
                dropped.append(removed)
                droppedCount += 1
            }
        }
        do {
            try configuration.persistence?.append(entry)
        } catch {
            throw MQTTClientError(.persistenceFailed, "could not store the message in the outbox: \(error)")
        }
        nextSequence += 1
        entries[entry.sequence] = entry
        queued.append(entry.sequence)
        byteCount += entry.byteCount
        return (entry, dropped)
    }

    /// The oldest entry not yet sent on the current session.
    var firstQueued: OutboxEntry? { queued.first.flatMap { entries[$0] } }

    /// Takes the oldest queued entry off the queue; it stays in the outbox until marked or removed.
    mutating func popQueued() -> OutboxEntry? {
        guard let sequence = queued.popFirst() else { return nil }
        return entries[sequence]
    }

    /// Records a new state for an entry.
    mutating func setState(_ state: OutboxEntry.State, of sequence: UInt64) {
        guard var entry = entries[sequence] else { return }
        entry.state = state
        entries[sequence] = entry
        persist { try $0.update(entry) }
    }

    /// Removes an entry whose flow completed (or that was dropped), wherever it is.
    @discardableResult
    mutating func remove(sequence: UInt64) -> OutboxEntry? {
        guard let entry = entries.removeValue(forKey: sequence) else { return nil }
        byteCount -= entry.byteCount
        // The queue is sorted; an entry popped for sending is older than its front.
        if entry.state == .queued, let front = queued.first, sequence >= front, let index = queued.firstIndex(of: sequence) {
            queued.remove(at: index)
        }
        persist { try $0.remove(sequence: sequence) }
        return entry
    }

    /// Entries sent and not yet acknowledged, oldest first.
    var unacknowledged: [OutboxEntry] {
        entries.values.filter { $0.state != .queued }.sorted { $0.sequence < $1.sequence }
    }

    /// Puts sent entries back at the front of the queue, in order, to be sent again as new
    /// messages (the broker did not keep the session).
    mutating func requeue(_ sequences: [UInt64]) {
        for sequence in sequences.sorted().reversed() where entries[sequence] != nil {
            setState(.queued, of: sequence)
            queued.prepend(sequence)
        }
    }

    private mutating func persist(_ change: (any OutboxPersistence) throws -> Void) {
        guard let persistence = configuration.persistence else { return }
        do {
            try change(persistence)
        } catch {
            persistenceFailures.append("\(error)")
        }
    }

    /// Persistence failures since the last call, for the client to log.
    mutating func takePersistenceFailures() -> [String] {
        defer { persistenceFailures.removeAll() }
        return persistenceFailures
    }
}
