/// A shared subscription filter, `$share/{group}/{filter}` (5.0 section 4.8.2).
///
/// Each message matching `filter` goes to one member of `group` instead of to every member.
public struct SharedSubscription: Sendable, Hashable {
    public var group: String
    public var filter: String

    public init(group: String, filter: String) {
        self.group = group
        self.filter = filter
    }

    /// The filter as a subscriber sends it.
    public var topicFilter: String { "$share/\(group)/\(filter)" }

    private static let prefix = "$share/"

    /// Parses `$share/{group}/{filter}`.
    ///
    /// - Returns: `nil` when `topicFilter` is not a shared subscription.
    /// - Throws: ``TopicError/invalidSharedSubscription(_:)`` when it starts with `$share/` but
    ///   the group is empty or holds a wildcard, or the filter is missing or invalid.
    public static func parse(_ topicFilter: String) throws(TopicError) -> SharedSubscription? {
        guard topicFilter.utf8.starts(with: prefix.utf8) else { return nil }
        let rest = topicFilter.utf8.dropFirst(prefix.utf8.count)
        guard let slash = rest.firstIndex(of: UInt8(ascii: "/")) else {
            throw .invalidSharedSubscription("no topic filter after the share name")
        }
        let group = Substring(topicFilter.utf8[rest.startIndex..<slash])
        let filter = Substring(topicFilter.utf8[topicFilter.utf8.index(after: slash)...])
        guard !group.isEmpty else { throw .invalidSharedSubscription("empty share name") }
        guard !TopicFilter.hasWildcards(group) else { throw .invalidSharedSubscription("share name holds + or #") }
        do {
            try TopicFilter.validate(filter)
        } catch {
            throw .invalidSharedSubscription("topic filter: \(error)")
        }
        return SharedSubscription(group: String(group), filter: String(filter))
    }
}
