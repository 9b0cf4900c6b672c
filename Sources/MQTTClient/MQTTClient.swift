import DequeModule
import Logging
import MQTTCore
import NIOCore
import NIOPosix

/// An MQTT 3.1.1 / 5.0 client: TCP or TLS, automatic reconnect with backoff, an outbox that
/// keeps messages until the broker acknowledges them, request/response.
///
/// ```swift
/// var configuration = MQTTClient.Configuration(host: "broker.local", clientIdentifier: "camera-17")
/// configuration.sessionExpiry = .seconds(3600)
/// let client = MQTTClient(configuration: configuration)
/// try await client.connect()
/// let commands = try await client.subscribe(to: "lprserver/cameras/17/command", qos: .atLeastOnce)
/// try await client.publish(topic: "lprserver/cameras/17/status", payload: "online", qos: .atLeastOnce, retain: true)
/// for await command in commands { ... }
/// ```
///
/// ``connect()`` makes one attempt and throws its error; once connected, a lost connection is
/// re-established by the ``Configuration/reconnect`` policy. As a `Service` in a
/// `ServiceGroup`, ``run()`` keeps trying from the start and disconnects on graceful shutdown.
/// Messages published while disconnected wait in the outbox and are sent in order when the
/// connection returns; a `subscribe` made while disconnected waits for the connection too.
///
/// The client runs on one event loop of its group, the one its connections use: what it
/// sends goes to the socket without a thread hop, and a burst of acknowledgements is handled
/// in one go.
public actor MQTTClient {
    /// The configuration the client was made with.
    public nonisolated let configuration: Configuration
    nonisolated let logger: Logger
    nonisolated let clock: any Clock<Duration>
    nonisolated let eventLoopGroup: any EventLoopGroup
    /// The event loop the client and its connections run on.
    nonisolated let eventLoop: any EventLoop
    private nonisolated let executor: any SerialExecutor
    /// Stores the outbox's changes on a thread of its own, when there is a persistence.
    nonisolated let outboxWriter: OutboxWriter?
    nonisolated let router = MessageRouter()
    nonisolated let stateBroadcast = StateBroadcast()

    var session: ClientSession
    var publishWaiters: [UInt64: AsyncPromise<PublishResult>] = [:]
    /// Waiters of ``enqueue(batch:)`` calls, in sequence order.
    var batchWaiters = Deque<PublishBatchWaiter>()
    var requestWaiters: [UInt64: AsyncPromise<[ReasonCode]>] = [:]
    var nextRequestToken: UInt64 = 1
    var outboxRestored = false

    var supervisor: Task<SupervisorOutcome, Never>?
    var stopRequested = false
    /// Whether the next CONNECT is the first since ``connect()`` or ``run()``: it uses the configured clean start.
    var firstConnectionOfRun = true
    var assignedClientIdentifier: String?

    var channel: (any Channel)?
    var connectionNumber: UInt64 = 0
    /// Why we closed the current connection ourselves, when we did.
    var closeReason: DisconnectReason?
    var keepAlive: KeepAliveMonitor?
    var keepAliveTask: Task<Void, Never>?
    /// Packets encoded and not yet written: ``flush()`` writes them in one go.
    var output = ByteBuffer()
    /// QoS 0 messages in `output` whose caller waits to hear they were written.
    var writtenAtMostOnce: [UInt64] = []
    /// A QoS 2 PUBLISH waiting until its state is stored, and everything after it with it.
    var heldForStorage: MQTTPacket?
    /// The events of the connection being served: its reads are handled as they come.
    var servedEvents: ConnectionEvents?
    /// Whether messages are being read back from the store.
    var refilling = false
    var randomGenerator = SystemRandomNumberGenerator()

    // Request/response state (MQTT+RequestResponse.swift).
    var pendingResponses: [ByteBuffer: AsyncPromise<MQTTMessage>] = [:]
    var responseSubscription: Task<Void, any Error>?
    var responseTopic: String?

    /// Makes a client; it does not connect until ``connect()`` or ``run()``.
    ///
    /// - Parameters:
    ///   - configuration: broker, identity, session and policies.
    ///   - eventLoopGroup: the NIO event loops for the connection; the shared singleton by default.
    ///   - clock: the clock for backoff delays, keep alive and request timeouts; tests pass a manual one.
    ///   - logger: where the client logs; it adds `mqtt.client_id` and `mqtt.broker` metadata.
    public init(
        configuration: Configuration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "databus.mqtt-client")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.eventLoop = eventLoopGroup.next()
        self.executor = eventLoop.executor
        self.outboxWriter = configuration.outbox.persistence.map { OutboxWriter(persistence: $0) }
        self.clock = clock
        var logger = logger
        logger[metadataKey: "mqtt.client_id"] = "\(configuration.clientIdentifier)"
        logger[metadataKey: "mqtt.broker"] = "\(configuration.host):\(configuration.port)"
        self.logger = logger
        self.session = ClientSession(
            version: configuration.protocolVersion,
            receiveMaximum: configuration.receiveMaximum,
            topicAliasMaximum: configuration.topicAliasMaximum,
            maximumInflight: configuration.maximumInflightMessages,
            manualAcknowledgement: configuration.acknowledgement == .manual,
            outbox: configuration.outbox
        )
    }

    /// The client's actor runs on its event loop.
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    // MARK: State

    /// The connection state now.
    public nonisolated var state: ConnectionState { stateBroadcast.current }

    /// The connection states from now on, starting with the current one.
    public nonisolated var states: AsyncStream<ConnectionState> { stateBroadcast.makeStream() }

    /// Every incoming message from now on (a new sequence on each access); see ``MQTTMessages``.
    public nonisolated var messages: MQTTMessages { router.makeMessages().messages }

    /// How full the outbox is, and how many messages it dropped or refused.
    public var outboxStatistics: OutboxStatistics { session.outbox.statistics }

    /// How many outbox entries are in memory (the rest wait in the store); for tests.
    var outboxMessagesInMemory: Int { session.outbox.entriesInMemory.count }

    /// The client identifier in use: the configured one, or the one the broker assigned.
    public var clientIdentifier: String { assignedClientIdentifier ?? configuration.clientIdentifier }

    func setState(_ newState: ConnectionState) {
        stateBroadcast.set(newState)
    }

    // MARK: Test hooks

    /// Closes the TCP connection without DISCONNECT, as a crash or a cut cable would (the broker then publishes the will).
    package func dropConnectionForTesting() {
        guard let channel else { return }
        closeReason = .connectionLost("dropped for testing")
        channel.close(promise: nil)
    }
}
