import NIOCore

/// DISCONNECT: the last packet on a connection (3.1.1 section 3.14, 5.0 section 3.14).
///
/// 3.1.1 sends it from client to server only, with no body; 5.0 sends it both ways with a
/// reason code and properties (session expiry interval, reason string, server reference).
public struct DisconnectPacket: Sendable, Hashable {
    public var reasonCode: ReasonCode
    public var properties: Properties

    public init(reasonCode: ReasonCode = .normalDisconnection, properties: Properties = []) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension DisconnectPacket {
    static func read(from buffer: inout ByteBuffer, version: MQTTProtocolVersion) throws(MQTTDecodingError) -> DisconnectPacket {
        guard version == .v5 else {
            guard buffer.readableBytes == 0 else {
                throw MQTTDecodingError(.unexpectedBody, "a 3.1.1 DISCONNECT has a body")
            }
            return DisconnectPacket()
        }
        let (code, properties) = try ReasonCode.readOptionalWithProperties(
            from: &buffer,
            allowed: ReasonCode.allowedInDisconnect,
            context: .disconnect
        )
        return DisconnectPacket(reasonCode: code, properties: properties)
    }

    func bodySize(version: MQTTProtocolVersion) throws(MQTTEncodingError) -> Int {
        version == .v5 ? try ReasonCode.optionalWithPropertiesSize(reasonCode, properties) : 0
    }

    func writeBody(to buffer: inout ByteBuffer, version: MQTTProtocolVersion) {
        if version == .v5 { ReasonCode.writeOptionalWithProperties(reasonCode, properties, to: &buffer) }
    }
}

extension ReasonCode {
    /// Reads the body of DISCONNECT or AUTH: an empty body means success, a one-byte body has no properties.
    static func readOptionalWithProperties(
        from buffer: inout ByteBuffer,
        allowed: Set<ReasonCode>,
        context: PropertyContext
    ) throws(MQTTDecodingError) -> (ReasonCode, Properties) {
        guard buffer.readableBytes > 0 else { return (.success, []) }
        let code = try ReasonCode.read(try buffer.readMQTTByte(), allowed: allowed, in: "\(context)")
        let properties = buffer.readableBytes > 0 ? try Properties.read(from: &buffer, context: context) : []
        return (code, properties)
    }

    static func optionalWithPropertiesSize(_ code: ReasonCode, _ properties: Properties) throws(MQTTEncodingError) -> Int {
        if properties.isEmpty { return code == .success ? 0 : 1 }
        return 1 + (try properties.encodedSize())
    }

    static func writeOptionalWithProperties(_ code: ReasonCode, _ properties: Properties, to buffer: inout ByteBuffer) {
        guard code != .success || !properties.isEmpty else { return }
        buffer.writeInteger(code.rawValue)
        if !properties.isEmpty { properties.write(to: &buffer) }
    }
}
