import NIOCore

/// PUBLISH: an application message, in either direction (3.1.1 section 3.3, 5.0 section 3.3).
public struct PublishPacket: Sendable, Hashable {
    /// May be empty in 5.0 when the ``Properties/topicAlias`` property names the topic.
    public var topicName: String
    /// The application message; a slice of the received bytes, not a copy.
    public var payload: ByteBuffer
    public var qos: QoS
    public var retain: Bool
    /// Set on a re-delivery of a QoS 1 or 2 message.
    public var dup: Bool
    /// Present for QoS 1 and 2, absent for QoS 0.
    public var packetIdentifier: UInt16?
    public var properties: Properties

    public init(
        topicName: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        dup: Bool = false,
        packetIdentifier: UInt16? = nil,
        properties: Properties = []
    ) {
        self.topicName = topicName
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.dup = dup
        self.packetIdentifier = packetIdentifier
        self.properties = properties
    }
}

extension PublishPacket {
    var flags: UInt8 {
        (dup ? 0x08 : 0) | (qos.rawValue << 1) | (retain ? 0x01 : 0)
    }

    static func read(flags: UInt8, from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> PublishPacket {
        guard let qos = QoS(rawValue: (flags >> 1) & 0x03) else {
            throw MQTTDecodingError(.invalidQoS, "PUBLISH with QoS 3")
        }
        let dup = flags & 0x08 != 0
        if dup && qos == .atMostOnce {
            throw MQTTDecodingError(.invalidFixedHeaderFlags, "DUP set on a QoS 0 PUBLISH")
        }
        let topicName = try buffer.readMQTTTopicName()
        let packetIdentifier = qos == .atMostOnce ? nil : try buffer.readMQTTPacketIdentifier()
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .publish) : []
        if topicName.isEmpty && (version != .v5 || properties.topicAlias == nil) {
            throw MQTTDecodingError(.emptyTopicName, "PUBLISH with an empty topic name and no topic alias")
        }
        let payload = buffer.readSlice(length: buffer.readableBytes)!
        return PublishPacket(
            topicName: topicName,
            payload: payload,
            qos: qos,
            retain: flags & 0x01 != 0,
            dup: dup,
            packetIdentifier: packetIdentifier,
            properties: properties
        )
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        var size = try EncodedSize.string(topicName, "topic name")
        if qos != .atMostOnce {
            guard let packetIdentifier, packetIdentifier != 0 else {
                throw MQTTEncodingError("a QoS \(qos.rawValue) PUBLISH needs a non-zero packet identifier")
            }
            size += 2
        }
        if version == .v5 { size += try properties.encodedSize() }
        return size + payload.readableBytes
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeMQTTString(topicName)
        if qos != .atMostOnce, let packetIdentifier { buffer.writeInteger(packetIdentifier) }
        if version == .v5 { properties.write(to: &buffer) }
        buffer.writeImmutableBuffer(payload)
    }
}
