import NIOCore

/// AUTH: one step of MQTT 5.0 enhanced authentication (5.0 section 3.15); packet type 15 is reserved in 3.1.1.
public struct AuthPacket: Sendable, Hashable {
    /// Success, continue authentication or re-authenticate.
    public var reasonCode: ReasonCode
    /// Authentication method and data, reason string, user properties.
    public var properties: Properties

    public init(reasonCode: ReasonCode = .success, properties: Properties = []) {
        self.reasonCode = reasonCode
        self.properties = properties
    }
}

extension AuthPacket {
    static func read(from buffer: inout ByteBuffer) throws(MQTTDecodingError) -> AuthPacket {
        let (code, properties) = try ReasonCode.readOptionalWithProperties(from: &buffer, allowed: ReasonCode.allowedInAuth, context: .auth)
        return AuthPacket(reasonCode: code, properties: properties)
    }

    func bodySize() throws(MQTTEncodingError) -> Int {
        try ReasonCode.optionalWithPropertiesSize(reasonCode, properties)
    }

    func writeBody(to buffer: inout ByteBuffer) {
        ReasonCode.writeOptionalWithProperties(reasonCode, properties, to: &buffer)
    }
}
