import MQTTCore

/// How topics change as messages cross a bridge, as mosquitto remaps them: the first topic
/// line (in file order) with a prefix whose filter matches decides; its prefix on one side is
/// replaced by its prefix on the other. Messages no prefixed line matches keep their topic.
struct BridgeTopicMap: Sendable, Hashable {
    let topics: [BridgeConfiguration.Topic]

    init(_ topics: [BridgeConfiguration.Topic]) {
        self.topics = topics
    }

    /// The topic on the remote broker of a local message being forwarded.
    func remoteTopic(forLocal topic: String) -> String {
        for line in topics where line.direction.isOutgoing && line.remaps {
            guard TopicFilter.matches(line.localFilter, name: topic) else { continue }
            let stripped = topic.hasPrefix(line.localPrefix) ? String(topic.dropFirst(line.localPrefix.count)) : topic
            return line.remotePrefix + stripped
        }
        return topic
    }

    /// The topic here of a message the remote broker sent.
    func localTopic(forRemote topic: String) -> String {
        for line in topics where line.direction.isIncoming && line.remaps {
            guard TopicFilter.matches(line.remoteFilter, name: topic) else { continue }
            let stripped = topic.hasPrefix(line.remotePrefix) ? String(topic.dropFirst(line.remotePrefix.count)) : topic
            return line.localPrefix + stripped
        }
        return topic
    }

    /// The subscriptions the bridge's session holds here: one per `out`/`both` line, no-local
    /// (what came in over the bridge does not go back) and retain-as-published (a retained
    /// message stays retained on the remote broker), as mosquitto subscribes its bridges.
    var localSubscriptions: [(filter: String, options: SubscriptionOptions)] {
        var seen = Set<String>()
        var subscriptions: [(filter: String, options: SubscriptionOptions)] = []
        for line in topics where line.direction.isOutgoing {
            let options = SubscriptionOptions(qos: line.qos, noLocal: true, retainAsPublished: true)
            if seen.insert(line.localFilter).inserted {
                subscriptions.append((line.localFilter, options))
            } else if let index = subscriptions.firstIndex(where: { $0.filter == line.localFilter }), subscriptions[index].options.qos < line.qos {
                subscriptions[index].options = options
            }
        }
        return subscriptions
    }
}
