/// PUBREL: publish release, the answer to PUBREC (3.1.1 section 3.6, 5.0 section 3.6).
public typealias PubRelPacket = PublishResponsePacket<PubRel>

/// Marks a PublishResponsePacket as PUBREL.
public enum PubRel: PublishResponseKind {
    public static var packetType: PacketType { .pubrel }
    public static var propertyContext: PropertyContext { .pubrel }
    public static var allowedReasonCodes: Set<ReasonCode> { ReasonCode.allowedInPubRelOrPubComp }
}
