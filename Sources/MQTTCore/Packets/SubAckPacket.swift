import NIOCore

/// SUBACK: one reason code per topic filter of a SUBSCRIBE (3.1.1 section 3.9, 5.0 section 3.9).
///
/// In 3.1.1 the codes are 0x00, 0x01, 0x02 (granted QoS) and 0x80 (failure); any 5.0 failure
/// code is written as 0x80 there.
public struct SubAckPacket: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCodes: [ReasonCode]
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCodes: [ReasonCode], properties: Properties = []) {
        self.packetIdentifier = packetIdentifier
        self.reasonCodes = reasonCodes
        self.properties = properties
    }
}

extension SubAckPacket {
    private static let allowedIn311: Set<ReasonCode> = [.grantedQoS0, .grantedQoS1, .grantedQoS2, .unspecifiedError]

    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> SubAckPacket {
        let packetIdentifier = try buffer.readMQTTPacketIdentifier()
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .suback) : []
        let allowed = version == .v5 ? ReasonCode.allowedInSubAck : allowedIn311
        var reasonCodes: [ReasonCode] = []
        while buffer.readableBytes > 0 {
            reasonCodes.append(try ReasonCode.read(try buffer.readMQTTByte(), allowed: allowed, in: "SUBACK"))
        }
        guard !reasonCodes.isEmpty else { throw MQTTDecodingError(.malformed, "SUBACK without reason codes") }
        return SubAckPacket(packetIdentifier: packetIdentifier, reasonCodes: reasonCodes, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        2 + reasonCodes.count + (version == .v5 ? try properties.encodedSize() : 0)
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        if version == .v5 { properties.write(to: &buffer) }
        for code in reasonCodes {
            let byte = version == .v5 || !code.isFailure ? code.rawValue : ReasonCode.unspecifiedError.rawValue
            buffer.writeInteger(byte)
        }
    }
}
