import Foundation
import LPRModel
import MQTTClient
import MQTTCore
import NIOCore

extension LPRServer {
    /// Stores detections in batches: everything that arrived while the previous batch was being
    /// committed goes in the next transaction. Only after the commit are the acks published,
    /// the watch-list hits announced and the messages acknowledged to the broker.
    func ingestLoop() async {
        var retryDelay = Duration.milliseconds(100)
        var pending: [IngestItem]? = nil
        while true {
            let batch: [IngestItem]
            if let retry = pending {
                batch = retry
            } else if let next = await ingestQueue.next(maximum: configuration.maximumBatchSize) {
                batch = next
            } else {
                return
            }
            metrics.queueSize.record(ingestQueue.count)
            let records = batch.compactMap { item -> DetectionRecord? in
                if case .accepted(let accepted) = item.decision { return accepted.record }
                return nil
            }
            let started = ContinuousClock.now
            let outcomes: [StoreOutcome]
            do {
                outcomes = try await repository.storeDetections(records)
            } catch {
                // Nothing is acknowledged: the batch is tried again, and the broker keeps it meanwhile.
                metrics.error("store")
                await report(.error, "could not store \(records.count) detections; retrying", metadata: ["lpr.error": "\(error)"])
                if Task.isCancelled || client.state == .stopped { return }
                try? await Task.sleep(for: retryDelay)
                retryDelay = min(retryDelay * 2, .seconds(5))
                pending = batch
                continue
            }
            pending = nil
            retryDelay = .milliseconds(100)
            metrics.batchSeconds.recordNanoseconds(Int64((ContinuousClock.now - started).seconds * 1e9))
            await finish(batch, outcomes: outcomes)
        }
    }

    /// After the commit: acks, notifications, alerts, the live feed, then the broker's acknowledgement.
    private func finish(_ batch: [IngestItem], outcomes: [StoreOutcome]) async {
        let now = Date()
        var outcomeIterator = outcomes.makeIterator()
        var stored = 0
        var duplicates = 0
        var rejected = 0
        var hits = 0
        var latencyTotal = 0.0
        for item in batch {
            switch item.decision {
            case .accepted(let accepted):
                let outcome = outcomeIterator.next() ?? .duplicate
                let detection = accepted.detection
                let ack = DetectionAck(messageID: detection.messageID, status: outcome == .stored ? .stored : .duplicate, timestamp: now)
                await publish(.detectionAck(camera: detection.cameraID), ack.json)
                if outcome == .stored {
                    stored += 1
                    hits += accepted.matches.count
                    for (match, alert) in zip(accepted.matches, accepted.record.alerts) {
                        let notification = WatchlistNotification(
                            messageID: Self.newID(),
                            timestamp: now,
                            cameraID: detection.cameraID,
                            checkpointID: detection.checkpointID,
                            plateNumber: match.plateNumber,
                            matchedPlate: match.entry.plate,
                            distance: match.distance,
                            reason: match.entry.reason,
                            level: match.entry.level,
                            entryID: match.entry.id,
                            detectionMessageID: detection.messageID
                        )
                        await publish(.blacklistNotifications, notification.json)
                        await publish(.systemAlerts, alert.json)
                        events.publish(.alert(alert))
                    }
                    if events.hasListeners {
                        events.publish(
                            .detection(
                                StoredDetection(
                                    sequence: 0,
                                    messageID: detection.messageID,
                                    cameraID: detection.cameraID,
                                    checkpointID: detection.checkpointID,
                                    capturedAt: detection.timestamp,
                                    receivedAt: item.receivedAt,
                                    confidence: accepted.record.confidence,
                                    plates: detection.plateNumbers,
                                    payload: accepted.record.payload
                                ),
                                watchlistHit: !accepted.matches.isEmpty
                            )
                        )
                    }
                } else {
                    duplicates += 1
                }
                latencyTotal += now.timeIntervalSince(item.receivedAt) * 1000
            case .rejected(let rejection):
                rejected += 1
                if let messageID = rejection.messageID {
                    let ack = DetectionAck(messageID: messageID, status: .rejected, errors: rejection.errors, timestamp: now)
                    await publish(.detectionAck(camera: rejection.cameraID), ack.json)
                }
                await refused(topic: item.message.topic, cameraID: rejection.cameraID, errors: rejection.errors)
            }
        }
        await client.acknowledge(batch.map(\.message))
        metrics.detectionsStored.increment(by: stored)
        metrics.detectionsDuplicate.increment(by: duplicates)
        metrics.detectionsRejected.increment(by: rejected)
        metrics.watchlistHits.increment(by: hits)
        let accepted = stored + duplicates
        if accepted > 0 { metrics.latency.record(latencyTotal / Double(accepted)) }
        metrics.totals.withLockedValue { totals in
            totals.detectionsReceived += batch.count
            totals.detectionsStored += stored
            totals.duplicates += duplicates
            totals.rejected += rejected
            totals.watchlistHits += hits
            totals.alerts += hits
            totals.batches += 1
            totals.intervalLatencyTotal += latencyTotal
            totals.intervalLatencyCount += accepted
        }
    }
}
