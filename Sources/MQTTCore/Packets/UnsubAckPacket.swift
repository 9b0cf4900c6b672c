import NIOCore

/// UNSUBACK: the answer to UNSUBSCRIBE (3.1.1 section 3.11, 5.0 section 3.11).
///
/// 3.1.1 carries the packet identifier only; 5.0 adds properties and a reason code per filter.
public struct UnsubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    /// Empty in 3.1.1.
    public var reasonCodes: [ReasonCode]
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode] = [], properties: Properties = []) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

extension UnsubAckPacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> UnsubAckPacket {
        let packetIdentifier = try buffer.readMQTTPacketIdentifier()
        guard version == .v5 else { return UnsubAckPacket(packetIdentifier: packetIdentifier) }
        let properties = try Properties.read(from: &buffer, context: .unsuback)
        var reasonCodes: [ReasonCode] = []
        while buffer.readableBytes > 0 {
            reasonCodes.append(try ReasonCode.read(try buffer.readMQTTByte(), allowed: ReasonCode.allowedInUnsubAck, in: "UNSUBACK"))
        }
        guard !reasonCodes.isEmpty else { throw MQTTDecodingError(.malformed, "UNSUBACK without reason codes") }
        return UnsubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        version == .v5 ? 2 + (try properties.encodedSize()) + reasonCodes.count : 2
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        guard version == .v5 else { return }
        properties.write(to: &buffer)
        for code in reasonCodes { buffer.writeInteger(code.rawValue) }
    }
}
