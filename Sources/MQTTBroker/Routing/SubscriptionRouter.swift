import MQTTCore

/// One client's subscription as the router stores it.
struct RouteEntry: Sendable {
    let session: Session
    let options: SubscriptionOptions
    let identifier: Int?
}

/// A delivery the router decided on: one per subscribed session, overlapping subscriptions merged.
struct Delivery {
    let session: Session
    var qos: QoS
    var retainAsPublished: Bool
    var subscriptionIdentifiers: [Int]
}

/// Who receives a topic: the subscription trie behind a readers-writer lock, so that every
/// event loop routes at once and only subscription changes take the lock exclusively.
final class SubscriptionRouter: @unchecked Sendable {
    private let trie = SubscriptionTrie<String, RouteEntry>()
    private let lock = ReadWriteLock()

    var count: Int { lock.withReadLock { trie.count } }

    func subscribe(_ filter: String, entry: RouteEntry) {
        lock.withWriteLock { _ = trie.insert(filter, key: entry.session.clientID, value: entry) }
    }

    func unsubscribe(_ filter: String, clientID: String) -> Bool {
        lock.withWriteLock { trie.remove(filter, key: clientID) != nil }
    }

    /// Removes the entry for `clientID` under `filter` if `condition` holds for it.
    func removeIf(_ filter: String, clientID: String, _ condition: (RouteEntry) -> Bool) -> Bool {
        lock.withWriteLock {
            guard let entry = trie.value(for: filter, key: clientID), condition(entry) else { return false }
            return trie.remove(filter, key: clientID) != nil
        }
    }

    /// The sessions that should receive `message`, one delivery each at the highest QoS any
    /// of its matching subscriptions grants (capped at the message's QoS), with all their
    /// subscription identifiers; no-local subscriptions skip the publisher.
    func deliveries(for message: ApplicationMessage) -> [Delivery] {
        var deliveries: [Delivery] = []
        lock.withReadLock {
            trie.forEachMatch(message.topic) { clientID, entry in
                if entry.options.noLocal && clientID == message.publisherID { return }
                deliveries.append(
                    Delivery(
                        session: entry.session,
                        qos: min(entry.options.qos, message.qos),
                        retainAsPublished: entry.options.retainAsPublished,
                        subscriptionIdentifiers: entry.identifier.map { [$0] } ?? []
                    )
                )
            }
        }
        return deliveries.count > 1 ? Self.mergingOverlaps(deliveries) : deliveries
    }

    /// One delivery per session: the highest QoS, every subscription identifier.
    private static func mergingOverlaps(_ deliveries: [Delivery]) -> [Delivery] {
        var merged: [Delivery] = []
        merged.reserveCapacity(deliveries.count)
        var indexBySession: [ObjectIdentifier: Int] = [:]
        indexBySession.reserveCapacity(deliveries.count)
        for delivery in deliveries {
            let key = ObjectIdentifier(delivery.session)
            if let index = indexBySession[key] {
                merged[index].qos = max(merged[index].qos, delivery.qos)
                merged[index].retainAsPublished = merged[index].retainAsPublished || delivery.retainAsPublished
                merged[index].subscriptionIdentifiers += delivery.subscriptionIdentifiers
            } else {
                indexBySession[key] = merged.count
                merged.append(delivery)
            }
        }
        return merged
    }
}
