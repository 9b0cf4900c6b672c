/// Why bytes from the network could not be decoded into an MQTT packet.
///
/// Every kind maps to the MQTT 5.0 reason code a peer should be told (``reasonCode``);
/// ``detail`` says in words what was wrong, for a log line.
public struct MQTTDecodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as an extensible set of values.
    public struct Kind: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case reservedPacketType
            case invalidFixedHeaderFlags
            case variableByteIntegerTooLong
            case remainingLengthMismatch
            case invalidUTF8
            case nullCharacter
            case wildcardInTopicName
            case emptyTopicName
            case invalidQoS
            case packetIdentifierZero
            case noTopicFilters
            case propertyNotAllowed
            case duplicateProperty
            case propertyLengthOverrun
            case unknownProperty
            case invalidPropertyValue
            case unexpectedBody
            case packetTooLarge
            case invalidProtocolName
            case unsupportedProtocolVersion
            case invalidConnectFlags
            case invalidReasonCode
            case invalidSubscriptionOptions
            case firstPacketNotConnect
            case malformed
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// Packet type 0, or 15 (AUTH) in MQTT 3.1.1.
        public static let reservedPacketType = Kind(.reservedPacketType)
        /// The low nibble of the first byte is not what the packet type requires.
        public static let invalidFixedHeaderFlags = Kind(.invalidFixedHeaderFlags)
        /// A variable byte integer runs over four bytes.
        public static let variableByteIntegerTooLong = Kind(.variableByteIntegerTooLong)
        /// The content ends before, or goes on after, the remaining length.
        public static let remainingLengthMismatch = Kind(.remainingLengthMismatch)
        /// A string is not well-formed UTF-8.
        public static let invalidUTF8 = Kind(.invalidUTF8)
        /// A string holds U+0000.
        public static let nullCharacter = Kind(.nullCharacter)
        /// A topic name holds `+` or `#`.
        public static let wildcardInTopicName = Kind(.wildcardInTopicName)
        /// A topic name is empty where it may not be.
        public static let emptyTopicName = Kind(.emptyTopicName)
        /// A QoS of 3.
        public static let invalidQoS = Kind(.invalidQoS)
        /// Packet identifier 0 where one is required.
        public static let packetIdentifierZero = Kind(.packetIdentifierZero)
        /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter.
        public static let noTopicFilters = Kind(.noTopicFilters)
        /// A property that may not appear in this packet.
        public static let propertyNotAllowed = Kind(.propertyNotAllowed)
        /// A property that may appear once appears again.
        public static let duplicateProperty = Kind(.duplicateProperty)
        /// A property, or the property length, runs past the end of its space.
        public static let propertyLengthOverrun = Kind(.propertyLengthOverrun)
        /// A property identifier the specification does not define.
        public static let unknownProperty = Kind(.unknownProperty)
        /// A property value out of its allowed range (e.g. receive maximum 0).
        public static let invalidPropertyValue = Kind(.invalidPropertyValue)
        /// A packet that must be empty (PINGREQ, PINGRESP, 3.1.1 DISCONNECT) has a body.
        public static let unexpectedBody = Kind(.unexpectedBody)
        /// The packet is larger than the configured maximum packet size.
        public static let packetTooLarge = Kind(.packetTooLarge)
        /// CONNECT does not name the protocol "MQTT".
        public static let invalidProtocolName = Kind(.invalidProtocolName)
        /// CONNECT asks for a protocol level other than 4 or 5.
        public static let unsupportedProtocolVersion = Kind(.unsupportedProtocolVersion)
        /// CONNECT flags break a rule (reserved bit, will QoS/retain without will, password without user in 3.1.1).
        public static let invalidConnectFlags = Kind(.invalidConnectFlags)
        /// A reason code the packet may not carry.
        public static let invalidReasonCode = Kind(.invalidReasonCode)
        /// Reserved subscription option bits set, or retain handling 3.
        public static let invalidSubscriptionOptions = Kind(.invalidSubscriptionOptions)
        /// A server received something other than CONNECT first.
        public static let firstPacketNotConnect = Kind(.firstPacketNotConnect)
        /// Any other structural error.
        public static let malformed = Kind(.malformed)

        /// The MQTT 5.0 reason code that tells a peer about this error.
        public var reasonCode: ReasonCode {
            switch base {
            case .packetTooLarge: .packetTooLarge
            case .unsupportedProtocolVersion: .unsupportedProtocolVersion
            case .duplicateProperty, .propertyNotAllowed, .invalidPropertyValue, .noTopicFilters, .emptyTopicName,
                .firstPacketNotConnect, .invalidSubscriptionOptions:
                .protocolError
            default: .malformedPacket
            }
        }

        public var description: String { "\(base)" }
    }

    /// What went wrong.
    public let kind: Kind
    /// What went wrong, in words.
    public let detail: String

    public init(_ kind: Kind, _ detail: String) {
        self.kind = kind
        self.detail = detail
    }

    /// The MQTT 5.0 reason code that tells a peer about this error.
    public var reasonCode: ReasonCode { kind.reasonCode }

    public var description: String { "\(detail) (\(kind.reasonCode))" }
}

/// Why a packet could not be encoded.
public struct MQTTEncodingError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What was too long, in words.
    public let detail: String

    public init(_ detail: String) { self.detail = detail }

    public var description: String { detail }
}
