import Foundation
import LPRModel
import Logging

/// The ways an AI engine hands detections to the camera agent besides HTTP.
public enum DetectionInputs {
    /// `--input FILE|-`: one detection per line (JSON lines) until the input ends. A line that
    /// is not a valid detection is logged with its number and skipped.
    ///
    /// - Returns: how many lines were taken and how many refused.
    @discardableResult
    public static func readLines(_ path: String, into agent: CameraAgent, logger: Logger) async throws -> (taken: Int, refused: Int) {
        let lines = try BlockingInput.lines(path)
        // Up to `inFlight` lines are taken at once, so that they are journaled many per transaction.
        let inFlight = 128
        return try await withThrowingTaskGroup(of: Bool.self) { group in
            var number = 0
            var running = 0
            var taken = 0
            var refused = 0
            func collect(_ ok: Bool) {
                running -= 1
                if ok { taken += 1 } else { refused += 1 }
            }
            for try await line in lines {
                number += 1
                let lineNumber = number
                if running >= inFlight, let ok = try await group.next() { collect(ok) }
                running += 1
                group.addTask {
                    do {
                        _ = try await agent.submit(JSONObject.parse(Array(line.utf8)))
                        return true
                    } catch let error as MessageValidationError {
                        logger.error("skipping input line \(lineNumber): \(error)")
                        return false
                    }
                }
            }
            while let ok = try await group.next() { collect(ok) }
            return (taken, refused)
        }
    }

    /// `--watch DIR`: takes every `*.json` file (one detection each) that appears in `directory`,
    /// and removes it once the server has acknowledged it. Files the server rejected, and files
    /// that are not a valid detection, go to `DIR/rejected/` (with a `.error` note for the
    /// latter); nothing is deleted unacknowledged. Write files elsewhere and rename them into
    /// the folder, or give them a moment: a file that does not parse is tried again until it
    /// is two seconds old. Runs until the task is cancelled.
    public static func watch(_ directory: String, into agent: CameraAgent, interval: Duration = .milliseconds(200), logger: Logger) async throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var taken = try await agent.journal.pendingSources()
        while !Task.isCancelled {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
                .filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }
                .sorted()
            let present = Set(names.map { "\(directory)/\($0)" })
            taken.formIntersection(present)
            for path in present.sorted() where !taken.contains(path) {
                guard let data = FileManager.default.contents(atPath: path) else { continue }
                do {
                    let json = try JSONObject.parse(data)
                    switch try await agent.submit(json, source: path) {
                    case .accepted, .alreadyPending:
                        taken.insert(path)
                    case .filtered(_, let reason):
                        logger.info("removing \(path): \(reason)")
                        CameraAgent.remove(path, logger: logger)
                    }
                } catch let error as MessageValidationError {
                    let age =
                        (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date).map { Date().timeIntervalSince($0) }
                        ?? 10
                    if age < 2 && error.errors.first?.reason.hasPrefix("not JSON") == true { continue }
                    logger.error("\(path) is not a valid detection: \(error); moved to rejected/")
                    CameraAgent.setAside(path, logger: logger)
                    let note = "\(directory)/rejected/\(URL(fileURLWithPath: path).lastPathComponent).error"
                    try? Data((error.description + "\n").utf8).write(to: URL(fileURLWithPath: note))
                }
            }
            try? await Task.sleep(for: interval)
        }
    }
}

/// Drives simulated cameras: each makes detections with its ``CameraSimulator`` at a rate (or
/// at the applied configuration's `detection_interval`), stays quiet while restarting, and
/// hands them to its agent. Plates of the camera's edge watch-list show up now and then (at
/// the simulator's ``CameraSimulator/Options/watchlistRate``), so that a demo raises alerts.
public enum CameraSimulation {
    /// Makes detections for `agent` until `limit` are made or the task is cancelled.
    ///
    /// - Parameters:
    ///   - simulator: the camera's generator.
    ///   - rate: detections per second, unless the configuration sets `detection_interval`.
    ///   - limit: stop after this many; `nil` runs on.
    ///   - phase: the share (0..<1) of the first period to wait, so cameras do not fire together.
    public static func drive(
        _ agent: CameraAgent,
        simulator: CameraSimulator,
        rate: Double,
        limit: Int? = nil,
        phase: Double = 0,
        logger: Logger
    ) async {
        var simulator = simulator
        var made = 0
        let clock = ContinuousClock()
        var next = clock.now
        var firstPeriod = true
        var nextWatchlistCheck = clock.now
        while !Task.isCancelled, limit.map({ made < $0 }) ?? true {
            let intervalMs = await agent.appliedConfiguration?.detectionInterval
            let period: Double = intervalMs.map { max(0.001, $0 / 1000) } ?? (rate > 0 ? 1 / rate : 0)
            if firstPeriod {
                next = next.advanced(by: .milliseconds(Int64(period * phase * 1000)))
                firstPeriod = false
            }
            if period > 0 {
                try? await clock.sleep(until: next)
                next = next.advanced(by: .nanoseconds(Int64(period * 1e9)))
                // Far behind (the machine was busy): do not make a burst to catch up.
                if clock.now - next > .seconds(1) { next = clock.now }
            }
            if let paused = await agent.pausedUntil, paused > Date() {
                if period == 0 { try? await Task.sleep(for: .milliseconds(100)) }
                continue
            }
            if clock.now >= nextWatchlistCheck {
                let listed = await agent.watchlistPlates
                if listed != simulator.options.watchlistPlates { simulator.options.watchlistPlates = listed }
                nextWatchlistCheck = clock.now.advanced(by: .seconds(2))
            }
            let detection = simulator.nextDetection(at: Date())
            do {
                _ = try await agent.submit(detection)
                made += 1
            } catch {
                logger.error("the simulated camera's detection was not taken: \(error)")
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}
