import Atomics

/// Counters the broker keeps for `$SYS` and metrics; relaxed atomics, shared by all event loops.
final class BrokerStatistics: Sendable {
    let messagesReceived = ManagedAtomic<Int>(0)
    let messagesSent = ManagedAtomic<Int>(0)
    /// Messages not delivered to a subscriber: queue full, too large for it, expired, offline QoS 0.
    let messagesDropped = ManagedAtomic<Int>(0)
    let bytesReceived = ManagedAtomic<Int>(0)
    let bytesSent = ManagedAtomic<Int>(0)
    let clientsConnected = ManagedAtomic<Int>(0)
    let clientsMaximum = ManagedAtomic<Int>(0)
    let connectionsRefused = ManagedAtomic<Int>(0)

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
