/// PUBREC: publish received, the first answer to a QoS 2 PUBLISH (3.1.1 section 3.5, 5.0 section 3.5).
public typealias PubRecPacket = PublishResponsePacket<PubRec>

/// Marks a PublishResponsePacket as PUBREC.
public enum PubRec: PublishResponseKind {
    public static var packetType: PacketType { .pubrec }
    public static var propertyContext: PropertyContext { .pubrec }
    public static var allowedReasonCodes: Set<ReasonCode> { ReasonCode.allowedInPubAckOrPubRec }
}
