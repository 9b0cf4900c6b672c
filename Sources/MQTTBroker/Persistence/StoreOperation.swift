import MQTTCore
import NIOCore

/// One change to the broker's durable state.
enum StoreOperation: Sendable {
    case putSession(clientID: String, expiryInterval: UInt32)
    /// Removes a session with its subscriptions, messages and incoming QoS 2 identifiers.
    case deleteSession(clientID: String)
    case putSubscription(clientID: String, filter: String, options: SubscriptionOptions, identifier: Int?)
    case deleteSubscription(clientID: String, filter: String)
    case putRetained(ApplicationMessage)
    case deleteRetained(topic: String)
    /// A QoS 1/2 copy for a session, in the session's order (`sequence`), with the packet
    /// identifier reserved for it, or none while it waits only in the store.
    case putMessage(
        clientID: String,
        sequence: Int64,
        packetIdentifier: UInt16?,
        qos: QoS,
        retain: Bool,
        subscriptionIdentifiers: [Int],
        /// The shared subscription (`$share/{group}/{filter}`) it came through, if any.
        share: String?,
        message: ApplicationMessage
    )
    /// Gives the copies of `from` that came through the shared subscription `share` and wait
    /// only in the store to `to` (another member of the group), at no more than `qos` and
    /// with `to`'s subscription identifiers; `moved` learns how many (and their payload bytes)
    /// once that is committed.
    case moveWaiting(
        from: String,
        to: String,
        share: String,
        qos: QoS,
        subscriptionIdentifiers: [Int],
        moved: @Sendable (_ count: Int, _ bytes: Int) -> Void
    )
    /// Deletes the copies of `from` that came through the shared subscription `share` and wait
    /// only in the store, and hands them to `taken` once that is committed (for a member whose
    /// session the store does not keep).
    case takeWaiting(from: String, share: String, taken: @Sendable (_ copies: [StoredState.StoredMessage], _ bytes: Int) -> Void)
    /// PUBREC received: only PUBREL/PUBCOMP remain for this message.
    case releaseMessage(clientID: String, packetIdentifier: UInt16)
    case deleteMessage(clientID: String, packetIdentifier: UInt16)
    /// An incoming QoS 2 identifier awaiting PUBREL.
    case putIncoming(clientID: String, packetIdentifier: UInt16)
    case deleteIncoming(clientID: String, packetIdentifier: UInt16)
}

/// What the store held at start-up.
struct StoredState: Sendable {
    struct StoredMessage: Sendable {
        var packetIdentifier: UInt16
        var qos: QoS
        var retain: Bool
        var subscriptionIdentifiers: [Int]
        var released: Bool
        /// The shared subscription it came through, if any.
        var share: String? = nil
        var message: ApplicationMessage
    }

    struct StoredSession: Sendable {
        var clientID: String
        var expiryInterval: UInt32
        var subscriptions: [(filter: String, options: SubscriptionOptions, identifier: Int?)] = []
        /// Copies with a packet identifier (in flight, or read into memory), in the order they were stored.
        var messages: [StoredMessage] = []
        /// Copies waiting only in the store (no packet identifier yet): how many, and their payload bytes.
        var storedOnly = 0
        var storedOnlyBytes = 0
        var incoming: [UInt16] = []
    }

    var sessions: [StoredSession] = []
    var retained: [ApplicationMessage] = []
}

/// Why the store could not be opened or written.
public struct PersistenceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    init(_ description: String) { self.description = description }
}
