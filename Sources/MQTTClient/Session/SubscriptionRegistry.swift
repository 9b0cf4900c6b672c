import MQTTCore

/// The subscriptions the broker granted, in the order they were made, so they can be made
/// again when the broker did not keep the session.
struct SubscriptionRegistry {
    struct Record {
        var subscription: Subscription
        /// The SUBSCRIBE properties (subscription identifier, user properties).
        var properties: Properties
    }

    private(set) var records: [Record] = []

    var topicFilters: [String] { records.map(\.subscription.topicFilter) }

    /// Adds a subscription, replacing one with the same filter (as the broker does).
    mutating func add(_ subscription: Subscription, properties: Properties) {
        let record = Record(subscription: subscription, properties: properties)
        if let index = records.firstIndex(where: { $0.subscription.topicFilter == subscription.topicFilter }) {
            records[index] = record
        } else {
            records.append(record)
        }
    }

    mutating func remove(_ topicFilter: String) {
        records.removeAll { $0.subscription.topicFilter == topicFilter }
    }
}
