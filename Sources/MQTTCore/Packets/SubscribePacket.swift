import NIOCore

/// What a subscriber asks for with each topic filter (5.0 section 3.8.3.1; 3.1.1 has the QoS only).
public struct SubscriptionOptions: Sendable, Hashable {
    /// When retained messages are sent for a new subscription (5.0).
    public enum RetainHandling: UInt8, Sendable, Hashable {
        /// Send retained messages whenever the subscription is made.
        case sendOnSubscribe = 0
        /// Send retained messages only if the subscription did not exist before.
        case sendOnNewSubscribe = 1
        /// Never send retained messages for this subscription.
        case doNotSend = 2
    }

    /// The highest QoS the subscriber wants messages at.
    public var qos: QoS
    /// Do not send the client its own messages (5.0).
    public var noLocal: Bool
    /// Keep the RETAIN flag as published instead of clearing it on live messages (5.0).
    public var retainAsPublished: Bool
    public var retainHandling: RetainHandling

    public init(
        qos: QoS = .atMostOnce,
        noLocal: Bool = false,
        retainAsPublished: Bool = false,
        retainHandling: RetainHandling = .sendOnSubscribe
    ) {
        self.qos = qos
        self.noLocal = noLocal
        self.retainAsPublished = retainAsPublished
        self.retainHandling = retainHandling
    }

    init(byte: UInt8, version: MQTTProtocolVersion) throws(MQTTDecodingError) {
        guard let qos = QoS(rawValue: byte & 0x03) else {
            throw MQTTDecodingError(.invalidQoS, "subscription with QoS 3")
        }
        switch version {
        case .v3_1, .v3_1_1:
            guard byte & 0xFC == 0 else {
                throw MQTTDecodingError(.malformed, "reserved subscription option bits are set")
            }
            self.init(qos: qos)
        case .v5:
            guard byte & 0xC0 == 0 else {
                throw MQTTDecodingError(.malformed, "reserved subscription option bits 6-7 are set")
            }
            guard let retainHandling = RetainHandling(rawValue: (byte >> 4) & 0x03) else {
                throw MQTTDecodingError(.invalidSubscriptionOptions, "retain handling 3")
            }
            self.init(qos: qos, noLocal: byte & 0x04 != 0, retainAsPublished: byte & 0x08 != 0, retainHandling: retainHandling)
        }
    }

    func byte(version: MQTTProtocolVersion) -> UInt8 {
        guard version == .v5 else { return qos.rawValue }
        return qos.rawValue | (noLocal ? 0x04 : 0) | (retainAsPublished ? 0x08 : 0) | (retainHandling.rawValue << 4)
    }
}

/// One topic filter of a SUBSCRIBE with its options.
public struct Subscription: Sendable, Hashable {
    /// The filter as sent, possibly `$share/{group}/{filter}`; its syntax is checked by the receiver.
    public var topicFilter: String
    public var options: SubscriptionOptions

    public init(topicFilter: String, options: SubscriptionOptions = SubscriptionOptions()) {
        self.topicFilter = topicFilter
        self.options = options
    }
}

/// SUBSCRIBE: a client asks for messages on topic filters (3.1.1 section 3.8, 5.0 section 3.8).
public struct SubscribePacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var subscriptions: [Subscription]
    /// Subscription identifier and user properties (5.0).
    public var properties: Properties

    public init(packetIdentifier: UInt16, subscriptions: [Subscription], properties: Properties = []) {
        self.packetIdentifier = packetIdentifier
        self.subscriptions = subscriptions
        self.properties = properties
    }
}

extension SubscribePacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> SubscribePacket {
        let packetIdentifier = try buffer.readMQTTPacketIdentifier()
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .subscribe) : []
        var subscriptions: [Subscription] = []
        while buffer.readableBytes > 0 {
            let filter = try buffer.readMQTTString()
            let options = try SubscriptionOptions(byte: try buffer.readMQTTByte(), version: version)
            subscriptions.append(Subscription(topicFilter: filter, options: options))
        }
        guard !subscriptions.isEmpty else { throw MQTTDecodingError(.noTopicFilters, "SUBSCRIBE without topic filters") }
        return SubscribePacket(packetIdentifier: packetIdentifier, subscriptions: subscriptions, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        var size = 2
        if version == .v5 { size += try properties.encodedSize() }
        for subscription in subscriptions { size += 1 + (try EncodedSize.string(subscription.topicFilter, "topic filter")) }
        return size
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for subscription in subscriptions {
            buffer.writeMQTTString(subscription.topicFilter)
            buffer.writeInteger(subscription.options.byte(version: version))
        }
    }
}
