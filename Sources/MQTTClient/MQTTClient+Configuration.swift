import MQTTCore
import NIOCore

extension MQTTClient {
    /// Supplies the user name and password for each connection attempt, for example a JWT
    /// fetched fresh from the device. Called before every connect and reconnect.
    public typealias CredentialsProvider = @Sendable () async throws -> (username: String?, password: [UInt8]?)

    /// Everything that shapes a client's connection and session.
    public struct Configuration: Sendable {
        /// The broker's host name or IP address.
        public var host: String
        /// The broker's port: 1883 for TCP, 8883 for TLS by convention.
        public var port: Int
        /// The client identifier; empty asks the broker to assign one (MQTT 5, or with a clean start).
        public var clientIdentifier: String
        /// MQTT 3.1.1 or 5.0.
        public var protocolVersion: MQTTProtocolVersion
        /// The longest time without a packet to the broker; the client sends PINGREQ when idle.
        /// Whole seconds, at most 65,535; zero turns keep alive off. MQTT 5 brokers may impose their own.
        public var keepAlive: Duration
        /// How long to wait for PINGRESP before the connection counts as dead and is closed.
        public var pingTimeout: Duration
        /// Start with a new session (MQTT 5 clean start, 3.1.1 clean session) on the first
        /// connection. MQTT 5 reconnects always resume (clean start off) so that a session kept
        /// with ``sessionExpiry`` survives; 3.1.1 reconnects use this flag as given.
        public var cleanStart: Bool
        /// How long the broker keeps the session after the connection ends (MQTT 5); zero ends it
        /// with the connection. Whole seconds; `UInt32.max` seconds means never.
        public var sessionExpiry: Duration
        /// The user name sent in CONNECT (unless a ``credentialsProvider`` is set).
        public var username: String?
        /// The password sent in CONNECT (unless a ``credentialsProvider`` is set): bytes, so a binary token fits.
        public var password: [UInt8]?
        /// Called before every connection attempt; when set, ``username`` and ``password`` are not used.
        public var credentialsProvider: CredentialsProvider?
        /// MQTT 5 enhanced authentication (AUTH packets) during CONNECT/CONNACK; `nil` for none.
        public var enhancedAuthentication: EnhancedAuthentication?
        /// The message the broker publishes when the connection ends without DISCONNECT
        /// (MQTT 5 will properties go in its `properties`).
        public var will: ConnectPacket.Will?
        /// TLS settings; `nil` connects over plain TCP.
        public var tls: TLS?
        /// How many QoS 1/2 messages the broker may send us before we acknowledge (MQTT 5).
        public var receiveMaximum: UInt16
        /// The most QoS 1/2 messages in flight to the broker. `nil` takes the broker's receive
        /// maximum in MQTT 5, and 20 in 3.1.1, where the broker cannot say (mosquitto's default
        /// `max_inflight_messages`: mosquitto drops QoS 2 messages above it from 3.1.1 clients).
        public var maximumInflightMessages: Int?
        /// The largest packet we accept, sent to the broker (MQTT 5) and enforced by the decoder.
        public var maximumPacketSize: UInt32?
        /// How many topic aliases the broker may use towards us (MQTT 5).
        public var topicAliasMaximum: UInt16
        /// User properties sent in CONNECT (MQTT 5).
        public var connectUserProperties: [(name: String, value: String)]
        /// When and how fast to reconnect after the connection is lost.
        public var reconnect: ReconnectPolicy
        /// The limits of the outbox that keeps messages until the broker acknowledges them.
        public var outbox: OutboxConfiguration
        /// How long TCP, TLS and the CONNECT/CONNACK exchange may take together.
        public var connectTimeout: Duration
        /// When incoming QoS 1/2 messages are acknowledged: on arrival (the default), or only when the
        /// application calls ``MQTTClient/acknowledge(_:)`` after it has dealt with them (stored them,
        /// say), so that a message the application had not finished is delivered again after a crash.
        public var acknowledgement: Acknowledgement
        /// Where ``MQTTClient/request(topic:payload:qos:properties:timeout:)`` asks for replies:
        /// `{responseTopicPrefix}/{client identifier}`.
        public var responseTopicPrefix: String

        /// - Parameters:
        ///   - host: the broker's host name or IP address.
        ///   - port: the broker's port; 1883 by default, 8883 when `tls` is given.
        ///   - clientIdentifier: the client identifier; empty lets the broker assign one.
        ///   - protocolVersion: MQTT 5 by default.
        ///   - tls: TLS settings, or `nil` for plain TCP.
        public init(
            host: String,
            port: Int? = nil,
            clientIdentifier: String,
            protocolVersion: MQTTProtocolVersion = .v5,
            tls: TLS? = nil
        ) {
            self.host = host
            self.port = port ?? (tls == nil ? 1883 : 8883)
            self.clientIdentifier = clientIdentifier
            self.protocolVersion = protocolVersion
            self.keepAlive = .seconds(60)
            self.pingTimeout = .seconds(10)
            self.cleanStart = true
            self.sessionExpiry = .zero
            self.tls = tls
            self.receiveMaximum = UInt16.max
            self.topicAliasMaximum = 16
            self.connectUserProperties = []
            self.reconnect = ReconnectPolicy()
            self.outbox = OutboxConfiguration()
            self.connectTimeout = .seconds(10)
            self.responseTopicPrefix = "databus/responses"
            self.acknowledgement = .automatic
        }
    }

    /// When the client acknowledges incoming QoS 1/2 messages (PUBACK, PUBREC).
    public enum Acknowledgement: Sendable, Hashable {
        /// As soon as the message arrives, before the application has seen it.
        case automatic
        /// When the application calls ``MQTTClient/acknowledge(_:)``. A message not acknowledged
        /// before the connection ends is sent again by the broker when the session resumes (the
        /// application sees it twice, so it should recognise duplicates).
        case manual
    }
}

extension Duration {
    /// Whole seconds, clamped to `0...maximum`.
    func wholeSeconds(maximum: Int64) -> Int64 {
        let seconds = components.seconds + (components.attoseconds > 0 ? 1 : 0)
        return min(max(seconds, 0), maximum)
    }
}
