import MQTTCore
import Testing

@testable import MQTTBroker

/// Topic remapping as mosquitto.conf(5) tabulates it for `topic pattern dir qos local remote`.
@Suite("Bridge topic mapping")
struct BridgeTopicMapTests {
    private func map(_ line: String) throws -> BridgeTopicMap {
        let configuration = try MosquittoConfigParser.parse("connection t\naddress h\ntopic \(line)")
        return BridgeTopicMap(configuration.bridges[0].topics)
    }

    @Test(
        "the man page's table: local and remote topics of each valid prefix combination",
        arguments: [
            ("pattern both 0 L/ R/", "L/pattern", "R/pattern"),
            ("pattern both 0 L/ \"\"", "L/pattern", "pattern"),
            ("pattern both 0 \"\" R/", "pattern", "R/pattern"),
            ("pattern both 0 \"\" \"\"", "pattern", "pattern"),
            ("\"\" both 0 local remote", "local", "remote"),
        ] as [(String, String, String)]
    )
    func table(line: String, local: String, remote: String) throws {
        let map = try map(line)
        #expect(map.remoteTopic(forLocal: local) == remote)
        #expect(map.localTopic(forRemote: remote) == local)
    }

    @Test("a whole tree is remapped: topic # both 2 local/topic/ remote/topic/")
    func wholeTree() throws {
        let map = try map("# both 2 local/topic/ remote/topic/")
        #expect(map.remoteTopic(forLocal: "local/topic/cam1/plate") == "remote/topic/cam1/plate")
        #expect(map.localTopic(forRemote: "remote/topic/a") == "local/topic/a")
        #expect(map.localSubscriptions.map(\.filter) == ["local/topic/#"])
    }

    @Test("the man page's example: clients/total in 0 test/mosquitto/org/ $SYS/broker/")
    func manPageExample() throws {
        let map = try map("clients/total in 0 test/mosquitto/org/ $SYS/broker/")
        #expect(map.localTopic(forRemote: "$SYS/broker/clients/total") == "test/mosquitto/org/clients/total")
        #expect(map.localSubscriptions.isEmpty)
    }

    @Test("directions: an out line maps only outgoing messages, an in line only incoming ones; the first prefixed match wins")
    func directionsAndOrder() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            connection t
            address h
            topic lpr/# out 1 "" site7/
            topic lpr/# in 1 "" central/
            topic lpr/cam1/# out 1 "" never/
            topic # out 0
            """
        )
        let map = BridgeTopicMap(configuration.bridges[0].topics)
        #expect(map.remoteTopic(forLocal: "lpr/cam1/plate") == "site7/lpr/cam1/plate")
        #expect(map.localTopic(forRemote: "central/lpr/x") == "lpr/x")
        // No prefixed line matches: the topic crosses unchanged, as in mosquitto.
        #expect(map.remoteTopic(forLocal: "health/cam1") == "health/cam1")
        #expect(map.localTopic(forRemote: "site7/lpr/x") == "site7/lpr/x")
    }

    @Test("local subscriptions are no-local and retain-as-published, one per filter at the highest QoS")
    func localSubscriptions() throws {
        let configuration = try MosquittoConfigParser.parse(
            """
            connection t
            address h
            topic a/# out 0
            topic a/# both 2
            topic b/# in 1
            """
        )
        let subscriptions = BridgeTopicMap(configuration.bridges[0].topics).localSubscriptions
        #expect(subscriptions.map(\.filter) == ["a/#"])
        #expect(subscriptions.first?.options == SubscriptionOptions(qos: .exactlyOnce, noLocal: true, retainAsPublished: true))
    }
}
