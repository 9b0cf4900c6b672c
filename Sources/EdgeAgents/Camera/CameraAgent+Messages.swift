import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOCore

extension CameraAgent {
    /// Handles what the server sends the camera, one message at a time, in order.
    func receiveMessages(_ messages: MQTTMessages) async {
        for await message in messages {
            switch LPRTopic(parsing: message.topic) {
            case .detectionAck(let camera)? where camera == options.cameraID:
                receiveAck(message)
                continue
            case .healthRequest(let camera)? where camera == options.cameraID:
                logger.debug("health requested")
                await publishHealth()
            case .configUpdate(let camera)? where camera == options.cameraID:
                // An empty retained message clears the desired configuration: nothing to apply.
                if message.payload.readableBytes > 0 { applyConfiguration(message.payload.readableBytesView) }
            case .control(let camera)? where camera == options.cameraID:
                receiveCommand(message)
            case .blacklistUpdates?:
                if message.payload.readableBytes > 0 { receiveWatchlist(message.payload.readableBytesView) }
            default:
                logger.debug("ignored a message", metadata: ["mqtt.topic": "\(message.topic)"])
            }
            acknowledgeInOrder(message)
        }
    }

    // MARK: Configuration

    func applyConfiguration(_ payload: some Collection<UInt8>) {
        switch configuration.apply(update: payload, now: Date(), messageID: Self.newID()) {
        case .applied(let applied):
            filter.reconfigure(applied)
            do {
                try configuration.save(path: options.configurationPath)
            } catch {
                logger.error("cannot keep the configuration in \(options.configurationPath): \(error)")
            }
            logger.info(
                "configuration applied",
                metadata: [
                    "lpr.config_type": "\(applied.configType)",
                    "lpr.confidence_threshold": "\(applied.confidenceThreshold.map { "\($0)" } ?? "none")",
                    "lpr.detection_interval": "\(applied.detectionInterval.map { "\($0)" } ?? "none")",
                ]
            )
            publish(LPRTopic.config(camera: options.cameraID), applied.json)
        case .unchanged:
            logger.debug("configuration unchanged")
        case .refused(let error):
            logger.warning("refused a configuration update; the applied one stays: \(error)")
        }
    }

    // MARK: Watch-list

    func receiveWatchlist(_ payload: some Collection<UInt8>) {
        switch watchlist.receive(payload: payload) {
        case .replaced(let version, let entries):
            do {
                try watchlist.save(path: options.watchlistPath)
            } catch {
                logger.error("cannot keep the watch-list in \(options.watchlistPath): \(error)")
            }
            logger.info("edge watch-list updated", metadata: ["lpr.watchlist_version": "\(version)", "lpr.watchlist_entries": "\(entries)"])
        case .stale(let version):
            logger.debug("ignored an older watch-list", metadata: ["lpr.watchlist_version": "\(version)"])
        case .refused(let error):
            logger.warning("refused a watch-list update: \(error)")
        }
    }

    // MARK: Control

    func receiveCommand(_ message: MQTTMessage) {
        let now = Date()
        switch planner.plan(payload: message.payload.readableBytesView, cameraID: options.cameraID, now: now) {
        case .runHook(let command):
            guard let hook = options.commandHook else { return }
            logger.info("running the --on-command hook", metadata: ["lpr.command": "\(command.command)", "lpr.message_id": "\(command.messageID)"])
            let input = JSONValue.object(command.json).jsonBytes
            let environment = ["CAMERA_ID": options.cameraID, "COMMAND": command.command, "MESSAGE_ID": command.messageID]
            Task {
                let result = await hook.run(input: input, environment: environment)
                let response = CommandPlanner.response(to: command, hook: result, now: Date())
                self.finished(response, replyingTo: message)
            }
        case .builtIn(let command, let builtIn):
            Task {
                let response = await self.runBuiltIn(builtIn, command)
                self.finished(response, replyingTo: message)
            }
        case .answer(let response):
            answer(response, replyingTo: message)
        case .ignore:
            logger.debug("a command still running arrived again")
        case .invalid(let messageID, let error):
            logger.warning("refused a control message: \(error)")
            if let messageID {
                answer(
                    ControlResponse(messageID: messageID, status: .error, result: ["error": .string(error.description)], timestamp: now),
                    replyingTo: message
                )
            }
        }
    }

    private func finished(_ response: ControlResponse, replyingTo message: MQTTMessage) {
        planner.finished(response)
        answer(response, replyingTo: message)
    }

    /// Publishes an answer on `control/response`, or on the command's MQTT 5 response topic
    /// with its correlation data.
    private func answer(_ response: ControlResponse, replyingTo message: MQTTMessage) {
        statistics.commands += 1
        var properties: Properties = []
        if let correlation = message.properties.correlationData { properties.append(.correlationData(correlation)) }
        var topic = LPRTopic.controlResponse(camera: options.cameraID).name
        if let responseTopic = message.properties.responseTopic, (try? TopicName.validate(responseTopic)) != nil { topic = responseTopic }
        logger.info("answered a command", metadata: ["lpr.message_id": "\(response.messageID)", "lpr.status": "\(response.status.rawValue)"])
        publish(name: topic, ByteBuffer(bytes: JSONValue.object(response.json).jsonBytes), qos: .exactlyOnce, retain: false, properties: properties)
    }

    private func runBuiltIn(_ builtIn: BuiltInCommand, _ command: ControlCommand) async -> ControlResponse {
        let now = Date()
        switch builtIn {
        case .ping:
            return ControlResponse(
                messageID: command.messageID,
                status: .ok,
                result: ["pong": .bool(true), "camera_id": .string(options.cameraID)],
                timestamp: now
            )
        case .getStatus:
            return ControlResponse(messageID: command.messageID, status: .ok, result: await statusDocument(), timestamp: now)
        case .restartCamera:
            let delay = min(300, max(0, command.parameters["delay_seconds"]?.doubleValue ?? 0))
            restart(after: delay)
            return ControlResponse(
                messageID: command.messageID,
                status: .ok,
                result: ["restarting": .bool(true), "delay_seconds": .double(delay)],
                timestamp: now
            )
        }
    }

    /// The built-in restart: the camera goes quiet for `delay` seconds (a simulated camera makes
    /// no detections), then starts afresh: uptime from zero, `online`, configuration and health again.
    private func restart(after delay: TimeInterval) {
        pausedUntil = Date().addingTimeInterval(delay)
        logger.notice("restarting the camera", metadata: ["camera.delay_seconds": "\(delay)"])
        Task {
            try? await Task.sleep(for: .milliseconds(Int64(delay * 1000)))
            await self.restarted()
        }
    }

    private func restarted() async {
        pausedUntil = nil
        startedAt = Date()
        await announce()
    }

    // MARK: Health

    func publishHealthPeriodically() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: options.healthInterval)
            guard !Task.isCancelled else { return }
            await publishHealth()
        }
    }

    /// Publishes a fresh health message (retained, QoS 0) when connected.
    func publishHealth() async {
        guard case .connected = client.state else { return }
        publish(LPRTopic.health(camera: options.cameraID), healthMessage(at: Date()).json)
        statistics.healthPublished += 1
    }

    /// The health message now: the host's figures, or the simulated camera's.
    func healthMessage(at now: Date) -> CameraHealth {
        if var simulated = simulatedHealth {
            let health = simulated.nextHealth(at: now, uptimeSeconds: now.timeIntervalSince(startedAt), lastDetection: lastDetection)
            simulatedHealth = simulated
            return health
        }
        let sample = hostHealth.sample()
        var (status, alerts) = HealthAssessment().assess(sample, now: now)
        let undelivered = tracker.count
        if undelivered > 10 * options.tracking.window {
            status = status == .unhealthy ? .unhealthy : .degraded
            alerts.append(CameraHealth.Alert(level: "warning", message: "\(undelivered) detections waiting for the server's ack", timestamp: now))
        }
        return CameraHealth(
            messageID: Self.newID(),
            timestamp: now,
            cameraID: options.cameraID,
            status: status,
            cpuUsage: sample.cpuUsage,
            memoryUsage: sample.memoryUsage,
            diskUsage: sample.diskUsage,
            networkStatus: "connected",
            cameraStatus: pausedUntil == nil ? "active" : "restarting",
            lastDetection: lastDetection,
            uptimeSeconds: sample.uptimeSeconds,
            temperature: sample.temperature,
            alerts: alerts
        )
    }
}
