import Foundation
import LPRModel
import Logging
import MQTTClient
import MQTTCore
import NIOCore

extension CameraAgent {
    /// What became of a detection handed to the agent.
    public enum SubmitOutcome: Sendable, Hashable {
        /// Journaled; it will be published until the server acknowledges it.
        case accepted(messageID: String)
        /// Taken before (the same `message_id` is still waiting for its ack).
        case alreadyPending(messageID: String)
        /// Held back by the applied configuration's `confidence_threshold` or `detection_interval`.
        case filtered(messageID: String, reason: String)
    }

    /// Takes a detection as an AI engine wrote it: completes its envelope, runs the edge
    /// watch-list, applies the configuration's filters, and journals it durably before
    /// returning, so that an `accepted` detection survives a crash of the agent.
    ///
    /// - Parameters:
    ///   - json: the detection.
    ///   - source: the file it came from (`--watch`), removed once the server acknowledges it.
    /// - Throws: ``MessageValidationError`` for a detection the server would refuse; an error of
    ///   the journal when it cannot be stored.
    public func submit(_ json: JSONObject, source: String? = nil) async throws -> SubmitOutcome {
        let now = Date()
        let detection: Detection
        do {
            detection = try DetectionEnvelope.complete(json, cameraID: options.cameraID, checkpointID: options.checkpointID, now: now)
        } catch {
            statistics.invalid += 1
            throw error
        }
        return try await submit(detection, source: source, receivedAt: now)
    }

    /// Takes several detections at once (an HTTP batch), journaled together; the results are
    /// in the order of `documents`.
    public nonisolated func submit(contentsOf documents: [JSONObject]) async -> [Result<SubmitOutcome, any Error>] {
        await withTaskGroup(of: (Int, Result<SubmitOutcome, any Error>).self) { group in
            for (index, document) in documents.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await self.submit(document)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var results = [Result<SubmitOutcome, any Error>?](repeating: nil, count: documents.count)
            for await (index, result) in group { results[index] = result }
            return results.map { $0 ?? .failure(CancellationError()) }
        }
    }

    /// Takes a complete detection (the simulator's); see ``submit(_:source:)``.
    public func submit(_ detection: Detection, source: String? = nil) async throws -> SubmitOutcome {
        try await submit(detection, source: source, receivedAt: Date())
    }

    private func submit(_ detection: Detection, source: String?, receivedAt now: Date) async throws -> SubmitOutcome {
        let payload = JSONValue.object(detection.json).jsonBytes
        // The server would refuse it: say so now rather than take it and send it for ever.
        if let tooLarge = Detection.sizeError(bytes: payload.count) {
            statistics.invalid += 1
            throw MessageValidationError([tooLarge])
        }
        let matches = watchlist.matches(detection, at: now)
        if !matches.isEmpty { runMatchHooks(matches, detection: detection, at: now) }
        switch filter.decide(detection, watchlisted: !matches.isEmpty) {
        case .publish:
            break
        case .belowConfidence(let confidence):
            statistics.belowConfidence += 1
            logger.debug("detection below the confidence threshold", metadata: ["lpr.message_id": "\(detection.messageID)"])
            return .filtered(messageID: detection.messageID, reason: "confidence \(confidence) below the threshold")
        case .withinInterval(let elapsed):
            statistics.withinInterval += 1
            logger.debug("detection within the detection interval", metadata: ["lpr.message_id": "\(detection.messageID)"])
            return .filtered(messageID: detection.messageID, reason: "\(Int(elapsed * 1000)) ms after the last one, within the detection interval")
        }
        lastDetection = max(lastDetection ?? .distantPast, detection.timestamp)
        guard let outboxNow = tracker.submit(detection.messageID) else { return .alreadyPending(messageID: detection.messageID) }
        let record = DetectionJournal.Record(messageID: detection.messageID, payload: payload, outboxed: outboxNow, source: source)
        let isNew: Bool
        switch await journalInsert(record) {
        case .success(let added):
            isNew = added
        case .failure(let error):
            tracker.forget(detection.messageID)
            throw error
        }
        guard isNew else {
            // Journaled by an earlier run and acknowledged meanwhile, or still pending there.
            tracker.forget(detection.messageID)
            return .alreadyPending(messageID: detection.messageID)
        }
        statistics.accepted += 1
        if outboxNow { await enqueue(detection.messageID, payload: payload) }
        return .accepted(messageID: detection.messageID)
    }

    /// Journals a record with others arriving meanwhile, in one transaction.
    private func journalInsert(_ record: DetectionJournal.Record) async -> Result<Bool, any Error> {
        await withCheckedContinuation { continuation in
            pendingInserts.append((record, continuation))
            if !insertFlushRunning {
                insertFlushRunning = true
                Task { await self.flushInserts() }
            }
        }
    }

    private func flushInserts() async {
        while !pendingInserts.isEmpty {
            let batch = pendingInserts
            pendingInserts = []
            do {
                let added = try await journal.insert(batch.map(\.record))
                for (record, waiter) in batch { waiter.resume(returning: .success(added.contains(record.messageID))) }
            } catch {
                logger.error("cannot journal detections: \(error)")
                for (_, waiter) in batch { waiter.resume(returning: .failure(error)) }
            }
        }
        insertFlushRunning = false
    }

    /// Hands a detection to the MQTT outbox; its ticket goes to the collector.
    func enqueue(_ messageID: String, payload: [UInt8]) async {
        do {
            let ticket = try await client.enqueue(
                topic: LPRTopic.detection(camera: options.cameraID).name,
                payload: ByteBuffer(bytes: payload),
                qos: .atLeastOnce
            )
            tickets.yield((messageID, ticket))
        } catch {
            logger.warning("cannot hand a detection to the outbox; trying again later: \(error)", metadata: ["lpr.message_id": "\(messageID)"])
            tracker.publishFailed(messageID, now: DetectionTracker.now())
        }
    }

    /// Waits for the broker's PUBACKs in order: from then on each detection waits for the server's ack.
    func collectTickets() async {
        for await (messageID, ticket) in ticketStream {
            do {
                let result = try await ticket.result()
                if result.isSuccess {
                    statistics.published += 1
                    tracker.published(messageID, now: DetectionTracker.now())
                } else {
                    logger.warning(
                        "the broker refused a detection",
                        metadata: ["lpr.message_id": "\(messageID)", "mqtt.reason": "\(result.reasonCode)"]
                    )
                    tracker.publishFailed(messageID, now: DetectionTracker.now())
                }
            } catch {
                // The client stopped: the detection stays in the outbox and the journal.
                tracker.publishFailed(messageID, now: DetectionTracker.now())
            }
        }
    }

    /// Every quarter of a second (or sooner, for short ack timeouts): re-sends what is overdue
    /// and moves the backlog into the outbox as it empties.
    func checkDeliveries() async {
        let interval = Duration.milliseconds(Int64(min(250, max(5, options.tracking.ackTimeout * 250))))
        while !Task.isCancelled {
            await sendDue()
            try? await Task.sleep(for: interval)
        }
    }

    func sendDue() async {
        let sends = tracker.due(now: DetectionTracker.now())
        guard !sends.isEmpty else { return }
        let ids = sends.map(\.messageID)
        do {
            let payloads = try await journal.payloads(ids)
            try await journal.markOutboxed(sends.filter(\.fromBacklog).map(\.messageID))
            for send in sends {
                guard let payload = payloads[send.messageID] else {
                    // Acknowledged meanwhile: nothing to send.
                    _ = tracker.acknowledged(send.messageID, rejected: false)
                    continue
                }
                if send.attempt > 1 {
                    logger.info(
                        "no ack yet: sending the detection again",
                        metadata: ["lpr.message_id": "\(send.messageID)", "camera.attempt": "\(send.attempt)"]
                    )
                }
                await enqueue(send.messageID, payload: payload)
            }
        } catch {
            logger.error("cannot read the journal: \(error)")
            for id in ids { tracker.publishFailed(id, now: DetectionTracker.now()) }
        }
    }

    // MARK: Acks

    /// A `detection/ack`: the detection is done once the journal says so; the broker gets our
    /// acknowledgement of the ack only then (and of later messages only after it, in order).
    func receiveAck(_ message: MQTTMessage) {
        let ack: DetectionAck
        do {
            ack = try DetectionAck(validating: JSONObject.parse(message.payload.readableBytesView))
        } catch {
            logger.warning("ignored an ack that is not one: \(error)", metadata: ["mqtt.topic": "\(message.topic)"])
            acknowledgeInOrder(message)
            return
        }
        switch tracker.acknowledged(ack.messageID, rejected: ack.status == .rejected) {
        case .delivered:
            if ack.status == .duplicate { statistics.duplicates += 1 } else { statistics.stored += 1 }
            pendingCompletions.append(ack.messageID)
        case .rejected:
            statistics.rejected += 1
            let errors = JSONValue.array(ack.errors.map(\.json)).jsonText
            logger.error(
                "the server rejected a detection; it is not sent again",
                metadata: ["lpr.message_id": "\(ack.messageID)", "lpr.errors": "\(ack.errors.map(\.description).joined(separator: "; "))"]
            )
            let journal = self.journal
            let logger = self.logger
            Task {
                do {
                    if let source = try await journal.reject(ack.messageID, errors: errors) { Self.setAside(source, logger: logger) }
                } catch {
                    logger.error("cannot record a rejection: \(error)")
                }
            }
        case .unknown:
            logger.debug("ack for a detection not pending", metadata: ["lpr.message_id": "\(ack.messageID)", "lpr.status": "\(ack.status.rawValue)"])
        }
        acknowledgeInOrder(message)
    }

    /// Acknowledges `message` to the broker once every completion before it is journaled.
    func acknowledgeInOrder(_ message: MQTTMessage) {
        pendingAcknowledgements.append(message)
        guard !completionFlushRunning else { return }
        completionFlushRunning = true
        Task { await self.flushCompletions() }
    }

    private func flushCompletions() async {
        while !pendingAcknowledgements.isEmpty {
            let completions = pendingCompletions
            let messages = pendingAcknowledgements
            pendingCompletions = []
            pendingAcknowledgements = []
            if !completions.isEmpty {
                do {
                    let sources = try await journal.complete(completions)
                    for source in sources { Self.remove(source, logger: logger) }
                } catch {
                    // Not acknowledged to the broker: the ack comes again, or the detection is re-sent.
                    logger.error("cannot record acks in the journal: \(error)")
                    continue
                }
            }
            await client.acknowledge(messages)
        }
        completionFlushRunning = false
    }

    /// Removes an input file whose detection the server has.
    static func remove(_ path: String, logger: Logger) {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            if FileManager.default.fileExists(atPath: path) { logger.warning("cannot remove \(path): \(error)") }
        }
    }

    /// Moves an input file whose detection the server rejected to `rejected/` in the watched
    /// folder, under the name the engine gave it.
    static func setAside(_ path: String, logger: Logger) {
        let url = URL(fileURLWithPath: path)
        var watched = url.deletingLastPathComponent()
        if watched.lastPathComponent == DetectionInputs.heldFolder { watched = watched.deletingLastPathComponent() }
        let folder = watched.appendingPathComponent("rejected")
        do {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let target = folder.appendingPathComponent(DetectionInputs.originalName(of: path))
            try? FileManager.default.removeItem(at: target)
            try FileManager.default.moveItem(at: url, to: target)
        } catch {
            logger.warning("cannot move \(path) to rejected/: \(error)")
        }
    }

    // MARK: Edge watch-list

    /// Runs `--on-match` for each match at once, without waiting: the broker is not involved.
    func runMatchHooks(_ matches: [WatchlistMatch], detection: Detection, at time: Date) {
        statistics.watchlistMatches += matches.count
        for match in matches {
            logger.notice(
                "watch-list match at the edge",
                metadata: ["lpr.plate": "\(match.plateNumber)", "lpr.matched_plate": "\(match.entry.plate)", "lpr.match": "\(match.kind.rawValue)"]
            )
            guard let hook = options.matchHook else { continue }
            let document = JSONValue.object(EdgeWatchlist.matchDocument(match, detection: detection, at: time)).jsonBytes
            let environment = [
                "CAMERA_ID": detection.cameraID, "PLATE_NUMBER": match.plateNumber, "MATCHED_PLATE": match.entry.plate,
                "MATCH_LEVEL": match.entry.level.rawValue,
            ]
            let logger = self.logger
            Task {
                let result = await hook.run(input: document, environment: environment)
                if result.termination != .exited(0) {
                    let errors = String(decoding: result.errorOutput.suffix(500), as: UTF8.self)
                    logger.warning("the --on-match hook failed: \(result.termination) \(errors)", metadata: ["lpr.plate": "\(match.plateNumber)"])
                } else {
                    logger.debug("the --on-match hook ran", metadata: ["camera.hook_seconds": "\(result.duration)"])
                }
            }
        }
    }
}
