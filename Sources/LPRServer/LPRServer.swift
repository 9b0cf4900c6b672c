import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The LPR server: consumes the LPR Server v3 protocol from any MQTT broker, stores every
/// detection exactly once, raises alerts on watch-listed plates, tracks camera health, and
/// pushes configuration and control to cameras.
///
/// Run it as a `Service` in a `ServiceGroup` (``run()``); the configuration, control and
/// watch-list methods are what the REST API calls. It connects like any other client (a
/// persistent session, manual acknowledgement: a detection is acknowledged to the broker only
/// once it is stored, so a server killed mid-batch gets it again) and never assumes our broker.
public final class LPRServer: Service, Sendable {
    public let configuration: LPRServerConfiguration
    public let repository: any LPRRepository
    let client: MQTTClient
    let logger: Logger
    let metrics = LPRMetrics()
    let events = EventBroadcaster()
    let startedAt = Date()

    /// The watch-list in force and its version.
    let watchlistState: NIOLockedValueBox<(version: Int, matcher: WatchlistMatcher)>
    let correlator = NIOLockedValueBox(ControlCorrelator())
    let commandWaiters = NIOLockedValueBox<[String: CheckedContinuation<CommandOutcome, Never>]>([:])
    let ingestQueue = BatchQueue<IngestItem>()
    let storedQueue = BatchQueue<StoredBatch>()
    let otherQueue = BatchQueue<MQTTMessage>()
    let readiness = NIOLockedValueBox<(ready: Bool, waiters: [CheckedContinuation<Void, any Error>], failure: (any Error)?)>((false, [], nil))
    /// Whether this instance holds the lease to publish the periodic system topics.
    let isSystemPublisher = NIOLockedValueBox(false)
    let logLimiter = NIOLockedValueBox<(windowStart: Date, count: Int)>((Date(), 0))
    let stopRequested = NIOLockedValueBox(false)

    /// - Parameters:
    ///   - configuration: broker, session and rules.
    ///   - repository: the store (``SQLiteLPRRepository`` or ``PostgresLPRRepository``).
    ///   - logger: where the server logs; warnings and errors also go to `lprserver/system/logs`.
    public init(configuration: LPRServerConfiguration, repository: any LPRRepository, logger: Logger = Logger(label: "databus.lpr-server")) {
        self.configuration = configuration
        self.repository = repository
        var logger = logger
        logger[metadataKey: "lpr.instance"] = "\(configuration.instanceID)"
        self.logger = logger
        self.client = MQTTClient(configuration: configuration.clientConfiguration, logger: logger)
        self.watchlistState = NIOLockedValueBox((0, WatchlistMatcher(entries: [], maximumDistance: configuration.watchlistMaximumDistance)))
    }

    /// The server's events (stored detections, alerts, camera changes) from now on: the live feed.
    public var liveEvents: AsyncStream<LPRServerEvent> { events.stream() }

    /// The broker connection's state.
    public var connectionState: ConnectionState { client.state }

    // MARK: Running

    /// Connects, subscribes, and serves until graceful shutdown or cancellation.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await serve(stop: stopRequested)
        } onGracefulShutdown: {
            Task { await self.shutdown() }
        }
    }

    /// Stops gracefully: says `offline` on `lprserver/system/status` (the will covers crashes
    /// only), disconnects, and lets ``run()`` return. Detections received and not yet stored
    /// are not acknowledged: the broker delivers them again next time.
    public func shutdown() async {
        stopRequested.withLockedValue { $0 = true }
        if case .connected = client.state {
            if let ticket = try? await client.enqueue(
                topic: LPRTopic.systemStatus.name,
                payload: ByteBuffer(string: "offline"),
                qos: .atLeastOnce,
                retain: true
            ) {
                _ = try? await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { _ = try await ticket.result() }
                    group.addTask { try await Task.sleep(for: .seconds(2)) }
                    try await group.next()
                    group.cancelAll()
                }
            }
        }
        await client.disconnect()
    }

    private func serve(stop: NIOLockedValueBox<Bool>) async throws {
        try await repository.migrate()
        try await loadWatchlist()
        // Made before connecting: a resumed session's queued messages arrive before any SUBSCRIBE returns.
        let messages = client.messages
        try await withThrowingTaskGroup(of: Bool.self) { group in
            // Each task says whether it was the connection: when the connection ends (disconnect
            // on shutdown, or reconnect attempts exhausted) everything else stops with it.
            group.addTask {
                defer {
                    self.ingestQueue.finish()
                    self.otherQueue.finish()
                }
                try await self.client.runUntilStopped()
                return true
            }
            group.addTask {
                await self.watchConnection()
                return false
            }
            group.addTask {
                for await message in messages { self.dispatch(message) }
                return false
            }
            group.addTask {
                await self.ingestLoop()
                return false
            }
            group.addTask {
                await self.announceLoop()
                return false
            }
            group.addTask {
                await self.otherMessagesLoop()
                return false
            }
            group.addTask {
                do {
                    try await self.subscribeAndAnnounce()
                } catch {
                    self.failReadiness(error)
                    throw error
                }
                await self.periodicLoop(stop: stop)
                return false
            }
            do {
                while let wasConnection = try await group.next() {
                    if wasConnection { group.cancelAll() }
                }
            } catch {
                group.cancelAll()
                throw error
            }
        }
        events.finish()
    }

    /// Waits until the server's subscriptions are acknowledged and it announced itself online.
    public func waitUntilReady() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let immediate: Result<Void, any Error>? = readiness.withLockedValue { state in
                if state.ready { return .success(()) }
                if let failure = state.failure { return .failure(failure) }
                state.waiters.append(continuation)
                return nil
            }
            if let immediate { continuation.resume(with: immediate) }
        }
    }

    private func failReadiness(_ error: any Error) {
        let waiters = readiness.withLockedValue { state in
            state.failure = error
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }

    /// Subscribes to the camera → server topics, then publishes its retained `online` and the watch-list.
    private func subscribeAndAnnounce() async throws {
        let shared: [(String, QoS)] = [
            (LPRTopic.Filter.detections, .atLeastOnce), (LPRTopic.Filter.health, .atLeastOnce), (LPRTopic.Filter.status, .atLeastOnce),
            (LPRTopic.Filter.config, .exactlyOnce), (LPRTopic.Filter.configRequests, .exactlyOnce),
            (LPRTopic.Filter.blacklistRequests, .atLeastOnce), (LPRTopic.Filter.systemControl, .exactlyOnce),
        ]
        // Every instance hears every answer (the one that sent the command is waiting) and every watch-list version.
        let own: [(String, QoS)] = [(LPRTopic.Filter.controlResponses, .exactlyOnce), (LPRTopic.Filter.blacklistUpdates, .atLeastOnce)]
        let subscriptions =
            shared.map { Subscription(topicFilter: configuration.shared($0.0), options: SubscriptionOptions(qos: $0.1)) }
            + own.map { Subscription(topicFilter: $0.0, options: SubscriptionOptions(qos: $0.1)) }
        let codes = try await client.subscribe(subscriptions)
        for (subscription, code) in zip(subscriptions, codes) where code.isFailure {
            throw MQTTClientError(.subscriptionRefused, "the broker refused \(subscription.topicFilter) (\(code))", reasonCode: code)
        }
        try await client.publish(topic: LPRTopic.systemStatus.name, payload: "online", qos: .atLeastOnce, retain: true)
        await publishWatchlist()
        let waiters = readiness.withLockedValue { state in
            state.ready = true
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
        logger.info(
            "LPR server ready",
            metadata: [
                "lpr.share_group": "\(configuration.shareGroup ?? "-")", "mqtt.broker": "\(configuration.mqtt.host):\(configuration.mqtt.port)",
            ]
        )
    }

    /// Keeps the connection metrics.
    private func watchConnection() async {
        var wasConnected = false
        var started = false
        for await state in client.states {
            if state != .stopped { started = true }
            switch state {
            case .connected:
                metrics.connectionsTotal.increment()
                metrics.connectionsActive.record(1)
                wasConnected = true
            case .disconnected(let reason):
                metrics.connectionsActive.record(0)
                if !wasConnected { metrics.connectionsFailed.increment() }
                wasConnected = false
                if case .clientDisconnected = reason { continue }
                metrics.error("connection")
            case .stopped:
                metrics.connectionsActive.record(0)
                if started { return }
            default:
                continue
            }
        }
    }

    /// Sends each incoming message to its loop.
    private func dispatch(_ message: MQTTMessage) {
        let now = Date()
        metrics.received(at: now)
        if case .detection(let camera)? = LPRTopic(parsing: message.topic) {
            let decision = DetectionIntake.evaluate(
                cameraID: camera,
                payload: message.payload.readableBytesView,
                receivedAt: now,
                matcher: watchlistState.withLockedValue { $0.matcher }
            )
            ingestQueue.append(IngestItem(message: message, receivedAt: now, decision: decision))
            metrics.queueSize.record(ingestQueue.count)
        } else {
            otherQueue.append(message)
        }
    }

    // MARK: Publishing

    /// Publishes JSON without waiting for the broker; a full outbox is logged, not fatal.
    func publish(_ topic: LPRTopic, _ json: JSONObject, retain: Bool? = nil, properties: Properties = []) async {
        await publish(
            topic.name,
            ByteBuffer(bytes: JSONValue.object(json).jsonBytes),
            qos: QoS(rawValue: UInt8(topic.qos)) ?? .atLeastOnce,
            retain: retain ?? topic.retain,
            properties: properties
        )
    }

    func publish(_ topic: String, _ payload: ByteBuffer, qos: QoS, retain: Bool, properties: Properties = []) async {
        do {
            _ = try await client.enqueue(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
            metrics.sent()
        } catch {
            metrics.messagesFailed.increment()
            metrics.error("publish")
            logger.warning("could not publish", metadata: ["mqtt.topic": "\(topic)", "lpr.error": "\(error)"])
        }
    }

    /// Stores and publishes alerts, and tells the live feed.
    func raise(_ alerts: [Alert], store: Bool = true) async {
        guard !alerts.isEmpty else { return }
        if store {
            do {
                try await repository.insertAlerts(alerts)
            } catch {
                metrics.error("store")
                logger.error("could not store alerts", metadata: ["lpr.error": "\(error)"])
            }
        }
        for alert in alerts {
            await publish(.systemAlerts, alert.json)
            events.publish(.alert(alert))
        }
        metrics.totals.withLockedValue { $0.alerts += alerts.count }
    }

    /// Logs a warning or an error and publishes it on `lprserver/system/logs` (at most 20 a second).
    func report(_ level: Logger.Level, _ message: String, metadata: Logger.Metadata = [:]) async {
        logger.log(level: level, "\(message)", metadata: metadata)
        let now = Date()
        let allowed = logLimiter.withLockedValue { state -> Bool in
            if now.timeIntervalSince(state.windowStart) >= 1 { state = (now, 0) }
            state.count += 1
            return state.count <= 20
        }
        guard allowed else { return }
        var details = JSONObject()
        for (key, value) in metadata { details[key] = .string("\(value)") }
        await publish(
            .systemLogs,
            [
                "level": .string(level.rawValue), "message": .string(message), "timestamp": .timestamp(now),
                "instance": .string(configuration.instanceID), "metadata": .object(details),
            ]
        )
    }

    /// A refused message: a counter, a warning alert, a log line (also on `system/logs`).
    func refused(topic: String, cameraID: String?, errors: [FieldError]) async {
        metrics.error("message_rejected")
        let reasons = errors.prefix(5).map(\.description).joined(separator: "; ")
        let message = "refused a message on \(topic): \(reasons)"
        await report(.warning, message, metadata: ["mqtt.topic": "\(topic)"])
        await raise([
            Alert(
                alertID: Self.newID(),
                level: .warning,
                kind: .messageRejected,
                cameraID: cameraID,
                message: message,
                timestamp: Date(),
                details: ["topic": .string(topic), "errors": .array(errors.map(\.json))]
            )
        ])
    }

    static func newID() -> String { UUID().uuidString.lowercased() }
}

/// A detection message waiting to be stored, with what the intake made of it.
struct IngestItem: Sendable {
    let message: MQTTMessage
    let receivedAt: Date
    let decision: DetectionIntake.Decision
}

/// How a command to a camera ended.
public enum CommandOutcome: Sendable, Hashable {
    /// The camera answered (its status may be `error` or `unsupported`).
    case answered(ControlResponse)
    /// No answer within the timeout.
    case timedOut(messageID: String)
}
