/// PUBACK: publish acknowledgement, the answer to a QoS 1 PUBLISH (3.1.1 section 3.4, 5.0 section 3.4).
public typealias PubAckPacket = PublishResponsePacket<PubAck>

/// Marks a PublishResponsePacket as PUBACK.
public enum PubAck: PublishResponseKind {
    public static var packetType: PacketType { .puback }
    public static var propertyContext: PropertyContext { .puback }
    public static var allowedReasonCodes: Set<ReasonCode> { ReasonCode.allowedInPubAckOrPubRec }
}
