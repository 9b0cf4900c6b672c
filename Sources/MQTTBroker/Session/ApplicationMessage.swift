import MQTTCore
import NIOCore

/// A message as the broker routes, queues and retains it.
struct ApplicationMessage: Sendable {
    var topic: String
    var payload: ByteBuffer
    var qos: QoS
    var retain: Bool
    /// The publisher's properties, less topic alias and subscription identifiers.
    var properties: Properties
    /// When the message expiry interval runs out (5.0), if it was set.
    var expiresAt: NIODeadline?
    /// For no-local subscriptions.
    var publisherID: String?

    init(publish: PublishPacket, publisherID: String?, now: NIODeadline) {
        self.topic = publish.topicName
        self.payload = publish.payload
        self.qos = publish.qos
        self.retain = publish.retain
        var properties = publish.properties
        if !properties.isEmpty {
            properties.removeAll(.topicAlias)
            properties.removeAll(.subscriptionIdentifier)
        }
        self.properties = properties
        self.expiresAt = properties.messageExpiryInterval.map { now + .seconds(Int64($0)) }
        self.publisherID = publisherID
    }

    init(topic: String, payload: ByteBuffer, qos: QoS, retain: Bool, properties: Properties = [], publisherID: String? = nil) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.expiresAt = properties.messageExpiryInterval.map { .now() + .seconds(Int64($0)) }
        self.publisherID = publisherID
    }

    func isExpired(at now: NIODeadline) -> Bool {
        guard let expiresAt else { return false }
        return expiresAt < now
    }

    /// The PUBLISH a subscriber receives: expiry counted down, its subscription identifiers added.
    func publishPacket(
        qos: QoS,
        retain: Bool,
        packetIdentifier: UInt16?,
        dup: Bool = false,
        subscriptionIdentifiers: [Int] = [],
        now: NIODeadline
    ) -> PublishPacket {
        var properties = self.properties
        if let expiresAt {
            let remaining = max(1, (expiresAt - now).nanoseconds / 1_000_000_000)
            properties.set(.messageExpiryInterval(UInt32(clamping: remaining)))
        }
        for identifier in subscriptionIdentifiers { properties.append(.subscriptionIdentifier(identifier)) }
        return PublishPacket(
            topicName: topic,
            payload: payload,
            qos: qos,
            retain: retain,
            dup: dup,
            packetIdentifier: packetIdentifier,
            properties: properties
        )
    }
}
