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
    /// Set when the message reached the session through a shared subscription.
    var sharedGroup: SharedGroup? = nil
}

/// Who receives a topic: the subscription trie behind a readers-writer lock, so that every
/// event loop routes at once and only subscription changes take the lock exclusively.
final class SubscriptionRouter: @unchecked Sendable {
    private let trie = SubscriptionTrie<String, RouteEntry>()
    /// Shared subscriptions: under each filter, one group per share name.
    private let sharedTrie = SubscriptionTrie<String, SharedGroup>()
    private let lock = ReadWriteLock()

    var count: Int {
        lock.withReadLock { trie.count + sharedGroups.values.reduce(0) { $0 + $1.members.count } }
    }

    /// Every shared group, for counting; guarded by `lock`.
    private var sharedGroups: [ObjectIdentifier: SharedGroup] = [:]

    /// Adds (or updates) `entry`'s membership of the shared subscription.
    func subscribe(_ shared: SharedSubscription, entry: RouteEntry) {
        lock.withWriteLock {
            let group: SharedGroup
            if let existing = sharedTrie.value(for: shared.filter, key: shared.group) {
                group = existing
            } else {
                group = SharedGroup(name: shared.group, filter: shared.filter)
                sharedTrie.insert(shared.filter, key: shared.group, value: group)
                sharedGroups[ObjectIdentifier(group)] = group
            }
            if let index = group.members.firstIndex(where: { $0.session === entry.session }) {
                group.members[index] = entry
            } else {
                group.members.append(entry)
            }
        }
    }

    /// Removes `session` from the shared subscription; the group goes when its last member does.
    @discardableResult
    func unsubscribe(_ shared: SharedSubscription, session: Session) -> Bool {
        lock.withWriteLock {
            guard let group = sharedTrie.value(for: shared.filter, key: shared.group),
                let index = group.members.firstIndex(where: { $0.session === session })
            else { return false }
            group.members.remove(at: index)
            if group.members.isEmpty {
                sharedTrie.remove(shared.filter, key: shared.group)
                sharedGroups[ObjectIdentifier(group)] = nil
            }
            return true
        }
    }

    /// The shared groups `session` belongs to that have another member: copies it holds for
    /// those may go to someone else; the others wait for it (or end with its session).
    func groupsWithOtherMembers(than session: Session) -> [ObjectIdentifier: SharedGroup] {
        lock.withReadLock {
            var found: [ObjectIdentifier: SharedGroup] = [:]
            for (id, group) in sharedGroups
            where group.members.contains(where: { $0.session === session }) && group.members.contains(where: { $0.session !== session }) {
                found[id] = group
            }
            return found
        }
    }

    /// The shared groups `session` and `other` are both members of, with `session`'s entry in each.
    func groupsShared(by session: Session, and other: Session) -> [ObjectIdentifier: (group: SharedGroup, entry: RouteEntry)] {
        lock.withReadLock {
            var found: [ObjectIdentifier: (group: SharedGroup, entry: RouteEntry)] = [:]
            for (id, group) in sharedGroups where group.members.contains(where: { $0.session === other }) {
                if let entry = group.members.first(where: { $0.session === session }) { found[id] = (group, entry) }
            }
            return found
        }
    }

    /// The members of `session`'s shared groups that are not connected (their sessions, once each).
    func absentMembers(sharingWith session: Session) -> [Session] {
        lock.withReadLock {
            var found: [ObjectIdentifier: Session] = [:]
            for group in sharedGroups.values where group.members.contains(where: { $0.session === session }) {
                for member in group.members where member.session !== session && !member.session.isConnected {
                    found[ObjectIdentifier(member.session)] = member.session
                }
            }
            return Array(found.values)
        }
    }

    /// Another member of `group` for a message whose chosen member `excluded` went away;
    /// `eligible` narrows the choice.
    func alternate(in group: SharedGroup, excluding excluded: Session, where eligible: (RouteEntry) -> Bool = { _ in true }) -> RouteEntry? {
        lock.withReadLock { group.pick(excluding: excluded, where: eligible) }
    }

    /// The group of the shared subscription `subscription` (`$share/{group}/{filter}`), while it has members.
    func sharedGroup(_ subscription: String) -> SharedGroup? {
        guard let shared = try? SharedSubscription.parse(subscription) else { return nil }
        return lock.withReadLock { sharedTrie.value(for: shared.filter, key: shared.group) }
    }

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
            sharedTrie.forEachMatch(message.topic) { _, group in
                guard let member = group.pick() else { return }
                deliveries.append(
                    Delivery(
                        session: member.session,
                        qos: min(member.options.qos, message.qos),
                        retainAsPublished: member.options.retainAsPublished,
                        subscriptionIdentifiers: member.identifier.map { [$0] } ?? [],
                        sharedGroup: group
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
            // A shared subscription's copy is a delivery of its own, even to a client that also
            // has a matching non-shared subscription (5.0 section 4.8.2).
            guard delivery.sharedGroup == nil else {
                merged.append(delivery)
                continue
            }
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
