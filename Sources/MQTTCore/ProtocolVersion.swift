/// The MQTT protocol level carried in CONNECT.
public enum MQTTProtocolVersion: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// MQTT 3.1.1 (protocol level 4).
    case v3_1_1 = 4
    /// MQTT 5.0 (protocol level 5).
    case v5 = 5

    public var description: String {
        switch self {
        case .v3_1_1: "3.1.1"
        case .v5: "5.0"
        }
    }
}
