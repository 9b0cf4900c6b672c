/// An MQTT 5.0 reason code (specification section 2.4).
///
/// One byte that tells the outcome of an operation. Values below 0x80 mean success,
/// values from 0x80 mean failure. Some byte values carry different names in different
/// packets (0x00 is "Success", "Normal disconnection" and "Granted QoS 0"); the static
/// aliases below give those names.
public enum ReasonCode: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// 0x00: the operation succeeded (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH);
    /// also "Normal disconnection" (DISCONNECT) and "Granted QoS 0" (SUBACK).
    case success = 0x00
    /// 0x01: the subscription was accepted with a maximum QoS of 1 (SUBACK).
    case grantedQoS1 = 0x01
    /// 0x02: the subscription was accepted with a maximum QoS of 2 (SUBACK).
    case grantedQoS2 = 0x02
    /// 0x04: the client disconnects but wants its will published (DISCONNECT).
    case disconnectWithWillMessage = 0x04
    /// 0x10: the message was accepted but nobody subscribes to it (PUBACK, PUBREC).
    case noMatchingSubscribers = 0x10
    /// 0x11: there was no subscription to remove (UNSUBACK).
    case noSubscriptionExisted = 0x11
    /// 0x18: the authentication exchange goes on (AUTH).
    case continueAuthentication = 0x18
    /// 0x19: the client starts a re-authentication (AUTH).
    case reAuthenticate = 0x19
    /// 0x80: the receiver does not accept this and gives no more specific reason.
    case unspecifiedError = 0x80
    /// 0x81: the packet could not be parsed according to the specification.
    case malformedPacket = 0x81
    /// 0x82: the packet parsed but breaks a rule of the protocol.
    case protocolError = 0x82
    /// 0x83: the packet is valid but this implementation does not accept it.
    case implementationSpecificError = 0x83
    /// 0x84: the server does not speak the protocol level the client asked for (CONNACK).
    case unsupportedProtocolVersion = 0x84
    /// 0x85: the client identifier is valid UTF-8 but the server refuses it (CONNACK).
    case clientIdentifierNotValid = 0x85
    /// 0x86: the server refuses the user name or password (CONNACK).
    case badUserNameOrPassword = 0x86
    /// 0x87: the client may not do this.
    case notAuthorized = 0x87
    /// 0x88: the server cannot be used now (CONNACK).
    case serverUnavailable = 0x88
    /// 0x89: the server is busy; try again later.
    case serverBusy = 0x89
    /// 0x8A: the client is banned by administrative action (CONNACK).
    case banned = 0x8A
    /// 0x8B: the server is shutting down (DISCONNECT).
    case serverShuttingDown = 0x8B
    /// 0x8C: the authentication method is not supported or does not match the one in use.
    case badAuthenticationMethod = 0x8C
    /// 0x8D: nothing was received for 1.5 times the keep alive (DISCONNECT).
    case keepAliveTimeout = 0x8D
    /// 0x8E: another connection with the same client identifier took the session over (DISCONNECT).
    case sessionTakenOver = 0x8E
    /// 0x8F: the topic filter is well formed but not accepted.
    case topicFilterInvalid = 0x8F
    /// 0x90: the topic name is well formed but not accepted.
    case topicNameInvalid = 0x90
    /// 0x91: the packet identifier is already in use.
    case packetIdentifierInUse = 0x91
    /// 0x92: the packet identifier is not known (PUBREL, PUBCOMP).
    case packetIdentifierNotFound = 0x92
    /// 0x93: more QoS 1/2 publications are in flight than the receive maximum allows (DISCONNECT).
    case receiveMaximumExceeded = 0x93
    /// 0x94: the topic alias is 0 or larger than the maximum that was announced (DISCONNECT).
    case topicAliasInvalid = 0x94
    /// 0x95: the packet is larger than the maximum packet size.
    case packetTooLarge = 0x95
    /// 0x96: the rate of messages is too high (DISCONNECT).
    case messageRateTooHigh = 0x96
    /// 0x97: an administrative or implementation quota was exceeded.
    case quotaExceeded = 0x97
    /// 0x98: the connection is closed by administrative action (DISCONNECT).
    case administrativeAction = 0x98
    /// 0x99: the payload does not match the payload format indicator.
    case payloadFormatInvalid = 0x99
    /// 0x9A: the server does not support retained messages.
    case retainNotSupported = 0x9A
    /// 0x9B: the QoS is larger than the maximum QoS the server announced.
    case qosNotSupported = 0x9B
    /// 0x9C: the client should temporarily use another server (CONNACK, DISCONNECT).
    case useAnotherServer = 0x9C
    /// 0x9D: the client should permanently use another server (CONNACK, DISCONNECT).
    case serverMoved = 0x9D
    /// 0x9E: the server does not support shared subscriptions.
    case sharedSubscriptionsNotSupported = 0x9E
    /// 0x9F: the connection rate limit was exceeded.
    case connectionRateExceeded = 0x9F
    /// 0xA0: the maximum connect time for this connection was reached (DISCONNECT).
    case maximumConnectTime = 0xA0
    /// 0xA1: the server does not support subscription identifiers.
    case subscriptionIdentifiersNotSupported = 0xA1
    /// 0xA2: the server does not support wildcard subscriptions.
    case wildcardSubscriptionsNotSupported = 0xA2

    /// 0x00 in DISCONNECT.
    public static let normalDisconnection = ReasonCode.success
    /// 0x00 in SUBACK.
    public static let grantedQoS0 = ReasonCode.success

    /// True for values of 0x80 and above.
    public var isFailure: Bool { rawValue >= 0x80 }

    /// The SUBACK success code that grants `qos`.
    public static func granted(_ qos: QoS) -> ReasonCode {
        switch qos {
        case .atMostOnce: .grantedQoS0
        case .atLeastOnce: .grantedQoS1
        case .exactlyOnce: .grantedQoS2
        }
    }

    public var description: String {
        let hex = String(rawValue, radix: 16, uppercase: true)
        return "0x\(hex.count == 1 ? "0" + hex : hex) \(name)"
    }

    private var name: String {
        switch self {
        case .success: "success"
        case .grantedQoS1: "granted QoS 1"
        case .grantedQoS2: "granted QoS 2"
        case .disconnectWithWillMessage: "disconnect with will message"
        case .noMatchingSubscribers: "no matching subscribers"
        case .noSubscriptionExisted: "no subscription existed"
        case .continueAuthentication: "continue authentication"
        case .reAuthenticate: "re-authenticate"
        case .unspecifiedError: "unspecified error"
        case .malformedPacket: "malformed packet"
        case .protocolError: "protocol error"
        case .implementationSpecificError: "implementation specific error"
        case .unsupportedProtocolVersion: "unsupported protocol version"
        case .clientIdentifierNotValid: "client identifier not valid"
        case .badUserNameOrPassword: "bad user name or password"
        case .notAuthorized: "not authorized"
        case .serverUnavailable: "server unavailable"
        case .serverBusy: "server busy"
        case .banned: "banned"
        case .serverShuttingDown: "server shutting down"
        case .badAuthenticationMethod: "bad authentication method"
        case .keepAliveTimeout: "keep alive timeout"
        case .sessionTakenOver: "session taken over"
        case .topicFilterInvalid: "topic filter invalid"
        case .topicNameInvalid: "topic name invalid"
        case .packetIdentifierInUse: "packet identifier in use"
        case .packetIdentifierNotFound: "packet identifier not found"
        case .receiveMaximumExceeded: "receive maximum exceeded"
        case .topicAliasInvalid: "topic alias invalid"
        case .packetTooLarge: "packet too large"
        case .messageRateTooHigh: "message rate too high"
        case .quotaExceeded: "quota exceeded"
        case .administrativeAction: "administrative action"
        case .payloadFormatInvalid: "payload format invalid"
        case .retainNotSupported: "retain not supported"
        case .qosNotSupported: "QoS not supported"
        case .useAnotherServer: "use another server"
        case .serverMoved: "server moved"
        case .sharedSubscriptionsNotSupported: "shared subscriptions not supported"
        case .connectionRateExceeded: "connection rate exceeded"
        case .maximumConnectTime: "maximum connect time"
        case .subscriptionIdentifiersNotSupported: "subscription identifiers not supported"
        case .wildcardSubscriptionsNotSupported: "wildcard subscriptions not supported"
        }
    }
}

extension ReasonCode {
    /// The reason codes each packet may carry (specification section 2.4, table 2-6).
    static let allowedInConnAck: Set<ReasonCode> = [
        .success, .unspecifiedError, .malformedPacket, .protocolError, .implementationSpecificError,
        .unsupportedProtocolVersion, .clientIdentifierNotValid, .badUserNameOrPassword, .notAuthorized,
        .serverUnavailable, .serverBusy, .banned, .badAuthenticationMethod, .topicNameInvalid, .packetTooLarge,
        .quotaExceeded, .payloadFormatInvalid, .retainNotSupported, .qosNotSupported, .useAnotherServer,
        .serverMoved, .connectionRateExceeded,
    ]
    static let allowedInPubAckOrPubRec: Set<ReasonCode> = [
        .success, .noMatchingSubscribers, .unspecifiedError, .implementationSpecificError, .notAuthorized,
        .topicNameInvalid, .packetIdentifierInUse, .quotaExceeded, .payloadFormatInvalid,
    ]
    static let allowedInPubRelOrPubComp: Set<ReasonCode> = [.success, .packetIdentifierNotFound]
    static let allowedInSubAck: Set<ReasonCode> = [
        .grantedQoS0, .grantedQoS1, .grantedQoS2, .unspecifiedError, .implementationSpecificError, .notAuthorized,
        .topicFilterInvalid, .packetIdentifierInUse, .quotaExceeded, .sharedSubscriptionsNotSupported,
        .subscriptionIdentifiersNotSupported, .wildcardSubscriptionsNotSupported,
    ]
    static let allowedInUnsubAck: Set<ReasonCode> = [
        .success, .noSubscriptionExisted, .unspecifiedError, .implementationSpecificError, .notAuthorized,
        .topicFilterInvalid, .packetIdentifierInUse,
    ]
    static let allowedInDisconnect: Set<ReasonCode> = [
        .normalDisconnection, .disconnectWithWillMessage, .unspecifiedError, .malformedPacket, .protocolError,
        .implementationSpecificError, .notAuthorized, .serverBusy, .serverShuttingDown, .keepAliveTimeout,
        .sessionTakenOver, .topicFilterInvalid, .topicNameInvalid, .receiveMaximumExceeded, .topicAliasInvalid,
        .packetTooLarge, .messageRateTooHigh, .quotaExceeded, .administrativeAction, .payloadFormatInvalid,
        .retainNotSupported, .qosNotSupported, .useAnotherServer, .serverMoved, .sharedSubscriptionsNotSupported,
        .connectionRateExceeded, .maximumConnectTime, .subscriptionIdentifiersNotSupported,
        .wildcardSubscriptionsNotSupported,
    ]
    static let allowedInAuth: Set<ReasonCode> = [.success, .continueAuthentication, .reAuthenticate]
}

/// The CONNACK return code of MQTT 3.1.1 (specification 3.1.1, section 3.2.2.3).
public enum ConnectReturnCode: UInt8, Sendable, Hashable, CaseIterable {
    case accepted = 0
    case unacceptableProtocolVersion = 1
    case identifierRejected = 2
    case serverUnavailable = 3
    case badUserNameOrPassword = 4
    case notAuthorized = 5

    /// The 3.1.1 return code that says the closest thing to a 5.0 reason code.
    public init(_ reasonCode: ReasonCode) {
        switch reasonCode {
        case .success: self = .accepted
        case .unsupportedProtocolVersion: self = .unacceptableProtocolVersion
        case .clientIdentifierNotValid: self = .identifierRejected
        case .badUserNameOrPassword, .badAuthenticationMethod: self = .badUserNameOrPassword
        case .notAuthorized, .banned: self = .notAuthorized
        default: self = .serverUnavailable
        }
    }

    /// The 5.0 reason code with the same meaning.
    public var reasonCode: ReasonCode {
        switch self {
        case .accepted: .success
        case .unacceptableProtocolVersion: .unsupportedProtocolVersion
        case .identifierRejected: .clientIdentifierNotValid
        case .serverUnavailable: .serverUnavailable
        case .badUserNameOrPassword: .badUserNameOrPassword
        case .notAuthorized: .notAuthorized
        }
    }
}
