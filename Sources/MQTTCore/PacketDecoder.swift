import NIOCore

/// Decodes a byte stream into ``MQTTPacket``s, split at any byte boundary.
///
/// A server-side decoder starts without a protocol version, accepts only CONNECT first and
/// takes the version from it; a client-side decoder is given the version it connected with.
public struct MQTTPacketDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = MQTTPacket

    /// The protocol version of the connection, `nil` until CONNECT has been decoded.
    public private(set) var version: MQTTProtocolVersion?
    /// The largest whole packet accepted; larger ones fail with ``MQTTDecodingError/Kind/packetTooLarge``.
    public var maximumPacketSize: Int

    /// - Parameters:
    ///   - version: the version, when known in advance (clients); `nil` to learn it from CONNECT (servers).
    ///   - maximumPacketSize: the largest whole packet to accept, fixed header included.
    public init(version: MQTTProtocolVersion? = nil, maximumPacketSize: Int = maximumVariableByteInteger + 5) {
        self.version = version
        self.maximumPacketSize = maximumPacketSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws(MQTTDecodingError) -> MQTTPacket? {
        guard let packet = try MQTTPacket.read(from: &buffer, version: version, maximumPacketSize: maximumPacketSize) else {
            return nil
        }
        if version == nil, case .connect(let connect) = packet { version = connect.protocolVersion }
        return packet
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> MQTTPacket? {
        try decode(buffer: &buffer)
    }
}
