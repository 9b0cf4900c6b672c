/// Everything `databus broker` can be told, with mosquitto's defaults unless noted.
///
/// Built from a mosquitto.conf by ``MosquittoConfigParser``, or in code by an application
/// that embeds the broker.
public struct BrokerConfiguration: Sendable, Hashable {
    /// A port the broker accepts MQTT connections on (`listener PORT [ADDRESS]`).
    public struct Listener: Sendable, Hashable {
        /// 0 picks a free port (useful in tests).
        public var port: Int
        /// `nil` binds every address.
        public var address: String?
        /// `max_connections`: -1 for no limit.
        public var maxConnections: Int = -1
        /// Per-listener `allow_anonymous` when `per_listener_settings true`.
        public var allowAnonymous: Bool?
        /// TLS keys that follow this `listener` line.
        public var tls = TLSSettings()
        /// Password file, ACL and JWT of this listener when `per_listener_settings true`.
        public var security = SecuritySettings()

        public init(port: Int, address: String? = nil) {
            self.port = port
            self.address = address
        }
    }

    /// What the broker logs (`log_type`).
    public enum LogType: String, Sendable, Hashable, CaseIterable {
        case error, warning, notice, information, debug, subscribe, unsubscribe, websockets, none, all
    }

    /// Where the broker logs (`log_dest`).
    public enum LogDestination: Sendable, Hashable {
        case stdout
        case stderr
        case file(String)
        case none
    }

    public var listeners: [Listener] = []
    public var perListenerSettings = false
    /// Password file, ACL and JWT for every listener (unless `per_listener_settings true`).
    public var security = SecuritySettings()
    /// mosquitto 2 refuses anonymous clients once a configuration file defines listeners.
    public var allowAnonymous = false
    /// QoS 1/2 messages in flight to one client; also our receive maximum (0 = 65,535).
    public var maxInflightMessages = 20
    /// QoS 1/2 messages queued per client beyond those in flight (0 = no limit). When not set
    /// (nil): no count limit for persistent sessions while persistence is on (their queue is in
    /// the store, bounded by ``persistenceMaxBytes``), and mosquitto's 1000 for other clients.
    public var maxQueuedMessages: Int?
    /// Payload bytes queued per client (0 = no limit).
    public var maxQueuedBytes = 0
    /// The largest payload accepted (0 = the protocol's limit).
    public var messageSizeLimit = 0
    /// The largest packet accepted (0 = the protocol's limit).
    public var maxPacketSize = 0
    public var maxKeepalive: UInt16 = 65_535
    /// How long a disconnected persistent 3.1.1 session lives (`nil` = for ever).
    public var persistentClientExpiration: Duration?
    public var persistence = false
    public var persistenceLocation = ""
    /// Our key `backpressure`: publishers feeding a connected client whose backlog passes a
    /// high-water mark are not read from until it drains (true, the default); false drops
    /// messages over the queue limits as mosquitto does.
    public var backpressure = true
    /// Our key `persistence_max_bytes`: how large the store may grow with queued messages
    /// (0 = no limit); copies beyond it are refused (5.0 publishers get 0x97) and counted.
    public var persistenceMaxBytes = 1 << 30
    public var retainAvailable = true
    public var allowZeroLengthClientID = true
    public var autoIDPrefix = "auto-"
    /// Seconds between `$SYS` updates (0 = no `$SYS` topics).
    public var sysInterval = 10
    /// We default to true; mosquitto defaults to false.
    public var setTCPNoDelay = true
    /// Our key `threads N`: how many event loops serve connections (0, the default: one per
    /// core). One loop keeps a message's way from publisher to subscriber on one thread — a
    /// lower tail latency on a small machine, less throughput on a large one. Read at start.
    public var threads = 0
    /// Our key `park_idle_connections SECONDS`: a plain-TCP connection quiet for that long
    /// leaves its SwiftNIO channel (about 2 KB) and waits in the broker's parking lot, which
    /// answers its PINGREQs and gives it a channel again as soon as anything else happens;
    /// 0 turns parking off (connections are then accepted by SwiftNIO). Read at start.
    public var parkIdleConnections = 10
    public var logTypes: Set<LogType> = [.error, .warning, .notice, .information]
    public var logDestinations: [LogDestination] = [.stderr]
    /// Our key `metrics_listener PORT [ADDRESS]`: Prometheus text at `/metrics`.
    public var metricsListener: Listener?
    /// Seconds a socket may stay open without sending CONNECT (our key `connect_timeout`).
    public var connectTimeout = 10
    /// Topic aliases a client may use towards us (mosquitto's `max_topic_alias`, default 10).
    public var maxTopicAlias: UInt16 = 10
    /// `connection` blocks: bridges to other brokers.
    public var bridges: [BridgeConfiguration] = []

    public init() {}

    /// What `databus broker` runs with no configuration file: 127.0.0.1 and ::1 on 1883,
    /// anonymous clients allowed, as mosquitto 2 does.
    public static var standalone: BrokerConfiguration {
        var configuration = BrokerConfiguration()
        configuration.listeners = [Listener(port: 1883, address: "127.0.0.1"), Listener(port: 1883, address: "::1")]
        configuration.allowAnonymous = true
        return configuration
    }

    /// Whether anonymous clients may connect through `listener`.
    func allowsAnonymous(on listener: Listener) -> Bool {
        perListenerSettings ? (listener.allowAnonymous ?? false) : allowAnonymous
    }

    /// The password file, ACL and JWT settings that apply to clients of `listener`.
    public func security(on listener: Listener) -> SecuritySettings {
        perListenerSettings ? listener.security : security
    }

    /// The largest whole packet the decoder accepts.
    var effectiveMaxPacketSize: Int {
        maxPacketSize > 0 ? maxPacketSize : 268_435_460
    }
}
