/// PUBCOMP: publish complete, the last packet of a QoS 2 flow (3.1.1 section 3.7, 5.0 section 3.7).
public typealias PubCompPacket = PublishResponsePacket<PubComp>

/// Marks a PublishResponsePacket as PUBCOMP.
public enum PubComp: PublishResponseKind {
    public static var packetType: PacketType { .pubcomp }
    public static var propertyContext: PropertyContext { .pubcomp }
    public static var allowedReasonCodes: Set<ReasonCode> { ReasonCode.allowedInPubRelOrPubComp }
}
