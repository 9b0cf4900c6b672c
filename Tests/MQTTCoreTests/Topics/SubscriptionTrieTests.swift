import Testing

@testable import MQTTCore

@Suite("Subscription trie")
struct SubscriptionTrieTests {
    @Test("the trie finds exactly the filters that match, including $ rules and byte-wise levels")
    func matchesLikeTopicFilter() {
        let trie = SubscriptionTrie<String, Int>()
        let filters = TopicMatchingTests.matching.map(\.0) + TopicMatchingTests.notMatching.map(\.0)
        for (index, filter) in Set(filters).sorted().enumerated() { trie.insert(filter, key: filter, value: index) }
        let names = Set(TopicMatchingTests.matching.map(\.1) + TopicMatchingTests.notMatching.map(\.1))
        for name in names {
            let found = Set(trie.matches(name).map(\.key))
            let expected = Set(filters.filter { TopicFilter.matches($0, name: name) })
            #expect(found == expected, "topic \(name)")
        }
    }

    @Test("random filters and names: the trie agrees with the reference matcher")
    func randomisedAgreement() throws {
        var generator = SeededGenerator(seed: 42)
        let words = ["a", "b", "cam", "", "$SYS", "x"]
        func randomTopic(wildcards: Bool) -> String {
            let count = Int.random(in: 1...4, using: &generator)
            var levels: [String] = []
            for index in 0..<count {
                let roll = Int.random(in: 0..<10, using: &generator)
                if wildcards && roll == 0 && index == count - 1 {
                    levels.append("#")
                } else if wildcards && roll < 3 {
                    levels.append("+")
                } else {
                    levels.append(words.randomElement(using: &generator)!)
                }
            }
            let topic = levels.joined(separator: "/")
            return topic.isEmpty ? "a" : topic
        }
        let trie = SubscriptionTrie<Int, String>()
        var filters: [Int: String] = [:]
        for key in 0..<400 {
            let filter = randomTopic(wildcards: true)
            try TopicFilter.validate(filter)
            trie.insert(filter, key: key, value: filter)
            filters[key] = filter
        }
        #expect(trie.count == 400)
        var matchedSomething = 0
        for _ in 0..<400 {
            let name = randomTopic(wildcards: false)
            let found = trie.matches(name).map(\.key).sorted()
            let expected = filters.filter { TopicFilter.matches($0.value, name: name) }.map(\.key).sorted()
            #expect(found == expected, "topic \(name)")
            if !expected.isEmpty { matchedSomething += 1 }
        }
        #expect(matchedSomething > 50)
    }

    @Test("insert replaces a key's value, remove prunes, and count follows")
    func insertReplaceRemove() {
        let trie = SubscriptionTrie<String, QoS>()
        #expect(trie.insert("a/+/c", key: "client-1", value: .atMostOnce) == nil)
        #expect(trie.insert("a/+/c", key: "client-1", value: .exactlyOnce) == .atMostOnce)
        trie.insert("a/+/c", key: "client-2", value: .atLeastOnce)
        trie.insert("a/#", key: "client-1", value: .atLeastOnce)
        #expect(trie.count == 3)
        #expect(trie.value(for: "a/+/c", key: "client-1") == .exactlyOnce)
        #expect(trie.value(for: "a/#", key: "client-2") == nil)
        #expect(trie.matches("a/b/c").count == 3)

        #expect(trie.remove("a/+/c", key: "client-1") == .exactlyOnce)
        #expect(trie.remove("a/+/c", key: "client-1") == nil)
        #expect(trie.remove("x/y", key: "client-1") == nil)
        #expect(trie.count == 2)
        #expect(Set(trie.matches("a/b/c").map(\.key)) == ["client-1", "client-2"])

        trie.remove("a/+/c", key: "client-2")
        trie.remove("a/#", key: "client-1")
        #expect(trie.count == 0)
        #expect(trie.matches("a/b/c").isEmpty)
        #expect(trie.isEmpty)
    }

    @Test("a client subscribed through two matching filters is reported once per filter")
    func overlappingSubscriptions() {
        let trie = SubscriptionTrie<String, String>()
        trie.insert("lprserver/#", key: "server", value: "all")
        trie.insert("lprserver/cameras/+/detection", key: "server", value: "detections")
        let matches = trie.matches("lprserver/cameras/9/detection")
        #expect(matches.map(\.key) == ["server", "server"])
        #expect(Set(matches.map(\.value)) == ["all", "detections"])
    }
}
