import MQTTCore

/// One bridge to another broker: a `connection NAME` block of mosquitto.conf, with
/// mosquitto's meaning and defaults for every key.
///
/// Messages on `out` topics are forwarded to the remote broker, messages the remote broker
/// publishes on `in` topics are published here. With `persistence true` the copies waiting to
/// be forwarded at QoS 1/2 live in the store until the remote broker acknowledged them.
public struct BridgeConfiguration: Sendable, Hashable {
    /// `host[:port]` of the remote broker; the port defaults to 1883.
    public struct Address: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int = 1883) {
            self.host = host
            self.port = port
        }

        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// Which way messages on a topic travel.
    public enum Direction: String, Sendable, Hashable {
        /// Local messages go to the remote broker.
        case out
        /// Remote messages come here.
        case `in`
        case both

        var isOutgoing: Bool { self != .in }
        var isIncoming: Bool { self != .out }
    }

    /// `topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX]`.
    public struct Topic: Sendable, Hashable {
        /// The pattern; may be empty when both prefixes are set (one topic remapped to another).
        public var pattern: String
        public var direction: Direction
        public var qos: QoS
        public var localPrefix: String
        public var remotePrefix: String

        public init(pattern: String, direction: Direction = .out, qos: QoS = .atMostOnce, localPrefix: String = "", remotePrefix: String = "") {
            self.pattern = pattern
            self.direction = direction
            self.qos = qos
            self.localPrefix = localPrefix
            self.remotePrefix = remotePrefix
        }

        /// The filter on this broker: the local prefix, then the pattern.
        public var localFilter: String { localPrefix + pattern }
        /// The filter on the remote broker: the remote prefix, then the pattern.
        public var remoteFilter: String { remotePrefix + pattern }
        /// Whether messages change topic when they cross (mosquitto remaps only then).
        var remaps: Bool { !localPrefix.isEmpty || !remotePrefix.isEmpty }
    }

    /// `restart_timeout`: how long to wait before connecting again.
    public enum RestartTimeout: Sendable, Hashable {
        /// `restart_timeout SECONDS`: always the same.
        case constant(seconds: Int)
        /// `restart_timeout BASE CAP`: "decorrelated jitter" from `base` up to `cap` seconds.
        case backoff(base: Int, cap: Int)
    }

    /// `start_type`.
    public enum StartType: String, Sendable, Hashable {
        /// Connect at start, and again after every failure.
        case automatic
        /// Connect once `threshold` messages wait to be forwarded; disconnect after `idle_timeout`.
        case lazy
        /// Connect at start; never again after a failure.
        case once
    }

    /// TLS towards the remote broker: on once `bridge_cafile` or `bridge_capath` is set.
    public struct TLS: Sendable, Hashable {
        public var caFile: String?
        public var caPath: String?
        public var certFile: String?
        public var keyFile: String?
        /// `bridge_insecure`: do not check that the certificate names the host connected to.
        public var insecure = false
        /// `bridge_tls_version`: the lowest TLS version; 1.2 by default.
        public var minimumVersion: TLSSettings.Version = .tls12

        public init() {}

        public var isEnabled: Bool { caFile != nil || caPath != nil }
    }

    /// `connection NAME`.
    public var name: String
    /// `address`/`addresses`: tried in order on failure (see ``roundRobin``).
    public var addresses: [Address] = []
    public var topics: [Topic] = []
    /// `bridge_protocol_version`: mqttv31, mqttv311 (the default) or mqttv50.
    public var protocolVersion: MQTTProtocolVersion = .v3_1_1
    /// `cleansession`: false by default, so the remote broker keeps the bridge's subscriptions
    /// and queued messages while the connection is down.
    public var cleanSession = false
    /// `local_clientid`; `local.<remote client id>` when not set.
    public var localClientIDSetting: String?
    /// `remote_clientid` (or the older `clientid`); `NAME.HOSTNAME` when not set.
    public var remoteClientIDSetting: String?
    /// `remote_username` (or `username`).
    public var remoteUsername: String?
    /// `remote_password` (or `password`).
    public var remotePassword: String?
    /// Our key `bridge_jwt_command CMD`: run through `/bin/sh` before every connection attempt;
    /// what it prints is the password (a fresh device JWT, for instance).
    public var jwtCommand: String?
    /// `keepalive_interval`: seconds; at least 5.
    public var keepaliveInterval = 60
    public var restartTimeout = RestartTimeout.backoff(base: 5, cap: 30)
    /// `try_private`: tell the remote broker that this is a bridge (protocol level | 0x80 for
    /// 3.1/3.1.1), so that it does not send our own messages back.
    public var tryPrivate = true
    /// `notifications`: publish 1/0 as the connection comes and goes, retained, here and on the
    /// remote broker (the remote side through the connection's will).
    public var notifications = true
    /// `notifications_local_only`: publish the notifications on this broker only.
    public var notificationsLocalOnly = false
    /// `notification_topic`; `$SYS/broker/connection/<remote client id>/state` when not set.
    public var notificationTopicSetting: String?
    /// `bridge_attempt_unsubscribe`: unsubscribe on the remote broker from `out`-only topics, in
    /// case an older configuration subscribed to them.
    public var attemptUnsubscribe = true
    /// `bridge_outgoing_retain`: false clears the retain flag of every forwarded message.
    public var outgoingRetain = true
    public var tls = TLS()
    /// `bridge_max_packet_size`: the largest packet forwarded (0: no limit of ours).
    public var maxPacketSize = 0
    /// `round_robin`: false (the default) treats the first address as the main one and goes
    /// back to it once it answers again.
    public var roundRobin = false
    public var startType = StartType.automatic
    /// `idle_timeout`: seconds a lazy bridge stays connected without traffic.
    public var idleTimeout = 60
    /// `threshold`: messages waiting that start a lazy bridge.
    public var threshold = 10

    public init(name: String) {
        self.name = name
    }

    /// The client identifier on the remote broker.
    public func remoteClientID(hostname: String) -> String {
        remoteClientIDSetting ?? "\(name).\(hostname)"
    }

    /// The client identifier of the bridge's session on this broker.
    public func localClientID(hostname: String) -> String {
        localClientIDSetting ?? "local.\(remoteClientID(hostname: hostname))"
    }

    /// Where the connection state (1/0) is published.
    public func notificationTopic(hostname: String) -> String {
        notificationTopicSetting ?? "$SYS/broker/connection/\(remoteClientID(hostname: hostname))/state"
    }
}
