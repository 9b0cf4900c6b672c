/// The MQTT protocol level carried in CONNECT.
public enum MQTTProtocolVersion: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// MQTT 3.1 (protocol level 3, protocol name `MQIsdp`): the packets of 3.1.1, except that
    /// CONNACK has no session-present flag and the client identifier may not be empty.
    case v3_1 = 3
    /// MQTT 3.1.1 (protocol level 4).
    case v3_1_1 = 4
    /// MQTT 5.0 (protocol level 5).
    case v5 = 5

    public var description: String {
        switch self {
        case .v3_1: "3.1"
        case .v3_1_1: "3.1.1"
        case .v5: "5.0"
        }
    }

    /// The protocol name CONNECT carries at this level: `MQIsdp` for 3.1, `MQTT` otherwise.
    public var protocolName: String {
        self == .v3_1 ? "MQIsdp" : "MQTT"
    }
}
