/// The control packet type in the high nibble of the fixed header's first byte.
public enum PacketType: UInt8, Sendable, Hashable, CaseIterable {
    case connect = 1
    case connack = 2
    case publish = 3
    case puback = 4
    case pubrec = 5
    case pubrel = 6
    case pubcomp = 7
    case subscribe = 8
    case suback = 9
    case unsubscribe = 10
    case unsuback = 11
    case pingreq = 12
    case pingresp = 13
    case disconnect = 14
    /// AUTH exists in MQTT 5.0 only; in 3.1.1 the value 15 is reserved.
    case auth = 15

    /// The flag bits every packet type but PUBLISH must carry in the low nibble.
    var requiredFlags: UInt8 {
        switch self {
        case .pubrel, .subscribe, .unsubscribe: 0b0010
        default: 0
        }
    }

    /// Whether a client may send this packet to a server.
    public var isSentByClient: Bool {
        switch self {
        case .connect, .publish, .puback, .pubrec, .pubrel, .pubcomp, .subscribe, .unsubscribe, .pingreq, .disconnect, .auth: true
        case .connack, .suback, .unsuback, .pingresp: false
        }
    }

    /// Whether a server may send this packet to a client.
    public var isSentByServer: Bool {
        switch self {
        case .connack, .publish, .puback, .pubrec, .pubrel, .pubcomp, .suback, .unsuback, .pingresp, .disconnect, .auth: true
        case .connect, .subscribe, .unsubscribe, .pingreq: false
        }
    }
}
