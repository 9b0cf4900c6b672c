import Foundation

/// An entry of the watch-list (the protocol's blacklist): a plate to look out for, why, how
/// urgent, and where and until when it applies.
public struct WatchlistEntry: Sendable, Hashable, Identifiable {
    public var id: String
    /// The plate as listed.
    public var plate: String
    public var reason: String
    public var level: Alert.Level
    /// Only plates read with this country match, when set.
    public var country: String?
    /// Only these cameras match, when not empty.
    public var cameraIDs: [String]
    /// Only cameras at these checkpoints match, when not empty.
    public var checkpointIDs: [String]
    /// No match after this time, when set.
    public var expiresAt: Date?

    public init(
        id: String,
        plate: String,
        reason: String = "",
        level: Alert.Level = .critical,
        country: String? = nil,
        cameraIDs: [String] = [],
        checkpointIDs: [String] = [],
        expiresAt: Date? = nil
    ) {
        self.id = id
        self.plate = plate
        self.reason = reason
        self.level = level
        self.country = country
        self.cameraIDs = cameraIDs
        self.checkpointIDs = checkpointIDs
        self.expiresAt = expiresAt
    }

    /// Whether the entry applies to a plate read by `camera` at `checkpoint` at `time`.
    public func applies(camera: String, checkpoint: String, country plateCountry: String?, at time: Date) -> Bool {
        if let expiresAt, time >= expiresAt { return false }
        if !cameraIDs.isEmpty, !cameraIDs.contains(camera) { return false }
        if !checkpointIDs.isEmpty, !checkpointIDs.contains(checkpoint) { return false }
        if let country, !country.isEmpty, let plateCountry, !plateCountry.isEmpty, country.uppercased() != plateCountry.uppercased() {
            return false
        }
        return true
    }

    public var json: JSONObject {
        [
            "id": .string(id),
            "plate": .string(plate),
            "reason": .string(reason),
            "level": .string(level.rawValue),
            "country": country.map(JSONValue.string) ?? .null,
            "camera_ids": .array(cameraIDs.map(JSONValue.string)),
            "checkpoint_ids": .array(checkpointIDs.map(JSONValue.string)),
            "expires_at": expiresAt.map(JSONValue.timestamp) ?? .null,
        ]
    }

    /// Reads an entry as the REST API and `blacklist/updates` carry it. `id` may be missing
    /// when `requireID` is false (a new entry gets one).
    public init(validating json: JSONObject, requireID: Bool = true, defaultID: String = "") throws(MessageValidationError) {
        var reader = FieldReader()
        let id = reader.string(json, "id", required: requireID)
        let plate = reader.storableText(json, "plate", maximumBytes: FieldReader.maximumPlateBytes)
        if let plate, PlateNormalizer.normalize(plate).isEmpty {
            reader.fail("plate", "has no letters or digits")
        }
        let reason = reader.string(json, "reason", required: false)
        let level = reader.oneOf(json, "level", Alert.Level.allCases.map(\.rawValue), required: false)
        let country = reader.string(json, "country", required: false)
        let cameras = Self.strings(json, "camera_ids", with: &reader)
        let checkpoints = Self.strings(json, "checkpoint_ids", with: &reader)
        let expiresAt = reader.timestamp(json, "expires_at", required: false)
        try reader.check()
        self.init(
            id: id ?? defaultID,
            plate: plate!,
            reason: reason ?? "",
            level: level.flatMap(Alert.Level.init(rawValue:)) ?? .critical,
            country: country?.isEmpty == true ? nil : country,
            cameraIDs: cameras,
            checkpointIDs: checkpoints,
            expiresAt: expiresAt
        )
    }

    private static func strings(_ json: JSONObject, _ key: String, with reader: inout FieldReader) -> [String] {
        guard let elements = reader.array(json, key) else { return [] }
        var result: [String] = []
        for (offset, element) in elements.enumerated() {
            guard let text = element.stringValue else {
                reader.fail("\(key)[\(offset)]", "expected a string, found \(element.typeName)")
                continue
            }
            result.append(text)
        }
        return result
    }
}

/// `lprserver/blacklist/updates`: the whole watch-list with a version that grows with each change.
public struct WatchlistUpdate: Sendable, Hashable {
    public var version: Int
    public var timestamp: Date
    public var entries: [WatchlistEntry]

    public init(version: Int, timestamp: Date, entries: [WatchlistEntry]) {
        self.version = version
        self.timestamp = timestamp
        self.entries = entries
    }

    public var json: JSONObject {
        ["version": .int(version), "timestamp": .timestamp(timestamp), "entries": .array(entries.map { .object($0.json) })]
    }

    public init(validating json: JSONObject) throws(MessageValidationError) {
        var reader = FieldReader()
        let version = reader.integer(json, "version", required: true)
        let timestamp = reader.timestamp(json, "timestamp", required: false)
        var entries: [WatchlistEntry] = []
        var errors: [FieldError] = []
        for (object, path) in reader.objects(json, "entries", required: true) {
            do {
                entries.append(try WatchlistEntry(validating: object))
            } catch {
                errors += error.errors.map { FieldError(path: FieldReader.join(path, $0.path), reason: $0.reason) }
            }
        }
        for error in errors { reader.fail(error.path, error.reason) }
        try reader.check()
        self.init(version: version!, timestamp: timestamp ?? Date(), entries: entries)
    }
}

/// `lprserver/blacklist/notifications`: a detected plate matched the watch-list.
public struct WatchlistNotification: Sendable, Hashable {
    public var messageID: String
    public var timestamp: Date
    public var cameraID: String
    public var checkpointID: String
    /// The plate as read.
    public var plateNumber: String
    /// The plate as listed.
    public var matchedPlate: String
    /// The edit distance after normalising and folding OCR confusions (0: the same plate).
    public var distance: Int
    /// Why the plate is listed.
    public var reason: String
    public var level: Alert.Level
    public var entryID: String
    public var detectionMessageID: String

    public init(
        messageID: String,
        timestamp: Date,
        cameraID: String,
        checkpointID: String,
        plateNumber: String,
        matchedPlate: String,
        distance: Int,
        reason: String,
        level: Alert.Level,
        entryID: String,
        detectionMessageID: String
    ) {
        self.messageID = messageID
        self.timestamp = timestamp
        self.cameraID = cameraID
        self.checkpointID = checkpointID
        self.plateNumber = plateNumber
        self.matchedPlate = matchedPlate
        self.distance = distance
        self.reason = reason
        self.level = level
        self.entryID = entryID
        self.detectionMessageID = detectionMessageID
    }

    public var json: JSONObject {
        [
            "message_id": .string(messageID),
            "timestamp": .timestamp(timestamp),
            "camera_id": .string(cameraID),
            "checkpoint_id": .string(checkpointID),
            "plate_number": .string(plateNumber),
            "matched_plate": .string(matchedPlate),
            "distance": .int(distance),
            "reason": .string(reason),
            "level": .string(level.rawValue),
            "entry_id": .string(entryID),
            "detection_message_id": .string(detectionMessageID),
        ]
    }
}
