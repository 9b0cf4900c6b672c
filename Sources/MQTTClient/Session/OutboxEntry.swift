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

/// Keeps outbox entries somewhere that outlives the process, so unsent and unacknowledged
/// messages are sent after a restart.
///
/// The client keeps every entry in memory as well and calls these methods as entries come,
/// change and go; with no persistence configured the outbox is in memory only. A SQLite
/// implementation slots in here.
public protocol OutboxPersistence: Sendable {
    /// Every stored entry, in any order; called once, before the client first connects.
    func loadEntries() throws -> [OutboxEntry]
    /// Stores a new entry; the client's `publish` fails when this throws.
    func append(_ entry: OutboxEntry) throws
    /// Records a changed ``OutboxEntry/state``.
    func update(_ entry: OutboxEntry) throws
    /// Forgets an entry that was acknowledged, sent at QoS 0, or dropped.
    func remove(sequence: UInt64) throws
}
