import NIOCore

/// UNSUBSCRIBE: a client removes subscriptions (3.1.1 section 3.10, 5.0 section 3.10).
public struct UnsubscribePacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var topicFilters: [String]
    public var properties: Properties

    public init(packetIdentifier: UInt16, topicFilters: [String], properties: Properties = []) {
        self.packetIdentifier = packetIdentifier
        self.topicFilters = topicFilters
        self.properties = properties
    }
}

extension UnsubscribePacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> UnsubscribePacket {
        let packetIdentifier = try buffer.readMQTTPacketIdentifier()
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .unsubscribe) : []
        var topicFilters: [String] = []
        while buffer.readableBytes > 0 { topicFilters.append(try buffer.readMQTTString()) }
        guard !topicFilters.isEmpty else { throw MQTTDecodingError(.noTopicFilters, "UNSUBSCRIBE without topic filters") }
        return UnsubscribePacket(packetIdentifier: packetIdentifier, topicFilters: topicFilters, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        var size = 2
        if version == .v5 { size += try properties.encodedSize() }
        for filter in topicFilters { size += try EncodedSize.string(filter, "topic filter") }
        return size
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for filter in topicFilters { buffer.writeMQTTString(filter) }
    }
}
