import NIOCore

/// Any MQTT control packet, for either protocol version.
///
/// PINGREQ and PINGRESP have no variable header or payload, so they need no type of their own.
public enum MQTTPacket: Sendable, Hashable {
    /// Indirect: CONNECT is large and rare, and keeping it inline would make every packet as large.
    indirect case connect(ConnectPacket)
    case connack(ConnAckPacket)
    case publish(PublishPacket)
    case puback(PubAckPacket)
    case pubrec(PubRecPacket)
    case pubrel(PubRelPacket)
    case pubcomp(PubCompPacket)
    case subscribe(SubscribePacket)
    case suback(SubAckPacket)
    case unsubscribe(UnsubscribePacket)
    case unsuback(UnsubAckPacket)
    case pingreq
    case pingresp
    case disconnect(DisconnectPacket)
    case auth(AuthPacket)

    /// The control packet type.
    public var type: PacketType {
        switch self {
        case .connect: .connect
        case .connack: .connack
        case .publish: .publish
        case .puback: .puback
        case .pubrec: .pubrec
        case .pubrel: .pubrel
        case .pubcomp: .pubcomp
        case .subscribe: .subscribe
        case .suback: .suback
        case .unsubscribe: .unsubscribe
        case .unsuback: .unsuback
        case .pingreq: .pingreq
        case .pingresp: .pingresp
        case .disconnect: .disconnect
        case .auth: .auth
        }
    }
}

// MARK: Decoding

extension MQTTPacket {
    /// Decodes one packet from the front of `buffer`.
    ///
    /// Returns `nil`, leaving the buffer alone, when the packet is not complete yet. The
    /// remaining length is checked against `maximumPacketSize` as soon as the fixed header is
    /// complete, so an oversized packet is refused before its body is buffered.
    ///
    /// - Parameters:
    ///   - buffer: bytes received.
    ///   - version: the protocol version of the connection; `nil` before CONNECT, when only CONNECT is accepted.
    ///   - maximumPacketSize: the largest whole packet (fixed header included) to accept.
    public static func read(
        from buffer: inout ByteBuffer,
        version: MQTTProtocolVersion?,
        maximumPacketSize: Int = maximumVariableByteInteger + 5
    ) throws(MQTTDecodingError) -> MQTTPacket? {
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return nil }
        let typeValue = first >> 4
        guard let type = PacketType(rawValue: typeValue), !(type == .auth && version != nil && version != .v5) else {
            throw MQTTDecodingError(.reservedPacketType, "reserved packet type \(typeValue)")
        }
        let flags = first & 0x0F
        if type != .publish && flags != type.requiredFlags {
            throw MQTTDecodingError(.invalidFixedHeaderFlags, "\(type) with fixed header flags 0x\(String(flags, radix: 16))")
        }
        guard let version = version ?? (type == .connect ? .v5 : nil) else {
            throw MQTTDecodingError(.firstPacketNotConnect, "first packet is \(type), not CONNECT")
        }
        let remainingLength: Int
        let headerLength: Int
        switch buffer.peekMQTTVariableByteInteger(at: buffer.readerIndex + 1) {
        case .needMoreBytes: return nil
        case .tooLong: throw MQTTDecodingError(.variableByteIntegerTooLong, "remaining length longer than 4 bytes")
        case .value(let value, let length):
            remainingLength = value
            headerLength = 1 + length
        }
        guard headerLength + remainingLength <= maximumPacketSize else {
            throw MQTTDecodingError(
                .packetTooLarge,
                "\(type) of \(headerLength + remainingLength) bytes exceeds the maximum packet size \(maximumPacketSize)"
            )
        }
        guard buffer.readableBytes >= headerLength + remainingLength else { return nil }
        buffer.moveReaderIndex(forwardBy: headerLength)
        var body = buffer.readSlice(length: remainingLength)!
        let packet = try readBody(type: type, flags: flags, from: &body, version: version)
        guard body.readableBytes == 0 else {
            throw MQTTDecodingError(.remainingLengthMismatch, "\(type) has \(body.readableBytes) bytes beyond its content")
        }
        return packet
    }

    private static func readBody(
        type: PacketType,
        flags: UInt8,
        from body: inout ByteBuffer,
        version: MQTTProtocolVersion
    ) throws(MQTTDecodingError) -> MQTTPacket {
        switch type {
        case .connect: return .connect(try ConnectPacket.read(from: &body))
        case .connack: return .connack(try ConnAckPacket.read(from: &body, version: version))
        case .publish: return .publish(try PublishPacket.read(flags: flags, from: &body, version: version))
        case .puback: return .puback(try PubAckPacket.read(from: &body, version: version))
        case .pubrec: return .pubrec(try PubRecPacket.read(from: &body, version: version))
        case .pubrel: return .pubrel(try PubRelPacket.read(from: &body, version: version))
        case .pubcomp: return .pubcomp(try PubCompPacket.read(from: &body, version: version))
        case .subscribe: return .subscribe(try SubscribePacket.read(from: &body, version: version))
        case .suback: return .suback(try SubAckPacket.read(from: &body, version: version))
        case .unsubscribe: return .unsubscribe(try UnsubscribePacket.read(from: &body, version: version))
        case .unsuback: return .unsuback(try UnsubAckPacket.read(from: &body, version: version))
        case .pingreq, .pingresp:
            guard body.readableBytes == 0 else {
                throw MQTTDecodingError(.unexpectedBody, "\(type) with a body of \(body.readableBytes) bytes")
            }
            return type == .pingreq ? .pingreq : .pingresp
        case .disconnect: return .disconnect(try DisconnectPacket.read(from: &body, version: version))
        case .auth: return .auth(try AuthPacket.read(from: &body))
        }
    }
}

// MARK: Encoding

extension MQTTPacket {
    private func fixedHeaderFlags() -> UInt8 {
        if case .publish(let publish) = self { return publish.flags }
        return type.requiredFlags
    }

    private func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        switch self {
        case .connect(let p): try p.bodySize()
        case .connack(let p): try p.bodySize(version: version)
        case .publish(let p): try p.bodySize(version: version)
        case .puback(let p): try p.bodySize(version: version)
        case .pubrec(let p): try p.bodySize(version: version)
        case .pubrel(let p): try p.bodySize(version: version)
        case .pubcomp(let p): try p.bodySize(version: version)
        case .subscribe(let p): try p.bodySize(version: version)
        case .suback(let p): try p.bodySize(version: version)
        case .unsubscribe(let p): try p.bodySize(version: version)
        case .unsuback(let p): try p.bodySize(version: version)
        case .pingreq, .pingresp: 0
        case .disconnect(let p): try p.bodySize(version: version)
        case .auth(let p): try p.bodySize()
        }
    }

    private func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        switch self {
        case .connect(let p): p.writeBody(to: &buffer)
        case .connack(let p): p.writeBody(to: &buffer, version: version)
        case .publish(let p): p.writeBody(to: &buffer, version: version)
        case .puback(let p): p.writeBody(to: &buffer, version: version)
        case .pubrec(let p): p.writeBody(to: &buffer, version: version)
        case .pubrel(let p): p.writeBody(to: &buffer, version: version)
        case .pubcomp(let p): p.writeBody(to: &buffer, version: version)
        case .subscribe(let p): p.writeBody(to: &buffer, version: version)
        case .suback(let p): p.writeBody(to: &buffer, version: version)
        case .unsubscribe(let p): p.writeBody(to: &buffer, version: version)
        case .unsuback(let p): p.writeBody(to: &buffer, version: version)
        case .pingreq, .pingresp: break
        case .disconnect(let p): p.writeBody(to: &buffer, version: version)
        case .auth(let p): p.writeBody(to: &buffer)
        }
    }

    /// The number of bytes ``write(to:version:)`` writes, fixed header included.
    public func encodedSize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        let body = try checkedBodySize(version: version)
        return 1 + EncodedSize.variableByteInteger(body) + body
    }

    private func checkedBodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        if version != .v5, case .auth = self { throw MQTTEncodingError("AUTH does not exist in MQTT \(version)") }
        let body = try bodySize(version: version)
        guard body <= maximumVariableByteInteger else {
            throw MQTTEncodingError("\(type) body of \(body) bytes exceeds the 268,435,455 bytes MQTT allows")
        }
        return body
    }

    /// Appends the packet to `buffer`, growing it once to the exact size first.
    ///
    /// Throws, writing nothing, when a field does not fit the wire format (a string over
    /// 65,535 bytes, a QoS 1 PUBLISH without packet identifier, a packet over 256 MB).
    public func write(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTEncodingError) {
        let body = try checkedBodySize(version: version)
        buffer.reserveCapacity(minimumWritableBytes: 1 + EncodedSize.variableByteInteger(body) + body)
        buffer.writeInteger(type.rawValue << 4 | fixedHeaderFlags())
        buffer.writeMQTTVariableByteInteger(body)
        writeBody(to: &buffer, version: version)
    }
}
