/// Why a topic name or topic filter is not valid (specification section 4.7).
public enum TopicError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Names and filters are at least one character long.
    case empty
    /// Longer than the 65,535 bytes a UTF-8 string field holds.
    case tooLong(Int)
    /// U+0000 is not allowed.
    case nullCharacter
    /// `+` or `#` in a topic name.
    case wildcardInName
    /// `#` not alone in the last level of a filter.
    case misplacedMultiLevelWildcard
    /// `+` not alone in its level of a filter.
    case misplacedSingleLevelWildcard
    /// `$share/{group}/{filter}` with an empty or invalid group or filter.
    case invalidSharedSubscription(String)

    public var description: String {
        switch self {
        case .empty: "topic is empty"
        case .tooLong(let count): "topic is \(count) bytes long; at most 65,535 are allowed"
        case .nullCharacter: "topic contains U+0000"
        case .wildcardInName: "topic name contains a wildcard (+ or #)"
        case .misplacedMultiLevelWildcard: "'#' must be the whole last level of a topic filter"
        case .misplacedSingleLevelWildcard: "'+' must be a whole level of a topic filter"
        case .invalidSharedSubscription(let why): "invalid shared subscription: \(why)"
        }
    }
}
