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
    /// is two seconds old. A file taken moves at once to `DIR/.taken/` under a name of its own
    /// until its ack, so that the engine may write a file of the same name again meanwhile.
    /// Runs until the task is cancelled.
    public static func watch(_ directory: String, into agent: CameraAgent, interval: Duration = .milliseconds(200), logger: Logger) async throws {
        let files = FileManager.default
        let holding = "\(directory)/\(heldFolder)"
        try files.createDirectory(atPath: holding, withIntermediateDirectories: true)
        // Files held before a restart are journaled, except one moved just before a crash:
        // that one is read again below.
        var taken = try await agent.journal.pendingSources()
        var sequence = 0
        while !Task.isCancelled {
            for name in jsonFiles(in: directory) {
                let path = "\(directory)/\(name)"
                guard let data = files.contents(atPath: path) else { continue }
                do {
                    _ = try JSONObject.parse(data)
                } catch {
                    let age = (try? files.attributesOfItem(atPath: path)[.modificationDate] as? Date).map { Date().timeIntervalSince($0) } ?? 10
                    if age < 2 { continue }  // perhaps still being written
                    refuse(path, name: name, directory: directory, error, logger: logger)
                    continue
                }
                sequence += 1
                let stamp = String(format: "%020llu%06d", UInt64(Date().timeIntervalSince1970 * 1e9), sequence % 1_000_000)
                _ = rename(path, "\(holding)/\(stamp)-\(name)")
            }
            // Read again from where it was moved: the engine may have renamed another file in
            // under the same name between the check above and the move.
            let held = jsonFiles(in: holding).map { "\(holding)/\($0)" }
            taken.formIntersection(held)
            for path in held where !taken.contains(path) {
                guard let data = files.contents(atPath: path) else { continue }
                do {
                    switch try await agent.submit(JSONObject.parse(data), source: path) {
                    case .accepted, .alreadyPending:
                        taken.insert(path)
                    case .filtered(_, let reason):
                        logger.info("removing \(originalName(of: path)): \(reason)")
                        CameraAgent.remove(path, logger: logger)
                    }
                } catch let error as MessageValidationError {
                    refuse(path, name: originalName(of: path), directory: directory, error, logger: logger)
                }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Where `--watch` keeps the files it took until their ack.
    static let heldFolder = ".taken"

    /// The `*.json` files of `directory`, by name.
    private static func jsonFiles(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }
            .sorted()
    }

    /// The name the engine gave a file held in `.taken/` (after the stamp that keeps it apart).
    static func originalName(of path: String) -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        guard URL(fileURLWithPath: path).deletingLastPathComponent().lastPathComponent == heldFolder, let dash = name.firstIndex(of: "-") else {
            return name
        }
        return String(name[name.index(after: dash)...])
    }

    /// A file that is not a valid detection goes to `rejected/`, with a note saying why.
    private static func refuse(_ path: String, name: String, directory: String, _ error: any Error, logger: Logger) {
        logger.error("\(name) is not a valid detection: \(error); moved to rejected/")
        CameraAgent.setAside(path, logger: logger)
        let note = "\(directory)/rejected/\(name).error"
        try? Data((String(describing: error) + "\n").utf8).write(to: URL(fileURLWithPath: note))
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
