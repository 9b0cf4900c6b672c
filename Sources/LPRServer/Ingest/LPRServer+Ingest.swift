import Foundation
import LPRModel
import MQTTClient
import MQTTCore
import NIOCore

/// A stored batch on its way to being announced and acknowledged.
struct StoredBatch: Sendable {
    let items: [IngestItem]
    let outcomes: [StoreOutcome]
}

extension LPRServer {
    /// Stores detections in batches: everything that arrived while the previous batch was being
    /// committed goes in the next transaction. A committed batch goes to ``announceLoop()``,
    /// which publishes its acks and acknowledges it to the broker while the next one commits.
    func ingestLoop() async {
        defer { storedQueue.finish() }
        var retryDelay = Duration.milliseconds(100)
        var pending: [IngestItem]? = nil
        while true {
            var batch: [IngestItem]
            if let retry = pending {
                batch = retry
                // A lone detection that failed is tried again with what came since, so that one
                // the store can never keep is found out (see isolateUnstorable) instead of
                // holding up everything behind it.
                if batch.count < configuration.maximumBatchSize && ingestQueue.count > 0,
                    let more = await ingestQueue.next(maximum: configuration.maximumBatchSize - batch.count)
                {
                    batch += more
                }
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
                metrics.error("store")
                if records.count > 1, let (stored, rest) = await isolateUnstorable(batch) {
                    storedQueue.append(stored)
                    pending = rest.isEmpty ? nil : rest
                    continue
                }
                // Nothing is acknowledged: the batch is tried again, and the broker keeps it meanwhile.
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
            storedQueue.append(StoredBatch(items: batch, outcomes: outcomes))
        }
    }

    /// A batch the store refused may hold a detection it can never keep (a constraint nobody
    /// foresaw): its detections are stored one at a time. One that fails while a later one is
    /// stored is unstorable — the store works — and is rejected with the store's error, so that
    /// it cannot hold up every camera. Those after the last one stored go back to be tried
    /// again (the store may have just gone down).
    /// - Returns: the part of the batch dealt with and the rest, or `nil` when nothing could be
    ///   stored (the store is failing: the whole batch waits).
    private func isolateUnstorable(_ batch: [IngestItem]) async -> (StoredBatch, rest: [IngestItem])? {
        var results: [(index: Int, outcome: Result<StoreOutcome, any Error>)] = []
        var lastStored: Int?
        for (index, item) in batch.enumerated() {
            guard case .accepted(let accepted) = item.decision else { continue }
            do {
                let outcome = try await repository.storeDetections([accepted.record])
                results.append((index, .success(outcome.first ?? .duplicate)))
                lastStored = index
            } catch {
                results.append((index, .failure(error)))
            }
        }
        guard let lastStored else { return nil }
        var items = Array(batch[...lastStored])
        var outcomes: [StoreOutcome] = []
        for (index, result) in results where index <= lastStored {
            switch result {
            case .success(let outcome):
                outcomes.append(outcome)
            case .failure(let error):
                guard case .accepted(let accepted) = items[index].decision else { continue }
                let detection = accepted.detection
                await report(
                    .error,
                    "the store cannot keep detection \(detection.messageID) from \(detection.cameraID); rejecting it",
                    metadata: ["lpr.error": "\(error)"]
                )
                items[index] = IngestItem(
                    message: items[index].message,
                    receivedAt: items[index].receivedAt,
                    decision: .rejected(
                        DetectionIntake.Rejected(
                            cameraID: detection.cameraID,
                            messageID: detection.messageID,
                            errors: [FieldError(path: "", reason: "the store cannot keep this detection: \(error)")]
                        )
                    )
                )
            }
        }
        return (StoredBatch(items: items, outcomes: outcomes), Array(batch[(lastStored + 1)...]))
    }

    /// Announces committed batches in order: acks, notifications, alerts, the live feed, then
    /// the broker's acknowledgement.
    func announceLoop() async {
        while let batches = await storedQueue.next(maximum: 16) {
            for batch in batches { await announce(batch) }
        }
    }

    private func announce(_ stored: StoredBatch) async {
        let batch = stored.items
        let now = Date()
        let timestamp = JSONValue.timestamp(now)
        var outcomeIterator = stored.outcomes.makeIterator()
        var outgoing: [MQTTClient.OutgoingMessage] = []
        outgoing.reserveCapacity(batch.count)
        var alertsRaised: [Alert] = []
        var refusals: [(topic: String, cameraID: String, errors: [FieldError])] = []
        var storedCount = 0
        var duplicates = 0
        var rejected = 0
        var hits = 0
        var latencyTotal = 0.0
        func add(_ topic: LPRTopic, _ json: JSONObject) {
            outgoing.append(
                MQTTClient.OutgoingMessage(
                    topic: topic.name,
                    payload: ByteBuffer(bytes: JSONValue.object(json).jsonBytes),
                    qos: QoS(rawValue: UInt8(topic.qos)) ?? .atLeastOnce,
                    retain: topic.retain
                )
            )
        }
        for item in batch {
            switch item.decision {
            case .accepted(let accepted):
                let outcome = outcomeIterator.next() ?? .duplicate
                let detection = accepted.detection
                if outcome == .otherCamera {
                    rejected += 1
                    let errors = [
                        FieldError(path: "message_id", reason: "\"\(detection.messageID)\" is already the message_id of another camera's detection")
                    ]
                    add(
                        .detectionAck(camera: detection.cameraID),
                        DetectionAck(messageID: detection.messageID, status: .rejected, errors: errors, timestamp: now).json
                    )
                    refusals.append((item.message.topic, detection.cameraID, errors))
                    continue
                }
                add(
                    .detectionAck(camera: detection.cameraID),
                    [
                        "message_id": .string(detection.messageID), "status": .string(outcome == .stored ? "stored" : "duplicate"), "errors": [],
                        "timestamp": timestamp,
                    ]
                )
                if outcome == .stored {
                    storedCount += 1
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
                        add(.blacklistNotifications, notification.json)
                        add(.systemAlerts, alert.json)
                        alertsRaised.append(alert)
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
                    add(.detectionAck(camera: rejection.cameraID), ack.json)
                }
                refusals.append((item.message.topic, rejection.cameraID, rejection.errors))
            }
        }
        let failures = await client.enqueue(outgoing).compactMap { $0 }
        metrics.sent(count: outgoing.count - failures.count)
        if let failure = failures.first {
            metrics.messagesFailed.increment(by: failures.count)
            metrics.error("publish")
            logger.warning("could not publish acks", metadata: ["lpr.failed": "\(failures.count)", "lpr.error": "\(failure)"])
        }
        for alert in alertsRaised { events.publish(.alert(alert)) }
        for refusal in refusals { await refused(topic: refusal.topic, cameraID: refusal.cameraID, errors: refusal.errors) }
        await client.acknowledge(batch.map(\.message))
        metrics.detectionsStored.increment(by: storedCount)
        metrics.detectionsDuplicate.increment(by: duplicates)
        metrics.detectionsRejected.increment(by: rejected)
        metrics.watchlistHits.increment(by: hits)
        let accepted = storedCount + duplicates
        if accepted > 0 { metrics.latency.record(latencyTotal / Double(accepted)) }
        metrics.totals.withLockedValue { totals in
            totals.detectionsReceived += batch.count
            totals.detectionsStored += storedCount
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
