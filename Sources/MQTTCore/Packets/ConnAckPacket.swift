import NIOCore

/// CONNACK: the server's answer to CONNECT (3.1.1 section 3.2, 5.0 section 3.2).
///
/// The outcome is kept as a 5.0 ``ReasonCode``; in 3.1.1 it travels as the closest
/// ``ConnectReturnCode``.
public struct ConnAckPacket: Sendable, Hashable {
    public var sessionPresent: Bool
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(sessionPresent: Bool = false, reasonCode: ReasonCode = .success, properties: Properties = []) {
        self.sessionPresent = sessionPresent
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension ConnAckPacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> ConnAckPacket {
        let flags = try buffer.readMQTTByte()
        // 3.1 has no acknowledge flags: the byte is reserved and not looked at.
        guard flags & 0xFE == 0 || version == .v3_1 else {
            throw MQTTDecodingError(.malformed, "reserved CONNACK acknowledge flag bits are set")
        }
        let code = try buffer.readMQTTByte()
        let reasonCode: ReasonCode
        switch version {
        case .v3_1, .v3_1_1:
            guard let returnCode = ConnectReturnCode(rawValue: code) else {
                throw MQTTDecodingError(.invalidReasonCode, "CONNACK return code \(code) is not defined in \(version)")
            }
            reasonCode = returnCode.reasonCode
        case .v5:
            reasonCode = try ReasonCode.read(code, allowed: ReasonCode.allowedInConnAck, in: "CONNACK")
        }
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .connack) : []
        return ConnAckPacket(sessionPresent: version != .v3_1 && flags & 0x01 != 0, reasonCode: reasonCode, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        version == .v5 ? 2 + (try properties.encodedSize()) : 2
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        buffer.writeInteger(UInt8(sessionPresent && version != .v3_1 ? 1 : 0))
        switch version {
        case .v3_1, .v3_1_1:
            buffer.writeInteger(ConnectReturnCode(reasonCode).rawValue)
        case .v5:
            buffer.writeInteger(reasonCode.rawValue)
            properties.write(to: &buffer)
        }
    }
}

extension ReasonCode {
    /// Reads a reason code byte that must be one of `allowed`.
    static func read(_ byte: UInt8, allowed: Set<ReasonCode>, in packet: String) throws(MQTTDecodingError) -> ReasonCode {
        guard let code = ReasonCode(rawValue: byte), allowed.contains(code) else {
            throw MQTTDecodingError(.invalidReasonCode, "reason code 0x\(String(byte, radix: 16)) is not allowed in \(packet)")
        }
        return code
    }
}
