/// Rules for topic filters, and matching a filter against a topic name.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

public enum TopicFilter {
    /// Checks a topic filter: not empty, at most 65,535 bytes, no U+0000, `#` only as the
    /// whole last level, `+` only as a whole level. Does not accept `$share/...`: see
    /// ``SharedSubscription``.
    public static func validate(_ filter: some StringProtocol) throws(TopicError) {
        let utf8 = filter.utf8
        guard !utf8.isEmpty else { throw .empty }
        guard utf8.count <= 65_535 else { throw .tooLong(utf8.count) }
        var previous: UInt8 = UInt8(ascii: "/")
        var index = utf8.startIndex
        while index != utf8.endIndex {
            let byte = utf8[index]
            let next = utf8.index(after: index)
            let nextByte: UInt8? = next == utf8.endIndex ? nil : utf8[next]
            switch byte {
            case 0:
                throw .nullCharacter
            case UInt8(ascii: "#"):
                guard previous == UInt8(ascii: "/"), nextByte == nil else { throw .misplacedMultiLevelWildcard }
            case UInt8(ascii: "+"):
                guard previous == UInt8(ascii: "/"), nextByte == nil || nextByte == UInt8(ascii: "/") else {
                    throw .misplacedSingleLevelWildcard
                }
            default:
                break
            }
            previous = byte
            index = next
        }
    }

    /// Whether a filter has `+` or `#` in it.
    public static func hasWildcards(_ filter: some StringProtocol) -> Bool {
        filter.utf8.contains { $0 == UInt8(ascii: "+") || $0 == UInt8(ascii: "#") }
    }

    /// Whether `filter` (valid, not shared) matches topic name `name` (valid).
    ///
    /// `+` matches exactly one level, which may be empty; `#` matches its parent level and any
    /// number of levels below; a name starting with `$` is not matched by a filter that starts
    /// with a wildcard. Levels compare byte for byte, as MQTT requires.
    public static func matches(_ filter: String, name: String) -> Bool {
        var filterLevels = TopicLevels(filter)
        var nameLevels = TopicLevels(name)
        let dollar = TopicName.isDollarTopic(name)
        var first = true
        while true {
            switch (filterLevels.next(), nameLevels.next()) {
            case (nil, nil):
                return true
            case (let f?, _) where f.isMultiLevelWildcard:
                return !(first && dollar)
            case (nil, _?), (_?, nil):
                return false
            case (let f?, let n?):
                if f.isSingleLevelWildcard {
                    if first && dollar { return false }
                } else if f != n {
                    return false
                }
            }
            first = false
        }
    }
}

/// One level of a topic name or filter: a slice of the original string's bytes, compared and
/// hashed byte for byte (MQTT does not apply Unicode equivalence to topics).
@usableFromInline
struct TopicLevel: Hashable {
    @usableFromInline let bytes: Substring.UTF8View

    @inlinable init(_ bytes: Substring.UTF8View) { self.bytes = bytes }

    @inlinable var isSingleLevelWildcard: Bool { bytes.count == 1 && bytes.first == UInt8(ascii: "+") }
    @inlinable var isMultiLevelWildcard: Bool { bytes.count == 1 && bytes.first == UInt8(ascii: "#") }

    @inlinable
    static func == (lhs: TopicLevel, rhs: TopicLevel) -> Bool {
        let count = lhs.bytes.count
        guard count == rhs.bytes.count else { return false }
        let equal = lhs.bytes.withContiguousStorageIfAvailable { left in
            rhs.bytes.withContiguousStorageIfAvailable { right in
                count == 0 || memcmp(left.baseAddress!, right.baseAddress!, count) == 0
            }
        }
        return (equal ?? nil) ?? lhs.bytes.elementsEqual(rhs.bytes)
    }

    @inlinable
    func hash(into hasher: inout Hasher) {
        let hashed: Void? = bytes.withContiguousStorageIfAvailable { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        if hashed == nil { Array(bytes).withUnsafeBytes { hasher.combine(bytes: $0) } }
    }
}

/// Iterates the `/`-separated levels of a topic without copying it.
@usableFromInline
struct TopicLevels: IteratorProtocol {
    @usableFromInline let topic: Substring.UTF8View
    @usableFromInline var position: Substring.UTF8View.Index?

    @inlinable
    init(_ topic: String) {
        self.topic = topic[...].utf8
        self.position = self.topic.startIndex
    }

    @inlinable
    mutating func next() -> TopicLevel? {
        guard let start = position else { return nil }
        if let slash = topic[start...].firstIndex(of: UInt8(ascii: "/")) {
            position = topic.index(after: slash)
            return TopicLevel(topic[start..<slash])
        }
        position = nil
        return TopicLevel(topic[start...])
    }
}
