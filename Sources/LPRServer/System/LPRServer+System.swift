import Foundation
import LPRModel
import MQTTClient
import NIOConcurrencyHelpers

extension LPRServer {
    static let systemLease = "system-publisher"

    /// Once a second: command timeouts; by the lease holder only, camera staleness, the periodic
    /// system and checkpoint topics, and the retention purge.
    func periodicLoop(stop: NIOLockedValueBox<Bool>) async {
        let clock = ContinuousClock()
        var nextSystem = clock.now
        var nextStaleness = clock.now
        var nextRetention = clock.now + .seconds(10)
        while !stop.withLockedValue({ $0 }) && !Task.isCancelled && client.state != .stopped {
            let now = Date()
            expireCommands(now: now)
            let instant = clock.now
            if instant >= nextStaleness || instant >= nextSystem {
                let holder = await renewLease(now: now)
                if holder && instant >= nextStaleness {
                    nextStaleness = instant + configuration.stalenessCheckInterval
                    await checkStaleCameras(now: now)
                }
                if instant >= nextSystem {
                    nextSystem = instant + configuration.systemInterval
                    if holder { await publishSystemTopics(now: now) }
                    resetInterval()
                }
                if holder && instant >= nextRetention {
                    nextRetention = instant + configuration.retentionInterval
                    Task { _ = await self.purge() }
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Takes or renews the lease for the periodic publications; `true` when this server holds it.
    private func renewLease(now: Date) async -> Bool {
        let span = max(configuration.systemInterval.seconds, configuration.stalenessCheckInterval.seconds) * 3
        let holder: Bool
        do {
            holder = try await repository.acquireLease(
                Self.systemLease,
                holder: configuration.instanceID,
                until: now.addingTimeInterval(span),
                now: now
            )
        } catch {
            metrics.error("store")
            logger.warning("could not renew the system lease", metadata: ["lpr.error": "\(error)"])
            holder = false
        }
        let changed = isSystemPublisher.withLockedValue { state -> Bool in
            defer { state = holder }
            return state != holder
        }
        if changed {
            logger.info(holder ? "publishing the system topics" : "another server publishes the system topics")
        }
        return holder
    }

    /// Marks cameras silent for too long offline (once: the store decides atomically).
    private func checkStaleCameras(now: Date) async {
        let cameras: [CameraRecord]
        do {
            cameras = try await repository.cameras()
        } catch {
            metrics.error("store")
            return
        }
        var online = 0
        for camera in cameras {
            if camera.online == true { online += 1 }
            guard camera.online != false, let lastHealth = camera.lastHealthAt,
                now.timeIntervalSince(lastHealth) > configuration.cameraHealth.staleAfter.seconds
            else { continue }
            await applyCameraChange(camera.cameraID) { rules, record in rules.check(now: now, record: &record) }
            online -= 1
        }
        metrics.camerasOnline.record(max(0, online))
        metrics.camerasKnown.record(cameras.count)
    }

    /// Starts a new measuring interval for `system/health`.
    private func resetInterval() {
        metrics.totals.withLockedValue { totals in
            totals.intervalMessages = 0
            totals.intervalErrors = 0
            totals.intervalLatencyTotal = 0
            totals.intervalLatencyCount = 0
        }
    }

    /// The seed's health check, from this interval's figures.
    public func systemHealth(now: Date = Date()) -> SystemHealth {
        let totals = metrics.totals.withLockedValue { $0 }
        let seconds = max(1, configuration.systemInterval.seconds)
        let connected: Bool
        if case .connected = client.state { connected = true } else { connected = false }
        let rate = Double(totals.intervalMessages) / seconds
        let errorRate = totals.intervalMessages > 0 ? Double(totals.intervalErrors) / Double(totals.intervalMessages) : 0
        let latency = totals.intervalLatencyCount > 0 ? totals.intervalLatencyTotal / Double(totals.intervalLatencyCount) : 0
        metrics.throughput.record(rate)
        let status = !connected ? "unhealthy" : (errorRate > 0.05 ? "degraded" : "healthy")
        return SystemHealth(
            status: status,
            timestamp: now,
            connectionStatus: connected ? "connected" : "disconnected",
            lastMessageReceived: totals.lastMessageReceived,
            messageRate: rate,
            errorRate: errorRate,
            latencyMs: latency
        )
    }

    /// The counters published on `system/monitoring`.
    public func monitoringCounters(now: Date = Date()) -> JSONObject {
        let totals = metrics.totals.withLockedValue { $0 }
        return [
            "timestamp": .timestamp(now),
            "instance": .string(configuration.instanceID),
            "uptime_seconds": .int(Int(now.timeIntervalSince(startedAt))),
            "messages_received": .int(totals.messagesReceived),
            "messages_sent": .int(totals.messagesSent),
            "errors": .int(totals.errors),
            "detections_received": .int(totals.detectionsReceived),
            "detections_stored": .int(totals.detectionsStored),
            "detections_duplicate": .int(totals.duplicates),
            "detections_rejected": .int(totals.rejected),
            "watchlist_hits": .int(totals.watchlistHits),
            "alerts": .int(totals.alerts),
            "ingest_batches": .int(totals.batches),
            "ingest_queue": .int(ingestQueue.count),
            "commands_sent": .int(totals.commandsSent),
            "commands_timed_out": .int(totals.commandsTimedOut),
            "watchlist_version": .int(watchlistState.withLockedValue { $0.version }),
        ]
    }

    private func publishSystemTopics(now: Date) async {
        await publish(.systemHealth, systemHealth(now: now).json)
        var counters = monitoringCounters(now: now)
        if let cameras = try? await repository.cameras() {
            counters["cameras_known"] = .int(cameras.count)
            counters["cameras_online"] = .int(cameras.filter { $0.online == true }.count)
        }
        await publish(.systemMonitoring, counters)
        // Re-asserted: another server's will may have said offline when it went away.
        await publish(LPRTopic.systemStatus.name, .init(string: "online"), qos: .atLeastOnce, retain: true)
        await publishCheckpoints(now: now)
    }

    /// Publishes every checkpoint's status and analytics.
    func publishCheckpoints(now: Date) async {
        do {
            let cameras = try await repository.cameras()
            let figures = try await repository.checkpointFigures(since: now.addingTimeInterval(-3600))
            let checkpoints = Set(cameras.compactMap(\.checkpointID)).union(figures.map(\.checkpointID))
            for checkpoint in checkpoints.sorted() {
                let members = cameras.filter { $0.checkpointID == checkpoint }.map { (id: $0.cameraID, online: $0.online == true) }
                await publish(
                    .checkpointStatus(checkpoint: checkpoint),
                    CheckpointStatus(checkpointID: checkpoint, timestamp: now, cameras: members).json
                )
                let figure = figures.first { $0.checkpointID == checkpoint }
                let analytics = CheckpointAnalytics(
                    checkpointID: checkpoint,
                    timestamp: now,
                    detectionsPerHour: figure?.detections ?? 0,
                    uniquePlates: figure?.uniquePlates ?? 0,
                    watchlistHits: figure?.watchlistHits ?? 0,
                    meanConfidence: figure?.meanConfidence
                )
                await publish(.checkpointAnalytics(checkpoint: checkpoint), analytics.json)
            }
        } catch {
            metrics.error("store")
            logger.warning("could not publish the checkpoints", metadata: ["lpr.error": "\(error)"])
        }
    }

    /// Publishes one checkpoint's status now (a camera at it changed).
    func publishCheckpointStatus(_ checkpoint: String) async {
        guard let cameras = try? await repository.cameras() else { return }
        let members = cameras.filter { $0.checkpointID == checkpoint }.map { (id: $0.cameraID, online: $0.online == true) }
        await publish(.checkpointStatus(checkpoint: checkpoint), CheckpointStatus(checkpointID: checkpoint, timestamp: Date(), cameras: members).json)
    }

    /// Deletes detections past the retention age or count, and health history, alerts and
    /// commands past theirs, a few thousand rows per transaction with pauses between, so ingest
    /// is never held up for long. - Returns: how many detections went.
    public func purge() async -> Int {
        var detections = 0
        let age = configuration.retentionAge
        let keep = configuration.retentionMaximumDetections
        if age != nil || keep != nil {
            let cutoff = age.map { Date().addingTimeInterval(-$0.seconds) }
            detections = await purgeInBatches(of: "detections") { [repository] limit in
                try await repository.purgeDetections(receivedBefore: cutoff, keepingNewest: keep, limit: limit)
            }
            if detections > 0 { logger.info("purged detections by retention", metadata: ["lpr.purged": "\(detections)"]) }
        }
        if let historyAge = configuration.historyRetentionAge {
            let cutoff = Date().addingTimeInterval(-historyAge.seconds)
            let rows = await purgeInBatches(of: "health history, alerts and commands") { [repository] limit in
                try await repository.purgeHistory(before: cutoff, limit: limit)
            }
            if rows > 0 { logger.info("purged health history, alerts and commands by retention", metadata: ["lpr.purged": "\(rows)"]) }
        }
        return detections
    }

    /// Calls `delete` with a limit until it deletes nothing more, pausing between calls.
    private func purgeInBatches(of what: String, _ delete: @Sendable (Int) async throws -> Int) async -> Int {
        let limit = 5000
        var total = 0
        while !Task.isCancelled {
            let deleted: Int
            do {
                deleted = try await delete(limit)
            } catch {
                metrics.error("store")
                await report(.error, "the retention purge of \(what) failed", metadata: ["lpr.error": "\(error)"])
                break
            }
            total += deleted
            if deleted == 0 { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return total
    }

    // MARK: System commands

    func receiveSystemCommand(payload: some Collection<UInt8>, topic: String) async {
        let command: SystemCommand
        do {
            command = try SystemCommand(validating: JSONObject.parse(payload))
        } catch {
            await refused(topic: topic, cameraID: nil, errors: error.errors)
            if let json = try? JSONObject.parse(payload), let id = Detection.messageID(in: json) {
                await answerSystemCommand(id, status: "error", result: ["errors": .array(error.errors.map(\.json))])
            }
            return
        }
        do {
            switch SystemCommand.Command(rawValue: command.command) {
            case .reloadWatchlist:
                try await loadWatchlist()
                await publishWatchlist()
                await answerSystemCommand(command.messageID, status: "ok", result: ["version": .int(watchlist().version)])
            case .resendConfigurations:
                let count = try await resendConfigurations()
                await answerSystemCommand(command.messageID, status: "ok", result: ["cameras": .int(count)])
            case .purge:
                let purged = await purge()
                await answerSystemCommand(command.messageID, status: "ok", result: ["purged": .int(purged)])
            case .status:
                var result = monitoringCounters()
                result["health"] = .object(systemHealth().json)
                await answerSystemCommand(command.messageID, status: "ok", result: result)
            case .requestHealth:
                let cameras = try await repository.cameras()
                for camera in cameras { try await requestHealth(camera: camera.cameraID) }
                await answerSystemCommand(command.messageID, status: "ok", result: ["cameras": .int(cameras.count)])
            case nil:
                let known = SystemCommand.Command.allCases.map(\.rawValue).joined(separator: ", ")
                await answerSystemCommand(
                    command.messageID,
                    status: "unsupported",
                    result: ["error": .string("unknown command \"\(command.command)\"; known: \(known)")]
                )
            }
        } catch {
            await answerSystemCommand(command.messageID, status: "error", result: ["error": .string("\(error)")])
        }
    }

    private func answerSystemCommand(_ messageID: String, status: String, result: JSONObject) async {
        await publish(
            .systemControlResponse,
            ["message_id": .string(messageID), "status": .string(status), "result": .object(result), "timestamp": .timestamp(Date())]
        )
    }
}
