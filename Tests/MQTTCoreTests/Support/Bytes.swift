import MQTTCore
import NIOCore

/// Moves packets between ``MQTTPacket`` values and plain byte arrays, so that wire-format
/// tests can compare against bytes written out by hand.
enum WireBytes {
    /// Encodes `packet` for a connection of `version` into a new array.
    static func encode(_ packet: MQTTPacket, version: MQTTProtocolVersion) throws -> [UInt8] {
        var buffer = ByteBuffer()
        try packet.write(to: &buffer, version: version)
        return Array(buffer.readableBytesView)
    }

    /// Decodes one packet from the front of `bytes`.
    ///
    /// - Returns: the packet (`nil` when `bytes` hold an incomplete packet) and how many bytes were left unread.
    static func decode(_ bytes: [UInt8], version: MQTTProtocolVersion?) throws -> (packet: MQTTPacket?, unread: Int) {
        var buffer = ByteBuffer(bytes: bytes)
        let packet = try MQTTPacket.read(from: &buffer, version: version)
        return (packet, buffer.readableBytes)
    }
}
