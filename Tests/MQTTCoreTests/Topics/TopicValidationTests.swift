import Testing

@testable import MQTTCore

@Suite("Topic names and filters: validation")
struct TopicValidationTests {
    @Test(
        "valid topic names are accepted",
        arguments: ["a", "/", "a/b/c", "/finance", "sport/", "a//b", "$SYS/broker/uptime", " ", "ünïcödé/名前", "lprserver/cameras/17/detection"]
    )
    func validNames(name: String) throws {
        try TopicName.validate(name)
    }

    @Test(
        "invalid topic names are refused with the reason",
        arguments: [
            ("", TopicError.empty), ("a/+", .wildcardInName), ("#", .wildcardInName), ("a+b", .wildcardInName),
            ("a\u{0}b", .nullCharacter), (String(repeating: "x", count: 65_536), .tooLong(65_536)),
        ]
    )
    func invalidNames(name: String, error: TopicError) {
        #expect(throws: error) { try TopicName.validate(name) }
    }

    @Test(
        "valid topic filters are accepted",
        arguments: ["#", "+", "+/+", "/+", "a/#", "a/+/c", "+/tennis/#", "sport/tennis/player1/#", "a//b", "$SYS/#", "a/b/", "/"]
    )
    func validFilters(filter: String) throws {
        try TopicFilter.validate(filter)
    }

    @Test(
        "invalid topic filters are refused with the reason",
        arguments: [
            ("", TopicError.empty), ("sport/tennis#", .misplacedMultiLevelWildcard), ("sport/tennis/#/ranking", .misplacedMultiLevelWildcard),
            ("##", .misplacedMultiLevelWildcard), ("a/#/", .misplacedMultiLevelWildcard), ("sport+", .misplacedSingleLevelWildcard),
            ("a/+b", .misplacedSingleLevelWildcard), ("++", .misplacedSingleLevelWildcard), ("a\u{0}", .nullCharacter),
        ]
    )
    func invalidFilters(filter: String, error: TopicError) {
        #expect(throws: error) { try TopicFilter.validate(filter) }
    }

    @Test("a shared subscription is parsed into group and filter")
    func sharedSubscription() throws {
        let shared = try SharedSubscription.parse("$share/ingest/lprserver/cameras/+/detection")
        #expect(shared == SharedSubscription(group: "ingest", filter: "lprserver/cameras/+/detection"))
        #expect(shared?.topicFilter == "$share/ingest/lprserver/cameras/+/detection")
        #expect(try SharedSubscription.parse("$share/g/#")?.filter == "#")
        #expect(try SharedSubscription.parse("lprserver/#") == nil)
        #expect(try SharedSubscription.parse("$SYS/#") == nil)
        #expect(try SharedSubscription.parse("$sharex/g/a") == nil)
    }

    @Test(
        "a malformed shared subscription is refused",
        arguments: ["$share/", "$share/group", "$share//a", "$share/g+/a", "$share/#/a", "$share/g/", "$share/g/a#", "$share/g/a/+b"]
    )
    func invalidSharedSubscription(filter: String) {
        #expect {
            _ = try SharedSubscription.parse(filter)
        } throws: { error in
            if case .invalidSharedSubscription = error as? TopicError { return true }
            return false
        }
    }
}

@Suite("Topic names and filters: matching")
struct TopicMatchingTests {
    static let matching: [(String, String)] = [
        ("sport/tennis/player1/#", "sport/tennis/player1"),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking"),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"),
        ("sport/#", "sport"),
        ("#", "sport/tennis"),
        ("#", "/"),
        ("sport/tennis/+", "sport/tennis/player1"),
        ("sport/+", "sport/"),
        ("+/+", "/finance"),
        ("/+", "/finance"),
        ("+/tennis/#", "sport/tennis"),
        ("a/+/c", "a//c"),
        ("+", ""),
        ("$SYS/#", "$SYS/broker/uptime"),
        ("$SYS/monitor/+", "$SYS/monitor/Clients"),
        ("$SYS/#", "$SYS"),
        ("lprserver/cameras/+/detection", "lprserver/cameras/17/detection"),
        ("a/b", "a/b"),
    ]

    static let notMatching: [(String, String)] = [
        ("sport/tennis/+", "sport/tennis/player1/ranking"),
        ("sport/+", "sport"),
        ("+", "/finance"),
        ("#", "$SYS/broker"),
        ("+/monitor/Clients", "$SYS/monitor/Clients"),
        ("+", "$SYS"),
        ("a/b", "a/b/c"),
        ("a/b/c", "a/b"),
        ("a/b", "a/bc"),
        ("a/bc", "a/b"),
        ("A/b", "a/b"),
        ("a/b/", "a/b"),
        ("café", "cafe\u{301}"),  // same text in Unicode, different bytes: MQTT compares bytes
    ]

    @Test("filter matches topic name", arguments: matching)
    func matches(filter: String, name: String) {
        #expect(TopicFilter.matches(filter, name: name))
    }

    @Test("filter does not match topic name", arguments: notMatching)
    func doesNotMatch(filter: String, name: String) {
        #expect(!TopicFilter.matches(filter, name: name))
    }
}
