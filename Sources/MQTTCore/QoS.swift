/// Quality of service of a PUBLISH, a will or a subscription.
public enum QoS: UInt8, Sendable, Hashable, Comparable, CaseIterable {
    /// At most once: fire and forget.
    case atMostOnce = 0
    /// At least once: PUBLISH, PUBACK.
    case atLeastOnce = 1
    /// Exactly once: PUBLISH, PUBREC, PUBREL, PUBCOMP.
    case exactlyOnce = 2

    public static func < (lhs: QoS, rhs: QoS) -> Bool { lhs.rawValue < rhs.rawValue }
}
