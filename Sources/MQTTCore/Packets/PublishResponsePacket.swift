import NIOCore

/// What tells PUBACK, PUBREC, PUBREL and PUBCOMP apart: they share one layout.
public protocol PublishResponseKind: Sendable {
    static var packetType: PacketType { get }
    static var propertyContext: PropertyContext { get }
    static var allowedReasonCodes: Set<ReasonCode> { get }
}

/// The body of PUBACK, PUBREC, PUBREL and PUBCOMP: packet identifier, and in 5.0 a reason code and properties.
///
/// In 5.0 the reason code and properties may be left out when the code is success and there
/// are no properties; the property length may be left out when there are no properties.
public struct PublishResponsePacket<Kind: PublishResponseKind>: Sendable, Hashable {
    public var packetIdentifier: UInt16
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(packetIdentifier: UInt16, reasonCode: ReasonCode = .success, properties: Properties = []) {
        self.packetIdentifier = packetIdentifier
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension PublishResponsePacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> Self {
        let packetIdentifier = try buffer.readMQTTPacketIdentifier()
        guard version == .v5, buffer.readableBytes > 0 else { return Self(packetIdentifier: packetIdentifier) }
        let reasonCode = try ReasonCode.read(
            try buffer.readMQTTByte(),
            allowed: Kind.allowedReasonCodes,
            in: "\(Kind.packetType)".uppercased()
        )
        let properties = buffer.readableBytes > 0 ? try Properties.read(from: &buffer, context: Kind.propertyContext) : []
        return Self(packetIdentifier: packetIdentifier, reasonCode: reasonCode, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        guard version == .v5 else { return 2 }
        if properties.isEmpty { return reasonCode == .success ? 2 : 3 }
        return 3 + (try properties.encodedSize())
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(packetIdentifier)
        guard version == .v5, reasonCode != .success || !properties.isEmpty else { return }
        buffer.writeInteger(reasonCode.rawValue)
        if !properties.isEmpty { properties.write(to: &buffer) }
    }
}
