import Atomics
import MQTTCore

/// Why a message did not reach a subscriber.
enum DropReason: String, CaseIterable, Sendable {
    /// The subscriber's queue was at max_queued_messages or max_queued_bytes.
    case queueFull = "queue_full"
    /// The store was at persistence_max_bytes: a persistent session's copy could not be kept.
    case storeFull = "store_full"
    /// Larger than message_size_limit.
    case tooLarge = "too_large"
    /// Larger than the subscriber's maximum packet size.
    case tooLargeForClient = "too_large_for_client"
    /// The message expiry interval ran out while it waited.
    case expired
    /// QoS 0 for a subscriber that is offline.
    case offlineQoS0 = "offline_qos0"
    /// A client published to `$SYS`.
    case forbiddenTopic = "forbidden_topic"
    /// No member of a shared subscription was left to take it.
    case noSharedMember = "no_shared_member"
    /// A field did not fit the subscriber's protocol.
    case encodingFailed = "encoding_failed"
    /// The ACL does not let the publisher write, or the subscriber read, the topic.
    case notAuthorized = "not_authorized"
}

/// Counters the broker keeps for `$SYS` and `/metrics`: relaxed atomics shared by every event loop.
final class BrokerStatistics: Sendable {
    /// PUBLISH packets received from clients, by QoS.
    let received = [ManagedAtomic<Int>(0), ManagedAtomic<Int>(0), ManagedAtomic<Int>(0)]
    /// PUBLISH packets sent to clients, by QoS.
    let sent = [ManagedAtomic<Int>(0), ManagedAtomic<Int>(0), ManagedAtomic<Int>(0)]
    let drops: [DropReason: ManagedAtomic<Int>] = Dictionary(uniqueKeysWithValues: DropReason.allCases.map { ($0, ManagedAtomic(0)) })
    let refusals: [ReasonCode: ManagedAtomic<Int>] = Dictionary(uniqueKeysWithValues: ReasonCode.allCases.map { ($0, ManagedAtomic(0)) })
    let bytesReceived = ManagedAtomic<Int>(0)
    let bytesSent = ManagedAtomic<Int>(0)
    let clientsConnected = ManagedAtomic<Int>(0)
    /// Connections waiting in the parking lot (counted in `clientsConnected` too).
    let parkedConnections = ManagedAtomic<Int>(0)
    let clientsMaximum = ManagedAtomic<Int>(0)
    /// CONNECTs refused for their credentials (password, JWT, certificate identity).
    let authenticationFailures = ManagedAtomic<Int>(0)
    /// CONNACKs held back because their address kept failing to log in.
    let throttledConnects = ManagedAtomic<Int>(0)
    /// TLS handshakes that completed.
    let tlsHandshakes = ManagedAtomic<Int>(0)
    /// TLS handshakes that failed, by why.
    let tlsHandshakeFailures: [TLSHandshakeFailure: ManagedAtomic<Int>] = Dictionary(
        uniqueKeysWithValues: TLSHandshakeFailure.allCases.map { ($0, ManagedAtomic(0)) }
    )

    @inline(__always) func received(_ qos: QoS) { received[Int(qos.rawValue)].wrappingIncrement(ordering: .relaxed) }
    @inline(__always) func sent(_ qos: QoS) { sent[Int(qos.rawValue)].wrappingIncrement(ordering: .relaxed) }
    @inline(__always) func dropped(_ reason: DropReason) { drops[reason]!.wrappingIncrement(ordering: .relaxed) }
    func refused(_ reason: ReasonCode) { refusals[reason]!.wrappingIncrement(ordering: .relaxed) }
    func tlsHandshakeSucceeded() { tlsHandshakes.wrappingIncrement(ordering: .relaxed) }
    func tlsHandshakeFailed(_ failure: TLSHandshakeFailure) { tlsHandshakeFailures[failure]!.wrappingIncrement(ordering: .relaxed) }

    var messagesReceived: Int { received.reduce(0) { $0 + $1.load(ordering: .relaxed) } }
    var messagesSent: Int { sent.reduce(0) { $0 + $1.load(ordering: .relaxed) } }
    var messagesDropped: Int { drops.values.reduce(0) { $0 + $1.load(ordering: .relaxed) } }

    func clientConnected() {
        let now = clientsConnected.wrappingIncrementThenLoad(ordering: .relaxed)
        var maximum = clientsMaximum.load(ordering: .relaxed)
        while now > maximum {
            let (exchanged, original) = clientsMaximum.compareExchange(expected: maximum, desired: now, ordering: .relaxed)
            if exchanged { break }
            maximum = original
        }
    }

    func clientDisconnected() {
        clientsConnected.wrappingDecrement(ordering: .relaxed)
    }
}
