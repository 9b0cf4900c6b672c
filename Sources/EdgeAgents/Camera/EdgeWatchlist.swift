import Foundation
import LPRModel

/// The watch-list a camera keeps at the edge: the last `lprserver/blacklist/updates` it received
/// (kept in a local file so that a restart, or a broker that is unreachable, keeps it), matched
/// against every plate the camera reads, without the server. Pure; the agent saves and loads.
public struct EdgeWatchlist: Sendable {
    /// The update in force, `nil` before the first one.
    public private(set) var update: WatchlistUpdate?
    public private(set) var matcher: WatchlistMatcher
    public let maximumDistance: Int

    public enum Outcome: Sendable, Hashable {
        /// Taken: keep it.
        case replaced(version: Int, entries: Int)
        /// Older than the one in force (or the same version): ignored.
        case stale(version: Int)
        /// Not a watch-list update.
        case refused(MessageValidationError)
    }

    public init(update: WatchlistUpdate? = nil, maximumDistance: Int = 1) {
        self.update = update
        self.version = update?.version
        self.maximumDistance = maximumDistance
        self.matcher = WatchlistMatcher(entries: update?.entries ?? [], maximumDistance: maximumDistance)
    }

    /// The version in force, or nil.
    public private(set) var version: Int?

    /// Takes a `blacklist/updates` payload when it is newer than the one in force. A version
    /// lower than ours is taken too when the server's list was reset (version 0 or 1).
    public mutating func receive(payload: some Collection<UInt8>) -> Outcome {
        let received: WatchlistUpdate
        do {
            received = try WatchlistUpdate(validating: JSONObject.parse(payload))
        } catch {
            return .refused(error)
        }
        if let current = version, received.version <= current, received.version > 1 || received.version == current {
            return .stale(version: received.version)
        }
        update = received
        version = received.version
        matcher = WatchlistMatcher(entries: received.entries, maximumDistance: maximumDistance)
        return .replaced(version: received.version, entries: received.entries.count)
    }

    /// The matches of a detection's plates, best first per plate.
    public func matches(_ detection: Detection, at time: Date) -> [WatchlistMatch] {
        var found: [WatchlistMatch] = []
        for plate in detection.data.plates {
            let matches = matcher.matches(
                plate: plate.plateNumber,
                camera: detection.cameraID,
                checkpoint: detection.checkpointID,
                country: plate.country,
                at: time
            )
            if let best = matches.first { found.append(best) }
        }
        return found
    }

    /// What `--on-match` gets on its standard input: the match and the detection.
    public static func matchDocument(_ match: WatchlistMatch, detection: Detection, at time: Date) -> JSONObject {
        [
            "camera_id": .string(detection.cameraID),
            "checkpoint_id": .string(detection.checkpointID),
            "plate_number": .string(match.plateNumber),
            "matched_plate": .string(match.entry.plate),
            "match": .string(match.kind.rawValue),
            "distance": .int(match.distance),
            "reason": .string(match.entry.reason),
            "level": .string(match.entry.level.rawValue),
            "entry_id": .string(match.entry.id),
            "detection_message_id": .string(detection.messageID),
            "timestamp": .timestamp(time),
            "detection": .object(detection.json),
        ]
    }

    // MARK: The local file

    /// Reads the update kept in `path`; an empty watch-list when there is no file.
    public static func load(path: String, maximumDistance: Int = 1) throws -> EdgeWatchlist {
        guard FileManager.default.fileExists(atPath: path) else { return EdgeWatchlist(maximumDistance: maximumDistance) }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return EdgeWatchlist(update: try WatchlistUpdate(validating: JSONObject.parse(data)), maximumDistance: maximumDistance)
    }

    /// Writes the update in force to `path`, atomically.
    public func save(path: String) throws {
        guard let update else { return }
        try LocalFile.writeAtomically(JSONValue.object(update.json).jsonBytes, to: path)
    }
}
