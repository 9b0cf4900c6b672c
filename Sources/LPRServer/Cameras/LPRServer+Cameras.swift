import Foundation
import LPRModel
import MQTTClient
import MQTTCore
import NIOCore

extension LPRServer {
    /// Handles everything that is not a detection, one message at a time, acknowledging each
    /// to the broker once handled.
    func otherMessagesLoop() async {
        while let batch = await otherQueue.next(maximum: 100) {
            for message in batch {
                await handle(message)
                await client.acknowledge(message)
            }
        }
    }

    private func handle(_ message: MQTTMessage) async {
        let bytes = message.payload.readableBytesView
        switch LPRTopic(parsing: message.topic) {
        case .health(let camera)?:
            // An empty retained message clears a camera's health: nothing to record.
            guard !bytes.isEmpty else { return }
            await receiveHealth(camera: camera, payload: bytes, topic: message.topic, retained: message.retain)
        case .status(let camera)?:
            guard !bytes.isEmpty else { return }
            guard let availability = CameraAvailability(payload: bytes) else {
                await refused(
                    topic: message.topic,
                    cameraID: camera,
                    errors: [FieldError(path: "", reason: "expected online or offline")]
                )
                return
            }
            await applyCameraChange(camera) { rules, record in rules.availability(availability, receivedAt: Date(), record: &record) }
        case .config(let camera)?:
            guard !bytes.isEmpty else { return }
            await receiveReportedConfiguration(camera: camera, payload: bytes, topic: message.topic)
        case .configRequest(let camera)?:
            await receiveConfigurationRequest(camera: camera, payload: bytes, topic: message.topic)
        case .controlResponse(let camera)?:
            await receiveControlResponse(camera: camera, message: message)
        case .blacklistRequest?:
            await publishWatchlist()
        case .blacklistUpdates?:
            await receiveWatchlistUpdate(payload: bytes)
        case .systemControl?:
            await receiveSystemCommand(payload: bytes, topic: message.topic)
        default:
            logger.debug("ignored a message on a topic the server does not handle", metadata: ["mqtt.topic": "\(message.topic)"])
        }
    }

    // MARK: Health and availability

    private func receiveHealth(camera: String, payload: some Collection<UInt8>, topic: String, retained: Bool) async {
        let health: CameraHealth
        do {
            health = try CameraHealth(validating: JSONObject.parse(payload), topicCamera: camera)
        } catch {
            // A stale retained message refused once is not refused again at every restart.
            if !retained { await refused(topic: topic, cameraID: camera, errors: error.errors) }
            return
        }
        let now = Date()
        // The retained health a broker hands a (re)starting server may be one it has seen: then
        // it says nothing new, and must not bring a camera that went silent back online.
        let isNew = await isNewHealth(health, camera: camera, retained: retained)
        guard isNew else { return }
        await applyCameraChange(camera) { rules, record in rules.health(health, receivedAt: now, checkpointID: nil, record: &record) }
        events.publish(.cameraHealth(cameraID: camera, status: health.status.rawValue))
        do {
            try await repository.appendHealth(
                HealthRecord(cameraID: camera, receivedAt: now, status: health.status.rawValue, payload: JSONValue.object(health.json).jsonText)
            )
        } catch {
            metrics.error("store")
            await report(.error, "could not store a health message", metadata: ["lpr.camera_id": "\(camera)", "lpr.error": "\(error)"])
        }
    }

    /// Whether a health message is one the store has not recorded yet (only retained ones can be old).
    private func isNewHealth(_ health: CameraHealth, camera: String, retained: Bool) async -> Bool {
        guard retained, let previous = try? await repository.camera(camera)?.health,
            let previousID = (try? JSONObject.parse(Array(previous.utf8)))?["message_id"]?.stringValue
        else { return true }
        return previousID != health.messageID
    }

    /// Changes a camera's record atomically in the store, then raises what the change means.
    func applyCameraChange(
        _ camera: String,
        _ change: @escaping @Sendable (CameraHealthRules, inout CameraRecord) -> [CameraHealthRules.Event]
    ) async {
        let rules = configuration.cameraHealth
        let result: (events: [CameraHealthRules.Event], checkpoint: String?)
        do {
            result = try await repository.updateCamera(camera) { record in
                let events = change(rules, &record)
                return (events, record.checkpointID)
            }
        } catch {
            metrics.error("store")
            await report(.error, "could not update a camera", metadata: ["lpr.camera_id": "\(camera)", "lpr.error": "\(error)"])
            return
        }
        await raise(cameraEvents: result.events, camera: camera, checkpoint: result.checkpoint)
    }

    func raise(cameraEvents: [CameraHealthRules.Event], camera: String, checkpoint: String?) async {
        guard !cameraEvents.isEmpty else { return }
        let now = Date()
        var alerts: [Alert] = []
        var details: JSONObject = [:]
        if let checkpoint { details["checkpoint_id"] = .string(checkpoint) }
        for event in cameraEvents {
            switch event {
            case .wentOffline(let reason):
                events.publish(.cameraStatus(cameraID: camera, online: false))
                alerts.append(
                    Alert(
                        alertID: Self.newID(),
                        level: .warning,
                        kind: .cameraOffline,
                        cameraID: camera,
                        message: "camera \(camera) is offline: \(reason)",
                        timestamp: now,
                        details: details
                    )
                )
            case .cameBack:
                events.publish(.cameraStatus(cameraID: camera, online: true))
                alerts.append(
                    Alert(
                        alertID: Self.newID(),
                        level: .info,
                        kind: .cameraOnline,
                        cameraID: camera,
                        message: "camera \(camera) is back online",
                        timestamp: now,
                        details: details
                    )
                )
            case .appeared:
                events.publish(.cameraStatus(cameraID: camera, online: true))
            case .problem(let key, let level, let message):
                var problemDetails = details
                problemDetails["problem"] = .string(key)
                alerts.append(
                    Alert(
                        alertID: Self.newID(),
                        level: level,
                        kind: .cameraHealth,
                        cameraID: camera,
                        message: message,
                        timestamp: now,
                        details: problemDetails
                    )
                )
            case .recovered:
                continue
            }
        }
        await raise(alerts)
        if let checkpoint, cameraEvents.contains(where: { if case .problem = $0 { return false } else { return true } }),
            isSystemPublisher.withLockedValue({ $0 })
        {
            await publishCheckpointStatus(checkpoint)
        }
    }

    // MARK: Configuration

    /// Sets a camera's desired configuration: records it and publishes it retained on
    /// `config/update` (QoS 2), so a camera that is offline gets it when it comes back.
    ///
    /// - Returns: the configuration message as published.
    @discardableResult
    public func setConfiguration(camera: String, configType: String, configData: JSONObject) async throws -> CameraConfiguration {
        guard LPRTopic.isValidIdentifier(camera) else { throw LPRServerError.invalidCameraID(camera) }
        var reader = FieldReader()
        CameraConfiguration.checkConfigData(configData, with: &reader)
        try reader.check()
        let message = CameraConfiguration(
            messageID: Self.newID(),
            timestamp: Date(),
            cameraID: camera,
            configType: configType,
            configData: configData
        )
        let text = JSONValue.object(message.json).jsonText
        let now = Date()
        try await repository.updateCamera(camera) { record in
            record.desiredConfig = text
            record.desiredAt = now
        }
        await publish(.configUpdate(camera: camera), message.json)
        return message
    }

    private func receiveReportedConfiguration(camera: String, payload: some Collection<UInt8>, topic: String) async {
        let reported: CameraConfiguration
        do {
            reported = try CameraConfiguration(validating: JSONObject.parse(payload), topicCamera: camera)
        } catch {
            await refused(topic: topic, cameraID: camera, errors: error.errors)
            return
        }
        let text = JSONValue.object(reported.json).jsonText
        let now = Date()
        await applyCameraChange(camera) { rules, record in
            record.reportedConfig = text
            record.reportedAt = now
            return rules.markSeen(at: now, checkpointID: nil, record: &record)
        }
        events.publish(.configurationReported(cameraID: camera))
    }

    private func receiveConfigurationRequest(camera: String, payload: some Collection<UInt8>, topic: String) async {
        do {
            _ = try ConfigurationRequest(validating: JSONObject.parse(payload), topicCamera: camera)
        } catch {
            await refused(topic: topic, cameraID: camera, errors: error.errors)
            return
        }
        do {
            guard let desired = try await repository.camera(camera)?.desiredConfig else {
                logger.info("a camera asked for its configuration; none is set", metadata: ["lpr.camera_id": "\(camera)"])
                return
            }
            await publish(LPRTopic.configUpdate(camera: camera).name, ByteBuffer(string: desired), qos: .exactlyOnce, retain: true)
        } catch {
            metrics.error("store")
            await report(.error, "could not read a camera's configuration", metadata: ["lpr.camera_id": "\(camera)", "lpr.error": "\(error)"])
        }
    }

    /// Publishes every camera's desired configuration again (system command `resend_configurations`).
    func resendConfigurations() async throws -> Int {
        var count = 0
        for camera in try await repository.cameras() {
            guard let desired = camera.desiredConfig else { continue }
            await publish(LPRTopic.configUpdate(camera: camera.cameraID).name, ByteBuffer(string: desired), qos: .exactlyOnce, retain: true)
            count += 1
        }
        return count
    }

    // MARK: Health requests

    /// Asks a camera for a fresh health message (`health/request`).
    public func requestHealth(camera: String) async throws {
        guard LPRTopic.isValidIdentifier(camera) else { throw LPRServerError.invalidCameraID(camera) }
        await publish(.healthRequest(camera: camera), HealthRequest(messageID: Self.newID(), timestamp: Date()).json)
    }

    // MARK: Control

    /// Sends a command to a camera and waits for its answer on `control/response`, correlated by
    /// the command's `message_id` (or MQTT 5 correlation data), for at most `timeout`.
    public func sendCommand(
        camera: String,
        command: String,
        parameters: JSONObject = [:],
        priority: ControlCommand.Priority = .normal,
        timeout: Duration = .seconds(10)
    ) async throws -> CommandOutcome {
        guard LPRTopic.isValidIdentifier(camera) else { throw LPRServerError.invalidCameraID(camera) }
        guard !command.isEmpty else { throw MessageValidationError(path: "command", reason: "must not be empty") }
        let timeout = min(timeout, configuration.maximumCommandTimeout)
        let message = ControlCommand(
            messageID: Self.newID(),
            timestamp: Date(),
            cameraID: camera,
            command: command,
            parameters: parameters,
            priority: priority
        )
        try await repository.recordCommand(message, sentAt: message.timestamp)
        let deadline = Date().addingTimeInterval(timeout.seconds)
        let outcome: CommandOutcome = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                commandWaiters.withLockedValue { $0[message.messageID] = continuation }
                correlator.withLockedValue { $0.sent(message, deadline: deadline) }
                Task {
                    var properties: Properties = []
                    if configuration.mqtt.protocolVersion == .v5 {
                        properties = [
                            .responseTopic(LPRTopic.controlResponse(camera: camera).name),
                            .correlationData(ByteBuffer(string: message.messageID)),
                        ]
                    }
                    await self.publish(.control(camera: camera), message.json, properties: properties)
                    self.metrics.totals.withLockedValue { $0.commandsSent += 1 }
                }
            }
        } onCancel: {
            _ = correlator.withLockedValue { $0.cancel(messageID: message.messageID) }
            commandWaiters.withLockedValue { $0.removeValue(forKey: message.messageID) }?.resume(returning: .timedOut(messageID: message.messageID))
        }
        switch outcome {
        case .answered(let response):
            try? await repository.recordCommandOutcome(
                messageID: message.messageID,
                status: response.status.rawValue,
                response: response.json,
                at: Date()
            )
            events.publish(.commandFinished(cameraID: camera, messageID: message.messageID, status: response.status.rawValue))
        case .timedOut:
            try? await repository.recordCommandOutcome(messageID: message.messageID, status: "timeout", response: nil, at: Date())
            events.publish(.commandFinished(cameraID: camera, messageID: message.messageID, status: "timeout"))
        }
        return outcome
    }

    private func receiveControlResponse(camera: String, message: MQTTMessage) async {
        let correlation = message.properties.correlationData.map { String(buffer: $0) }
        let json: JSONObject
        do {
            json = try JSONObject.parse(message.payload.readableBytesView)
        } catch {
            await refused(topic: message.topic, cameraID: camera, errors: error.errors)
            return
        }
        let messageID = json["message_id"]?.stringValue
        let command = correlator.withLockedValue { $0.answer(cameraID: camera, messageID: messageID, correlation: correlation) }
        let response: ControlResponse
        do {
            response = try ControlResponse(validating: json, correlatedMessageID: command?.messageID ?? correlation)
        } catch {
            await refused(topic: message.topic, cameraID: camera, errors: error.errors)
            if let command {
                // The command is answered, badly: its waiter hears an error rather than a timeout.
                let broken = ControlResponse(
                    messageID: command.messageID,
                    status: .error,
                    result: ["error": .string("malformed answer: \(error.description)"), "answer": .object(json)],
                    timestamp: Date()
                )
                commandWaiters.withLockedValue { $0.removeValue(forKey: command.messageID) }?.resume(returning: .answered(broken))
            }
            return
        }
        if let command, let waiter = commandWaiters.withLockedValue({ $0.removeValue(forKey: command.messageID) }) {
            waiter.resume(returning: .answered(response))
            return
        }
        // Late, or for a command another server sent: recorded if the store knows the command.
        do {
            try await repository.recordCommandOutcome(
                messageID: response.messageID,
                status: response.status.rawValue,
                response: response.json,
                at: Date()
            )
        } catch {
            metrics.error("store")
        }
    }

    /// Times out commands whose deadline passed.
    func expireCommands(now: Date) {
        let expired = correlator.withLockedValue { $0.expire(now: now) }
        guard !expired.isEmpty else { return }
        metrics.totals.withLockedValue { $0.commandsTimedOut += expired.count }
        for command in expired {
            commandWaiters.withLockedValue { $0.removeValue(forKey: command.messageID) }?.resume(returning: .timedOut(messageID: command.messageID))
        }
    }
}

/// A request to the server that cannot be carried out.
public enum LPRServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Not usable in a topic level (empty, or with `/`, `+`, `#`).
    case invalidCameraID(String)

    public var description: String {
        switch self {
        case .invalidCameraID(let id): "invalid camera id \"\(id)\": it must be non-empty without '/', '+', '#' or control characters"
        }
    }
}
