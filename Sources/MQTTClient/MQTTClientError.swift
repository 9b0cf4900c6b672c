import MQTTCore

/// Why a client operation failed.
///
/// A struct around a code rather than an enum, so that new codes are not breaking changes;
/// compare ``code`` with the static members of ``Code-swift.struct``.
public struct MQTTClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The kind of failure.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case connectionFailed = "connection failed"
            case connectionRefused = "connection refused"
            case connectionClosed = "connection closed"
            case clientStopped = "client stopped"
            case alreadyRunning = "already running"
            case outboxFull = "outbox full"
            case droppedFromOutbox = "dropped from the outbox"
            case persistenceFailed = "outbox persistence failed"
            case timeout = "timeout"
            case invalidTopic = "invalid topic"
            case packetTooLarge = "packet too large"
            case qosNotSupported = "QoS not supported"
            case retainNotSupported = "retain not supported"
            case unsupportedInProtocolVersion = "not supported in this protocol version"
            case subscriptionRefused = "subscription refused"
            case publishRefused = "publish refused"
            case protocolError = "protocol error"
            case reconnectAttemptsExhausted = "reconnect attempts exhausted"
            case tlsConfiguration = "TLS configuration"
            case credentialsUnavailable = "credentials unavailable"
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// TCP or TLS could not be set up, or the connection closed before CONNACK.
        public static let connectionFailed = Code(.connectionFailed)
        /// The broker answered CONNECT with a failure reason code (see ``MQTTClientError/reasonCode``).
        public static let connectionRefused = Code(.connectionRefused)
        /// The connection closed while the operation needed it.
        public static let connectionClosed = Code(.connectionClosed)
        /// ``MQTTClient/disconnect()`` was called, or the client stopped after giving up reconnecting.
        /// A message whose `publish` failed this way stays in the outbox and is sent when the client connects again.
        public static let clientStopped = Code(.clientStopped)
        /// ``MQTTClient/connect()`` was called on a client that is already connecting or connected.
        public static let alreadyRunning = Code(.alreadyRunning)
        /// The outbox is at its limits and the policy is ``OutboxOverflowPolicy/rejectNewest``.
        public static let outboxFull = Code(.outboxFull)
        /// The message was dropped to make room under ``OutboxOverflowPolicy/dropOldest``.
        public static let droppedFromOutbox = Code(.droppedFromOutbox)
        /// The outbox persistence failed to store the message.
        public static let persistenceFailed = Code(.persistenceFailed)
        /// No answer arrived in time.
        public static let timeout = Code(.timeout)
        /// A topic name or filter breaks the MQTT rules.
        public static let invalidTopic = Code(.invalidTopic)
        /// The packet is larger than the broker's maximum packet size.
        public static let packetTooLarge = Code(.packetTooLarge)
        /// The QoS is above the broker's maximum QoS.
        public static let qosNotSupported = Code(.qosNotSupported)
        /// The broker does not support retained messages.
        public static let retainNotSupported = Code(.retainNotSupported)
        /// The operation needs MQTT 5.
        public static let unsupportedInProtocolVersion = Code(.unsupportedInProtocolVersion)
        /// The broker refused a subscription (see ``MQTTClientError/reasonCode``).
        public static let subscriptionRefused = Code(.subscriptionRefused)
        /// The broker refused a message (see ``MQTTClientError/reasonCode``); used where a
        /// result cannot carry the code, as in ``MQTTClient/request(topic:payload:qos:properties:timeout:)``.
        public static let publishRefused = Code(.publishRefused)
        /// The broker broke the protocol.
        public static let protocolError = Code(.protocolError)
        /// The reconnect policy's maximum number of attempts was reached.
        public static let reconnectAttemptsExhausted = Code(.reconnectAttemptsExhausted)
        /// A certificate, key or CA file could not be used.
        public static let tlsConfiguration = Code(.tlsConfiguration)
        /// The credentials provider, or the enhanced authentication's data or responder, threw.
        public static let credentialsUnavailable = Code(.credentialsUnavailable)

        public var description: String { base.rawValue }
    }

    /// The kind of failure.
    public var code: Code
    /// The MQTT reason code the broker sent, when it sent one.
    public var reasonCode: ReasonCode?
    /// What happened, in words.
    public var message: String

    /// An error of this kind, with what happened in words and the broker's reason code when it sent one.
    public init(_ code: Code, _ message: String, reasonCode: ReasonCode? = nil) {
        self.code = code
        self.message = message
        self.reasonCode = reasonCode
    }

    public var description: String {
        if let reasonCode { return "\(code): \(message) (\(reasonCode))" }
        return "\(code): \(message)"
    }
}
