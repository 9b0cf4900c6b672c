import MQTTCore
import NIOCore

/// An application message received from the broker.
public struct MQTTMessage: Sendable, Hashable {
    /// The topic name it was published to (a topic alias already resolved).
    public var topic: String
    /// The payload: a slice of the received bytes, not a copy.
    public var payload: ByteBuffer
    /// The QoS it was delivered at (the lower of the published and the subscribed QoS).
    public var qos: QoS
    /// Set when the message is a retained one sent for a new subscription (or, with
    /// retain-as-published, when it was published with retain).
    public var retain: Bool
    /// MQTT 5 properties: user properties, response topic, correlation data, content type,
    /// message expiry, payload format, subscription identifiers. Empty in 3.1.1.
    public var properties: Properties
    /// The packet identifier the message arrived with (QoS 1 and 2), for display; the client
    /// acknowledges the message itself.
    public var packetIdentifier: UInt16?
    /// The connection it arrived on (counted from 1 by the client), for ``MQTTClient/acknowledge(_:)``;
    /// zero for messages made by the application.
    public internal(set) var connectionNumber: UInt64 = 0

    /// - Parameters:
    ///   - topic: the topic name.
    ///   - payload: the application message.
    ///   - qos: the QoS it was delivered at.
    ///   - retain: the retain flag as delivered.
    ///   - properties: MQTT 5 properties.
    ///   - packetIdentifier: the packet identifier it arrived with (QoS 1 and 2).
    public init(
        topic: String,
        payload: ByteBuffer,
        qos: QoS = .atMostOnce,
        retain: Bool = false,
        properties: Properties = [],
        packetIdentifier: UInt16? = nil
    ) {
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.retain = retain
        self.properties = properties
        self.packetIdentifier = packetIdentifier
    }

    /// The payload decoded as UTF-8.
    public var payloadString: String { String(buffer: payload) }
}

/// How a publish flow ended: PUBACK (QoS 1), PUBREC/PUBCOMP (QoS 2), or the write (QoS 0).
public struct PublishResult: Sendable, Hashable {
    /// The MQTT 5 reason code (always ``ReasonCode/success`` in 3.1.1 and at QoS 0). A code of
    /// 0x80 or above means the broker refused the message; 0x10 means nobody was subscribed.
    public var reasonCode: ReasonCode
    /// Reason string and user properties the broker sent with the acknowledgement (MQTT 5).
    public var properties: Properties

    /// A result with this reason code and these acknowledgement properties.
    public init(reasonCode: ReasonCode = .success, properties: Properties = []) {
        self.reasonCode = reasonCode
        self.properties = properties
    }

    /// Whether the broker accepted the message.
    public var isSuccess: Bool { !reasonCode.isFailure }
}
