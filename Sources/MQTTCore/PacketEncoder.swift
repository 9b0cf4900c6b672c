import NIOCore

/// Encodes ``MQTTPacket``s for a connection of a known protocol version.
public struct MQTTPacketEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = MQTTPacket

    public var version: MQTTProtocolVersion

    public init(version: MQTTProtocolVersion) { self.version = version }

    public func encode(data: MQTTPacket, out: inout ByteBuffer) throws {
        try data.write(to: &out, version: version)
    }
}
