/// Subscriptions keyed by topic filter, matched against topic names through a trie of levels.
///
/// Finding the subscriptions for a topic name visits only the branches that can match it
/// (the name's own levels, `+` and `#`), so its cost does not grow with unrelated filters.
/// Each filter holds at most one value per key (a client, a shared-subscription member, ...).
///
/// Not thread-safe: one owner (an actor, an event loop or a lock) serialises access.
///
/// Matching is `@inlinable` so that the broker's calls are specialised for its key and value
/// types instead of running generic code.
public final class SubscriptionTrie<Key: Hashable, Value> {
    @usableFromInline
    final class Node {
        @usableFromInline var children: [TopicLevel: Node] = [:]
        /// The `+` child.
        @usableFromInline var singleLevel: Node?
        /// Subscribers of this node's path followed by `/#` (or of `#` at the root).
        @usableFromInline var multiLevel: [Key: Value] = [:]
        /// Subscribers of exactly this node's path.
        @usableFromInline var exact: [Key: Value] = [:]

        @usableFromInline init() {}

        var isEmpty: Bool { children.isEmpty && singleLevel == nil && multiLevel.isEmpty && exact.isEmpty }
    }

    @usableFromInline let root = Node()
    /// The number of (filter, key) entries.
    public private(set) var count = 0

    /// True when no entries are stored and every branch has been pruned.
    public var isEmpty: Bool { root.isEmpty }

    public init() {}

    /// Adds or replaces the value for `key` under `filter` (a valid, non-shared filter).
    /// - Returns: the value it replaced, if any.
    @discardableResult
    public func insert(_ filter: String, key: Key, value: Value) -> Value? {
        var node = root
        var levels = TopicLevels(filter)
        while let level = levels.next() {
            if level.isMultiLevelWildcard {
                return store(value, key: key, in: &node.multiLevel)
            }
            if level.isSingleLevelWildcard {
                let next = node.singleLevel ?? Node()
                node.singleLevel = next
                node = next
            } else if let next = node.children[level] {
                node = next
            } else {
                let next = Node()
                node.children[level] = next
                node = next
            }
        }
        return store(value, key: key, in: &node.exact)
    }

    private func store(_ value: Value, key: Key, in dictionary: inout [Key: Value]) -> Value? {
        let old = dictionary.updateValue(value, forKey: key)
        if old == nil { count += 1 }
        return old
    }

    /// Removes the value for `key` under `filter`, pruning branches left empty.
    /// - Returns: the value removed, if there was one.
    @discardableResult
    public func remove(_ filter: String, key: Key) -> Value? {
        var levels = TopicLevels(filter)
        let removed = remove(from: root, levels: &levels, key: key)
        if removed != nil { count -= 1 }
        return removed
    }

    private func remove(from node: Node, levels: inout TopicLevels, key: Key) -> Value? {
        guard let level = levels.next() else { return node.exact.removeValue(forKey: key) }
        if level.isMultiLevelWildcard { return node.multiLevel.removeValue(forKey: key) }
        if level.isSingleLevelWildcard {
            guard let child = node.singleLevel else { return nil }
            let removed = remove(from: child, levels: &levels, key: key)
            if child.isEmpty { node.singleLevel = nil }
            return removed
        }
        guard let child = node.children[level] else { return nil }
        let removed = remove(from: child, levels: &levels, key: key)
        if child.isEmpty { node.children[level] = nil }
        return removed
    }

    /// The value stored for `key` under exactly `filter`.
    public func value(for filter: String, key: Key) -> Value? {
        var node = root
        var levels = TopicLevels(filter)
        while let level = levels.next() {
            if level.isMultiLevelWildcard { return node.multiLevel[key] }
            guard let next = level.isSingleLevelWildcard ? node.singleLevel : node.children[level] else { return nil }
            node = next
        }
        return node.exact[key]
    }

    /// Calls `body` for every (key, value) whose filter matches `topicName`.
    ///
    /// A key subscribed through several matching filters is reported once per filter.
    @inlinable
    public func forEachMatch(_ topicName: String, _ body: (Key, Value) -> Void) {
        let skipWildcards = topicName.utf8.first == UInt8(ascii: "$")
        match(root, TopicLevels(topicName), skipWildcards: skipWildcards, body)
    }

    /// Every (key, value) whose filter matches `topicName`.
    public func matches(_ topicName: String) -> [(key: Key, value: Value)] {
        var result: [(key: Key, value: Value)] = []
        forEachMatch(topicName) { result.append(($0, $1)) }
        return result
    }

    @inlinable
    func match(_ node: Node, _ levels: TopicLevels, skipWildcards: Bool, _ body: (Key, Value) -> Void) {
        var levels = levels
        guard let level = levels.next() else {
            for (key, value) in node.exact { body(key, value) }
            if !node.multiLevel.isEmpty { for (key, value) in node.multiLevel { body(key, value) } }
            return
        }
        if !skipWildcards {
            if !node.multiLevel.isEmpty { for (key, value) in node.multiLevel { body(key, value) } }
            if let plus = node.singleLevel { match(plus, levels, skipWildcards: false, body) }
        }
        if !node.children.isEmpty, let child = node.children[level] { match(child, levels, skipWildcards: false, body) }
    }
}
