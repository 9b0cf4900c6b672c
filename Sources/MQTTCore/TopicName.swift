/// Rules for topic names, the topics that messages are published to.
public enum TopicName {
    /// Checks a topic name: not empty, at most 65,535 bytes, no U+0000, no `+` or `#`.
    public static func validate(_ name: String) throws(TopicError) {
        let utf8 = name.utf8
        guard !utf8.isEmpty else { throw .empty }
        guard utf8.count <= 65_535 else { throw .tooLong(utf8.count) }
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "+"), UInt8(ascii: "#"): throw .wildcardInName
            case 0: throw .nullCharacter
            default: continue
            }
        }
    }

    /// Whether a topic name starts with `$` (e.g. `$SYS/...`): such topics are not matched by
    /// filters that start with a wildcard.
    public static func isDollarTopic(_ name: some StringProtocol) -> Bool {
        name.utf8.first == UInt8(ascii: "$")
    }
}
