import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOCore
import ServiceLifecycle

/// `databus camera`: the camera side of the LPR Server v3 protocol, for one camera.
///
/// - Detections handed to ``submit(_:source:)`` (by the standard input, HTTP and folder
///   inputs, or the simulator) get their envelope completed, are matched against the edge
///   watch-list (the `--on-match` hook runs at once, broker or no broker), filtered by the applied
///   configuration, journaled durably, and published QoS 1 through the durable MQTT outbox.
///   Each stays in the journal until the server's `detection/ack`; without one it is sent again
///   (``DetectionTracker``). A `rejected` ack is logged and not retried.
/// - Health is published every ``Options/healthInterval`` (retained, QoS 0) and at once on
///   `health/request`; `online` is published retained on `status`, with `offline` as the will.
/// - `config/update` is applied (``CameraConfigurationState``), kept in a local file and
///   reported on `config` (retained, QoS 2); `config/request` asks for it on every connection.
/// - `control` commands run the `--on-command` hook, or the built-in commands
///   (``CommandPlanner``), answered on `control/response` (QoS 2).
/// - `blacklist/updates` is kept in a local file (``EdgeWatchlist``).
///
/// Its MQTT session is persistent and acknowledges incoming messages only once they are dealt
/// with (an ack once the journal has recorded it), so a killed agent loses nothing either way.
public actor CameraAgent {
    public struct Options: Sendable {
        public var cameraID: String
        public var checkpointID: String
        /// Where the journal, the outbox, the applied configuration and the watch-list are kept.
        public var dataDirectory: String
        public var healthInterval: Duration
        /// Ack timeout, its growth and the outbox window.
        public var tracking: DetectionTracker.Policy
        /// `--on-command`: runs `control` commands when set.
        public var commandHook: Hook?
        /// `--on-match`: runs for each edge watch-list match.
        public var matchHook: Hook?
        /// The edit distance the edge watch-list still matches (after folding OCR confusions).
        public var watchlistMaximumDistance: Int
        /// How long the broker keeps the agent's session while it is away (MQTT 5).
        public var sessionExpiry: Duration
        /// Health from a simulated camera (seeded) instead of the host's `/proc`.
        public var simulatedHealthSeed: UInt64?

        public init(
            cameraID: String,
            checkpointID: String,
            dataDirectory: String,
            healthInterval: Duration = .seconds(30),
            tracking: DetectionTracker.Policy = DetectionTracker.Policy(),
            commandHook: Hook? = nil,
            matchHook: Hook? = nil,
            watchlistMaximumDistance: Int = 1,
            sessionExpiry: Duration = .seconds(86_400),
            simulatedHealthSeed: UInt64? = nil
        ) {
            self.cameraID = cameraID
            self.checkpointID = checkpointID
            self.dataDirectory = dataDirectory
            self.healthInterval = healthInterval
            self.tracking = tracking
            self.commandHook = commandHook
            self.matchHook = matchHook
            self.watchlistMaximumDistance = watchlistMaximumDistance
            self.sessionExpiry = sessionExpiry
            self.simulatedHealthSeed = simulatedHealthSeed
        }

        var journalPath: String { "\(dataDirectory)/journal.sqlite" }
        var outboxPath: String { "\(dataDirectory)/outbox.sqlite" }
        var configurationPath: String { "\(dataDirectory)/config.json" }
        var watchlistPath: String { "\(dataDirectory)/watchlist.json" }
    }

    /// What the agent has counted since it started.
    public struct Statistics: Sendable, Hashable, CustomStringConvertible {
        /// Detections taken in (valid, journaled).
        public var accepted = 0
        /// Detections refused as invalid before publishing.
        public var invalid = 0
        /// Held back by `confidence_threshold`.
        public var belowConfidence = 0
        /// Held back by `detection_interval`.
        public var withinInterval = 0
        /// Sends the broker acknowledged (re-sends included).
        public var published = 0
        /// Acked `stored` by the server.
        public var stored = 0
        /// Acked `duplicate` by the server.
        public var duplicates = 0
        /// Acked `rejected` by the server.
        public var rejected = 0
        /// Sent again for want of an ack.
        public var resent = 0
        /// Edge watch-list matches (hook runs).
        public var watchlistMatches = 0
        /// Control commands answered.
        public var commands = 0
        /// Health messages published.
        public var healthPublished = 0

        /// Detections delivered: acked `stored` or `duplicate`.
        public var delivered: Int { stored + duplicates }

        public init() {}

        /// Adds another agent's counts (a simulation's total).
        public mutating func add(_ other: Statistics) {
            accepted += other.accepted
            invalid += other.invalid
            belowConfidence += other.belowConfidence
            withinInterval += other.withinInterval
            published += other.published
            stored += other.stored
            duplicates += other.duplicates
            rejected += other.rejected
            resent += other.resent
            watchlistMatches += other.watchlistMatches
            commands += other.commands
            healthPublished += other.healthPublished
        }

        public var description: String {
            "accepted \(accepted), invalid \(invalid), filtered \(belowConfidence + withinInterval), delivered \(delivered) "
                + "(stored \(stored), duplicate \(duplicates)), rejected \(rejected), resent \(resent), watch-list matches \(watchlistMatches)"
        }
    }

    public nonisolated let options: Options
    /// The MQTT client (the agent runs it).
    public nonisolated let client: MQTTClient
    nonisolated let logger: Logger
    nonisolated let journal: DetectionJournal

    var tracker: DetectionTracker
    var configuration: CameraConfigurationState
    var filter: DetectionFilter
    var watchlist: EdgeWatchlist
    var planner: CommandPlanner
    var hostHealth: HostHealthReader
    var simulatedHealth: CameraSimulator?
    var statistics = Statistics()
    var startedAt = Date()
    var lastDetection: Date?
    /// Until when a restarted simulated camera stays quiet.
    public internal(set) var pausedUntil: Date?

    // Group commits.
    var pendingInserts: [(record: DetectionJournal.Record, waiter: CheckedContinuation<Result<Bool, any Error>, Never>)] = []
    var insertFlushRunning = false
    var pendingCompletions: [String] = []
    var pendingAcknowledgements: [MQTTMessage] = []
    var completionFlushRunning = false
    let tickets: AsyncStream<(String, PublishTicket)>.Continuation
    let ticketStream: AsyncStream<(String, PublishTicket)>

    /// Opens the agent's journal and outbox in ``Options/dataDirectory`` (made when missing),
    /// loads the applied configuration and the watch-list kept there, and takes up the
    /// detections an earlier run left unacknowledged.
    ///
    /// - Parameters:
    ///   - options: the camera and its behaviour.
    ///   - mqtt: the broker, credentials, TLS and protocol version; the agent sets the client
    ///     identifier (when empty: `camera-{id}`), the will, a persistent session, manual
    ///     acknowledgements and the durable outbox.
    public static func open(
        options: Options,
        mqtt: MQTTClient.Configuration,
        logger: Logger = Logger(label: "databus.camera")
    ) async throws
        -> CameraAgent
    {
        try FileManager.default.createDirectory(atPath: options.dataDirectory, withIntermediateDirectories: true)
        let journal = try DetectionJournal(path: options.journalPath)
        var mqtt = mqtt
        if mqtt.clientIdentifier.isEmpty { mqtt.clientIdentifier = "camera-\(options.cameraID)" }
        mqtt.will = ConnectPacket.Will(
            topic: LPRTopic.status(camera: options.cameraID).name,
            payload: ByteBuffer(string: CameraAvailability.offline.rawValue),
            qos: .atLeastOnce,
            retain: true
        )
        mqtt.cleanStart = false
        mqtt.sessionExpiry = options.sessionExpiry
        mqtt.acknowledgement = .manual
        mqtt.outbox = OutboxConfiguration(
            maximumMessages: options.tracking.window + 100_000,
            maximumBytes: 1 << 30,
            overflowPolicy: .rejectNewest,
            persistence: try SQLiteOutboxPersistence(path: options.outboxPath)
        )
        var logger = logger
        logger[metadataKey: "lpr.camera_id"] = "\(options.cameraID)"
        // A kept file that cannot be read is set aside, not fatal: the server sends both again.
        var configuration = CameraConfigurationState(cameraID: options.cameraID)
        do {
            configuration = try CameraConfigurationState.load(path: options.configurationPath, cameraID: options.cameraID)
        } catch {
            logger.warning("the kept configuration is unreadable; set aside as .bad, asking the server again: \(error)")
            try? FileManager.default.removeItem(atPath: options.configurationPath + ".bad")
            try? FileManager.default.moveItem(atPath: options.configurationPath, toPath: options.configurationPath + ".bad")
        }
        var watchlist = EdgeWatchlist(maximumDistance: options.watchlistMaximumDistance)
        do {
            watchlist = try EdgeWatchlist.load(path: options.watchlistPath, maximumDistance: options.watchlistMaximumDistance)
        } catch {
            logger.warning("the kept watch-list is unreadable; set aside as .bad, waiting for the server's: \(error)")
            try? FileManager.default.removeItem(atPath: options.watchlistPath + ".bad")
            try? FileManager.default.moveItem(atPath: options.watchlistPath, toPath: options.watchlistPath + ".bad")
        }
        let agent = CameraAgent(options: options, mqtt: mqtt, journal: journal, configuration: configuration, watchlist: watchlist, logger: logger)
        try await agent.restore()
        return agent
    }

    private init(
        options: Options,
        mqtt: MQTTClient.Configuration,
        journal: DetectionJournal,
        configuration: CameraConfigurationState,
        watchlist: EdgeWatchlist,
        logger: Logger
    ) {
        self.options = options
        self.logger = logger
        self.journal = journal
        self.client = MQTTClient(configuration: mqtt, logger: logger)
        self.tracker = DetectionTracker(policy: options.tracking)
        self.configuration = configuration
        self.filter = DetectionFilter(configuration: configuration.applied)
        self.watchlist = watchlist
        self.planner = CommandPlanner(hasHook: options.commandHook != nil)
        self.hostHealth = HostHealthReader(diskPath: options.dataDirectory)
        self.simulatedHealth = options.simulatedHealthSeed.map {
            CameraSimulator(cameraID: options.cameraID, checkpointID: options.checkpointID, seed: $0 ^ 0x4845_414C_5448)
        }
        let (stream, continuation) = AsyncStream<(String, PublishTicket)>.makeStream()
        ticketStream = stream
        tickets = continuation
    }

    private func restore() async throws {
        let (outboxed, backlog) = try await journal.pending()
        tracker.restore(outboxed: outboxed, backlog: backlog, now: DetectionTracker.now())
        if !outboxed.isEmpty || !backlog.isEmpty {
            logger.info(
                "taking up detections not yet acknowledged",
                metadata: ["camera.outboxed": "\(outboxed.count)", "camera.backlog": "\(backlog.count)"]
            )
        }
    }

    // MARK: Running

    /// Connects (retrying from the first attempt), serves the camera's topics and delivers
    /// detections until the task is cancelled (or, as a `Service` in a `ServiceGroup`, until
    /// graceful shutdown, or until the client gives up reconnecting); then publishes `offline`
    /// and disconnects, keeping the journal and the outbox for the next run.
    public func run() async {
        startedAt = Date()
        let client = self.client
        let logger = self.logger
        // Until cancelled, or, in a ServiceGroup, until graceful shutdown, or until the client
        // gives up reconnecting (MQTT_MAX_RECONNECT_ATTEMPTS).
        let waiter = Task { await Self.sleepUntilCancelled() }
        // Not a child task: cancelling `run` must not disconnect before `offline` is said.
        let connection = Task {
            do {
                try await client.runUntilStopped()
            } catch {
                logger.error("the MQTT client stopped: \(error)")
            }
            waiter.cancel()
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.watchConnection() }
            // Made before subscribing: a retained message that came first would be lost (and,
            // acknowledged manually, never acknowledged).
            let messages = client.messages
            group.addTask { await self.receiveMessages(messages) }
            group.addTask { await self.collectTickets() }
            group.addTask { await self.checkDeliveries() }
            group.addTask { await self.publishHealthPeriodically() }
            group.addTask { await self.subscribe() }
            await withTaskCancellationHandler {
                await withGracefulShutdownHandler {
                    await waiter.value
                } onGracefulShutdown: {
                    waiter.cancel()
                }
            } onCancel: {
                waiter.cancel()
            }
            group.cancelAll()
        }
        await Task { await self.stop() }.value
        await connection.value
    }

    private static func sleepUntilCancelled() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    /// Says `offline` (a clean disconnect sends no will) and disconnects.
    func stop() async {
        if case .connected = client.state {
            let ticket = try? await client.enqueue(
                topic: LPRTopic.status(camera: options.cameraID).name,
                payload: ByteBuffer(string: CameraAvailability.offline.rawValue),
                qos: .atLeastOnce,
                retain: true
            )
            if let ticket {
                _ = try? await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { _ = try await ticket.result() }
                    group.addTask { try await Task.sleep(for: .seconds(2)) }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
        tickets.finish()
        await client.disconnect()
    }

    private func subscribe() async {
        let camera = options.cameraID
        let subscriptions = [
            Subscription(topicFilter: LPRTopic.detectionAck(camera: camera).name, options: SubscriptionOptions(qos: .atLeastOnce)),
            Subscription(topicFilter: LPRTopic.healthRequest(camera: camera).name, options: SubscriptionOptions(qos: .atMostOnce)),
            Subscription(topicFilter: LPRTopic.configUpdate(camera: camera).name, options: SubscriptionOptions(qos: .exactlyOnce)),
            Subscription(topicFilter: LPRTopic.control(camera: camera).name, options: SubscriptionOptions(qos: .exactlyOnce)),
            Subscription(topicFilter: LPRTopic.blacklistUpdates.name, options: SubscriptionOptions(qos: .atLeastOnce)),
        ]
        do {
            let codes = try await client.subscribe(subscriptions)
            for (subscription, code) in zip(subscriptions, codes) where code.isFailure {
                logger.error("the broker refused a subscription", metadata: ["mqtt.topic": "\(subscription.topicFilter)", "mqtt.reason": "\(code)"])
            }
        } catch {
            logger.error("cannot subscribe: \(error)")
        }
    }

    /// On every connection: `online`, the applied configuration, `config/request`, health.
    private func watchConnection() async {
        var started = false
        for await state in client.states {
            switch state {
            case .connected(let sessionPresent):
                started = true
                tracker.connectionChanged(connected: true, now: DetectionTracker.now())
                logger.info("connected", metadata: ["mqtt.session_present": "\(sessionPresent)"])
                await announce()
            case .stopped:
                guard started else { continue }
                tracker.connectionChanged(connected: false, now: DetectionTracker.now())
                return
            default:
                started = true
                tracker.connectionChanged(connected: false, now: DetectionTracker.now())
            }
        }
    }

    func announce() async {
        let camera = options.cameraID
        publish(LPRTopic.status(camera: camera), ByteBuffer(string: CameraAvailability.online.rawValue))
        if let applied = configuration.applied { publish(LPRTopic.config(camera: camera), applied.json) }
        publish(LPRTopic.configRequest(camera: camera), ConfigurationRequest(messageID: Self.newID(), cameraID: camera).json)
        await publishHealth()
    }

    // MARK: Publishing

    /// Publishes at the topic's QoS and retain flag from the protocol; failures are logged.
    func publish(_ topic: LPRTopic, _ json: JSONObject, properties: Properties = []) {
        publish(topic, ByteBuffer(bytes: JSONValue.object(json).jsonBytes), properties: properties)
    }

    func publish(_ topic: LPRTopic, _ payload: ByteBuffer, properties: Properties = []) {
        publish(name: topic.name, payload, qos: QoS(rawValue: UInt8(topic.qos)) ?? .atLeastOnce, retain: topic.retain, properties: properties)
    }

    func publish(name: String, _ payload: ByteBuffer, qos: QoS, retain: Bool, properties: Properties = []) {
        let client = self.client
        let logger = self.logger
        Task {
            do {
                let result = try await client.publish(topic: name, payload: payload, qos: qos, retain: retain, properties: properties)
                if !result.isSuccess {
                    logger.warning("the broker refused a message", metadata: ["mqtt.topic": "\(name)", "mqtt.reason": "\(result.reasonCode)"])
                }
            } catch {
                logger.warning("cannot publish: \(error)", metadata: ["mqtt.topic": "\(name)"])
            }
        }
    }

    static func newID() -> String { UUID().uuidString.lowercased() }

    // MARK: Status

    /// What has been counted so far.
    public var counts: Statistics {
        var counts = statistics
        counts.resent = tracker.resentCount
        return counts
    }

    /// Detections not yet acknowledged by the server.
    public var undelivered: Int { tracker.count }

    /// The configuration applied now.
    public var appliedConfiguration: CameraConfiguration? { configuration.applied }

    /// The edge watch-list's version.
    public var watchlistVersion: Int? { watchlist.version }

    /// The plates of the edge watch-list, as listed.
    public var watchlistPlates: [String] { watchlist.matcher.entries.map(\.plate) }

    /// Waits until every detection taken so far is acknowledged by the server.
    public func waitUntilDelivered(polling interval: Duration = .milliseconds(50)) async {
        while tracker.count > 0 || !pendingInserts.isEmpty || insertFlushRunning, !Task.isCancelled {
            try? await Task.sleep(for: interval)
        }
    }

    /// The `get_status` result.
    func statusDocument() async -> JSONObject {
        var document = statusFigures()
        document["outbox_messages"] = .int(await client.outboxStatistics.messages)
        return document
    }

    /// The `get_status` figures the agent holds itself. Synchronous and kept apart: Swift 6.3.1's
    /// optimizer crashed (CopyPropagation) on the same reads inside the async function.
    @inline(never)
    private func statusFigures() -> JSONObject {
        var connected = false
        if case .connected = client.state { connected = true }
        let counts = self.counts
        let watchlistEntries: Int = watchlist.matcher.entries.count
        let watchlistVersion: JSONValue = watchlist.version.map { JSONValue.int($0) } ?? .null
        let configurationData: JSONValue = configuration.applied.map { JSONValue.object($0.configData) } ?? .null
        let last: JSONValue = lastDetection.map { JSONValue.timestamp($0) } ?? .null
        var document = JSONObject()
        document["camera_id"] = .string(options.cameraID)
        document["checkpoint_id"] = .string(options.checkpointID)
        document["connected"] = .bool(connected)
        document["uptime_seconds"] = .double((Date().timeIntervalSince(startedAt) * 10).rounded() / 10)
        document["last_detection"] = last
        document["pending_detections"] = .int(tracker.count)
        document["accepted"] = .int(counts.accepted)
        document["delivered"] = .int(counts.delivered)
        document["rejected"] = .int(counts.rejected)
        document["filtered"] = .int(counts.belowConfidence + counts.withinInterval)
        document["resent"] = .int(counts.resent)
        document["watchlist_version"] = watchlistVersion
        document["watchlist_entries"] = .int(watchlistEntries)
        document["configuration"] = configurationData
        return document
    }
}

extension CameraAgent: Service {}
