import MQTTCore
import NIOCore

/// One application message in the outbox, from `publish` until the broker has acknowledged it.
public struct OutboxEntry: Sendable, Hashable {
    /// Where the message is in its flow.
    public enum State: Sendable, Hashable {
        /// Not sent on the current session yet.
        case queued
        /// PUBLISH sent with this packet identifier; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
        case published(packetIdentifier: UInt16)
        /// QoS 2: PUBREC received with `reasonCode` and PUBREL sent; waiting for PUBCOMP.
        case released(packetIdentifier: UInt16, reasonCode: ReasonCode)

        /// The packet identifier the message holds on the session, if it has been sent.
        public var packetIdentifier: UInt16? {
            switch self {
            case .queued: nil
            case .published(let identifier), .released(let identifier, _): identifier
            }
        }
    }

    /// Increases with every message handed to the client: the order messages are sent in.
    public var sequence: UInt64
    /// The topic name the message goes to.
    public var topic: String
    /// The application message.
    public var payload: ByteBuffer
    /// The QoS it is published at.
    public var qos: QoS
    /// Whether the broker keeps it for future subscribers.
    public var retain: Bool
    /// MQTT 5 properties of the PUBLISH (ignored in 3.1.1).
    public var properties: Properties
    /// How far its publish flow has come.
    public var state: State

    /// An entry as a persistence stores and loads it.
    public init(
        sequence: UInt64,
        topic: String,
        payload: ByteBuffer,
        qos: QoS,
        retain: Bool,
        properties: Properties,
        state: State = .queued
    ) {
        self.sequence = sequence
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.state = state
    }

    /// What the entry counts against the outbox's byte limit: topic and payload.
    public var byteCount: Int { topic.utf8.count + payload.readableBytes }
}

/// How much a persistence holds: for the outbox to know its size without loading every entry.
public struct OutboxTotals: Sendable, Hashable {
    /// Stored entries.
    public var messages: Int
    /// Their bytes as the outbox counts them (topics plus payloads).
    public var bytes: Int
    /// The highest sequence number stored, 0 when empty.
    public var lastSequence: UInt64

    public init(messages: Int, bytes: Int, lastSequence: UInt64) {
        self.messages = messages
        self.bytes = bytes
        self.lastSequence = lastSequence
    }
}

/// Keeps outbox entries somewhere that outlives the process, so unsent and unacknowledged
/// messages are sent after a restart.
///
/// The client hands over changes many at a time with ``apply(_:)`` from a thread of its own
/// (group commit): a message counts as stored once the call holding it returned. With a
/// persistence, the client keeps a bounded number of unsent entries in memory and reads the
/// rest back with ``loadEntries(after:limit:)`` as it sends. The single-entry methods are
/// what a simple persistence implements; the others have default implementations on top of
/// them, which a persistence that can do better (``SQLiteOutboxPersistence``) replaces.
public protocol OutboxPersistence: Sendable {
    /// Every stored entry, in any order.
    func loadEntries() throws -> [OutboxEntry]
    /// Stores a new entry.
    func append(_ entry: OutboxEntry) throws
    /// Records a changed ``OutboxEntry/state``.
    func update(_ entry: OutboxEntry) throws
    /// Forgets an entry that was acknowledged, sent at QoS 0, or dropped.
    func remove(sequence: UInt64) throws
    /// Stores changes together (in one transaction where the store has them); when it throws,
    /// none of them counts as stored.
    func apply(_ changes: OutboxChanges) throws
    /// At most `limit` stored entries with a sequence number above `sequence`, in order.
    func loadEntries(after sequence: UInt64, limit: Int) throws -> [OutboxEntry]
    /// How many entries are stored and how big they are.
    func loadTotals() throws -> OutboxTotals
}

extension OutboxPersistence {
    public func apply(_ changes: OutboxChanges) throws {
        for entry in changes.appended { try append(entry) }
        for entry in changes.updated { try update(entry) }
        for range in changes.removed {
            for sequence in range { try remove(sequence: sequence) }
        }
    }

    public func loadEntries(after sequence: UInt64, limit: Int) throws -> [OutboxEntry] {
        Array(try loadEntries().filter { $0.sequence > sequence }.sorted { $0.sequence < $1.sequence }.prefix(limit))
    }

    public func loadTotals() throws -> OutboxTotals {
        let entries = try loadEntries()
        return OutboxTotals(
            messages: entries.count,
            bytes: entries.reduce(0) { $0 + $1.byteCount },
            lastSequence: entries.map(\.sequence).max() ?? 0
        )
    }
}
