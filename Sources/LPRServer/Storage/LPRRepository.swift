import Foundation
import LPRModel

/// Where the LPR server keeps what it knows: detections, cameras, the watch-list, alerts,
/// commands and leases. Two implementations share one test suite: SQLite (the embedded
/// default) and PostgreSQL (several servers sharing one database).
///
/// Every write is durable when the call returns: the server acknowledges detections only then.
public protocol LPRRepository: Sendable {
    /// Creates or upgrades the schema (append-only, named migrations).
    func migrate() async throws

    // MARK: Detections

    /// Stores a batch in one transaction. A `message_id` already stored is a duplicate and
    /// changes nothing; a stored detection's ``DetectionRecord/alerts`` are stored with it.
    /// - Returns: one outcome per record, in order.
    func storeDetections(_ batch: [DetectionRecord]) async throws -> [StoreOutcome]
    /// One detection by its `message_id`.
    func detection(messageID: String) async throws -> StoredDetection?
    /// Detections newest first, filtered, one page at a time.
    func detections(matching query: DetectionQuery) async throws -> DetectionPage
    /// Deletes up to `limit` detections received before `olderThan`, or beyond the newest `keep`.
    /// - Returns: how many it deleted (call again while it returns `limit`).
    func purgeDetections(receivedBefore olderThan: Date?, keepingNewest keep: Int?, limit: Int) async throws -> Int
    /// Deletes up to `limit` rows each of health history, alerts and commands from before `olderThan`.
    /// - Returns: how many it deleted (call again while it returns as many as it may).
    func purgeHistory(before olderThan: Date, limit: Int) async throws -> Int
    /// Detections per hour (by the time they were received) per camera in `since..<until`.
    func hourlyCounts(since: Date, until: Date, camera: String?) async throws -> [HourlyCount]
    /// Per checkpoint, detections received since `since`: count, unique plates, mean confidence, and watch-list hits.
    func checkpointFigures(since: Date) async throws -> [CheckpointFigures]
    /// How many detections are stored.
    func detectionCount() async throws -> Int

    // MARK: Cameras

    /// A camera by id, when it is known.
    func camera(_ id: String) async throws -> CameraRecord?
    /// Every known camera, by id.
    func cameras() async throws -> [CameraRecord]
    /// Reads a camera (a fresh record when unknown), lets `change` edit it, and writes it back,
    /// atomically: two servers changing one camera do not lose each other's change.
    func updateCamera<Result: Sendable>(_ id: String, _ change: @Sendable (inout CameraRecord) -> Result) async throws -> Result
    /// Appends to a camera's health history.
    func appendHealth(_ record: HealthRecord) async throws
    /// A camera's latest health messages, newest first.
    func healthHistory(camera: String, limit: Int) async throws -> [HealthRecord]

    // MARK: Watch-list

    /// The watch-list and its version (0 before any change).
    func watchlist() async throws -> (version: Int, entries: [WatchlistEntry])
    /// Adds an entry, or replaces the one with its id. - Returns: the new version.
    func saveWatchlistEntry(_ entry: WatchlistEntry) async throws -> Int
    /// Removes an entry. - Returns: the new version, or `nil` when there was no such entry.
    func deleteWatchlistEntry(id: String) async throws -> Int?

    // MARK: Alerts

    func insertAlerts(_ alerts: [Alert]) async throws
    /// Alerts newest first.
    func alerts(since: Date?, level: Alert.Level?, limit: Int) async throws -> [Alert]

    // MARK: Commands

    func recordCommand(_ command: ControlCommand, sentAt: Date) async throws
    /// Records how a command ended (`ok`, `error`, `unsupported`, `timeout`); a late answer
    /// replaces a `timeout`.
    func recordCommandOutcome(messageID: String, status: String, response: JSONObject?, at: Date) async throws
    func command(messageID: String) async throws -> CommandRecord?

    // MARK: Leases

    /// Takes or renews the lease `name` for `holder` until `until`; `false` when another holder
    /// has it and it has not expired at `now`.
    func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool
    /// Gives the lease up, if `holder` has it.
    func releaseLease(_ name: String, holder: String) async throws
}

/// A detection ready to store.
public struct DetectionRecord: Sendable, Hashable {
    public var messageID: String
    public var cameraID: String
    public var checkpointID: String
    /// The detection's own `timestamp`.
    public var capturedAt: Date
    public var receivedAt: Date
    public var confidence: Double?
    public var plates: [PlateRecord]
    /// The message as received, compact JSON.
    public var payload: String
    /// Alerts to store with the detection if it is new (watch-list hits).
    public var alerts: [Alert]

    public init(
        messageID: String,
        cameraID: String,
        checkpointID: String,
        capturedAt: Date,
        receivedAt: Date,
        confidence: Double?,
        plates: [PlateRecord],
        payload: String,
        alerts: [Alert] = []
    ) {
        self.messageID = messageID
        self.cameraID = cameraID
        self.checkpointID = checkpointID
        self.capturedAt = capturedAt
        self.receivedAt = receivedAt
        self.confidence = confidence
        self.plates = plates
        self.payload = payload
        self.alerts = alerts
    }

    /// The record of a validated detection; `payload` is the message as received (the
    /// detection's JSON written again when not given).
    public init(_ detection: Detection, receivedAt: Date, payload: String? = nil, alerts: [Alert] = []) {
        self.init(
            messageID: detection.messageID,
            cameraID: detection.cameraID,
            checkpointID: detection.checkpointID,
            capturedAt: detection.timestamp,
            receivedAt: receivedAt,
            confidence: detection.data.confidenceScore ?? detection.data.plates.compactMap(\.confidence).max(),
            plates: detection.data.plates.map { PlateRecord(number: $0.plateNumber, confidence: $0.confidence, country: $0.country) },
            payload: payload ?? JSONValue.object(detection.json).jsonText,
            alerts: alerts
        )
    }
}

/// A plate of a stored detection, with the forms searches use.
public struct PlateRecord: Sendable, Hashable {
    /// As read.
    public var number: String
    /// Upper case, letters and digits only.
    public var normalized: String
    /// Normalised with OCR confusions folded.
    public var folded: String
    public var confidence: Double?
    public var country: String?

    public init(number: String, confidence: Double?, country: String?) {
        self.number = number
        self.normalized = PlateNormalizer.normalize(number)
        self.folded = PlateNormalizer.foldNormalized(normalized)
        self.confidence = confidence
        self.country = country
    }
}

/// What storing a detection did.
public enum StoreOutcome: String, Sendable, Hashable {
    case stored
    /// The same camera's detection with this `message_id` is stored already.
    case duplicate
    /// Another camera's detection has this `message_id`: nothing stored, and the camera is told
    /// (rejected) rather than led to believe it was (an engine that numbers its detections per
    /// camera would otherwise lose them without a word).
    case otherCamera = "other_camera"
}

/// A detection as stored.
public struct StoredDetection: Sendable, Hashable {
    /// The store's order: larger is newer.
    public var sequence: Int64
    public var messageID: String
    public var cameraID: String
    public var checkpointID: String
    public var capturedAt: Date
    public var receivedAt: Date
    public var confidence: Double?
    public var plates: [String]
    /// The message as received.
    public var payload: String

    public init(
        sequence: Int64,
        messageID: String,
        cameraID: String,
        checkpointID: String,
        capturedAt: Date,
        receivedAt: Date,
        confidence: Double?,
        plates: [String],
        payload: String
    ) {
        self.sequence = sequence
        self.messageID = messageID
        self.cameraID = cameraID
        self.checkpointID = checkpointID
        self.capturedAt = capturedAt
        self.receivedAt = receivedAt
        self.confidence = confidence
        self.plates = plates
        self.payload = payload
    }

    /// The message as received with `received_at` added.
    public var json: JSONObject {
        var object = (try? JSONObject.parse(Array(payload.utf8))) ?? [:]
        object["received_at"] = .timestamp(receivedAt)
        return object
    }
}

/// Which detections to list.
public struct DetectionQuery: Sendable, Hashable {
    /// How a plate is looked for.
    public enum PlateMatch: Sendable, Hashable {
        /// The same normalised plate.
        case exact(String)
        /// Normalised plates starting with this.
        case prefix(String)
        /// Within edit distance `maximumDistance` after folding OCR confusions.
        case fuzzy(String, maximumDistance: Int)
    }

    public var plate: PlateMatch?
    public var camera: String?
    public var checkpoint: String?
    /// Captured at or after.
    public var since: Date?
    /// Captured before.
    public var until: Date?
    public var limit: Int
    /// Only detections older than this sequence (the previous page's last).
    public var before: Int64?

    public init(
        plate: PlateMatch? = nil,
        camera: String? = nil,
        checkpoint: String? = nil,
        since: Date? = nil,
        until: Date? = nil,
        limit: Int = 50,
        before: Int64? = nil
    ) {
        self.plate = plate
        self.camera = camera
        self.checkpoint = checkpoint
        self.since = since
        self.until = until
        self.limit = limit
        self.before = before
    }
}

/// One page of detections.
public struct DetectionPage: Sendable, Hashable {
    public var items: [StoredDetection]
    /// Pass as ``DetectionQuery/before`` for the next page; `nil` on the last.
    public var nextBefore: Int64?

    public init(items: [StoredDetection], nextBefore: Int64?) {
        self.items = items
        self.nextBefore = nextBefore
    }
}

/// Detections of one camera in one hour.
public struct HourlyCount: Sendable, Hashable {
    public var hour: Date
    public var cameraID: String
    public var count: Int

    public init(hour: Date, cameraID: String, count: Int) {
        self.hour = hour
        self.cameraID = cameraID
        self.count = count
    }
}

/// A checkpoint's figures over a window.
public struct CheckpointFigures: Sendable, Hashable {
    public var checkpointID: String
    public var detections: Int
    public var uniquePlates: Int
    public var meanConfidence: Double?
    public var watchlistHits: Int

    public init(checkpointID: String, detections: Int, uniquePlates: Int, meanConfidence: Double?, watchlistHits: Int) {
        self.checkpointID = checkpointID
        self.detections = detections
        self.uniquePlates = uniquePlates
        self.meanConfidence = meanConfidence
        self.watchlistHits = watchlistHits
    }
}

/// What the server knows of a camera.
public struct CameraRecord: Sendable, Hashable {
    public var cameraID: String
    public var checkpointID: String?
    /// `nil` until a status or health message said.
    public var online: Bool?
    public var firstSeen: Date?
    public var lastSeen: Date?
    public var lastHealthAt: Date?
    /// The latest health message as received.
    public var health: String?
    public var healthStatus: String?
    /// Health problems alerted and not cleared yet (`status`, `cpu`, `temperature`, ...).
    public var activeProblems: [String]
    /// The desired configuration (`config/update`) as published.
    public var desiredConfig: String?
    public var desiredAt: Date?
    /// The configuration the camera reported (`config`).
    public var reportedConfig: String?
    public var reportedAt: Date?
    public var lastDetectionAt: Date?
    public var lastDetectionID: String?

    public init(cameraID: String) {
        self.cameraID = cameraID
        self.activeProblems = []
    }

    /// Whether the camera has been heard of at all (a fresh record for an unknown id is not).
    public var isKnown: Bool { firstSeen != nil || desiredConfig != nil }
}

/// A health message kept in a camera's history.
public struct HealthRecord: Sendable, Hashable {
    public var cameraID: String
    public var receivedAt: Date
    public var status: String
    public var payload: String

    public init(cameraID: String, receivedAt: Date, status: String, payload: String) {
        self.cameraID = cameraID
        self.receivedAt = receivedAt
        self.status = status
        self.payload = payload
    }
}

/// A command sent to a camera and how it ended.
public struct CommandRecord: Sendable, Hashable {
    public var messageID: String
    public var cameraID: String
    public var command: String
    public var sentAt: Date
    /// `pending`, `ok`, `error`, `unsupported` or `timeout`.
    public var status: String
    public var response: String?
    public var answeredAt: Date?

    public init(messageID: String, cameraID: String, command: String, sentAt: Date, status: String, response: String?, answeredAt: Date?) {
        self.messageID = messageID
        self.cameraID = cameraID
        self.command = command
        self.sentAt = sentAt
        self.status = status
        self.response = response
        self.answeredAt = answeredAt
    }
}

/// A store that could not do what was asked.
public struct RepositoryError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
