import Foundation

/// A camera's detection (`lprserver/cameras/{id}/detection`), validated, with the message as it
/// came in ``json`` (unknown fields included) for storing and passing on.
public struct Detection: Sendable, Hashable {
    public var messageID: String
    public var timestamp: Date
    public var cameraID: String
    public var checkpointID: String
    public var data: DetectionData
    /// `metadata`: `image_path`, `weather`, `lighting` and whatever else the camera sends.
    public var metadata: JSONObject
    /// The whole message as received (or as built), every field kept.
    public var json: JSONObject

    /// Validates a received detection.
    ///
    /// - Parameters:
    ///   - json: the message.
    ///   - topicCamera: the camera named by the topic it came on; the message's `camera_id` must agree.
    /// - Throws: every missing or mistyped field with its path.
    public init(validating json: JSONObject, topicCamera: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.storableText(json, "message_id")
        let timestamp = reader.timestamp(json, "timestamp")
        let cameraID = reader.cameraID(json, topicCamera: topicCamera)
        let checkpointID = reader.storableText(json, "checkpoint_id")
        let dataObject = reader.object(json, "detection_data", required: true)
        let data = dataObject.map { DetectionData(reading: $0, at: "detection_data", with: &reader) }
        let metadata = reader.object(json, "metadata") ?? JSONObject()
        try reader.check()
        self.messageID = messageID!
        self.timestamp = timestamp!
        self.cameraID = cameraID!
        self.checkpointID = checkpointID!
        self.data = data!
        self.metadata = metadata
        self.json = json
    }

    /// Parses and validates a payload; see ``init(validating:topicCamera:)``.
    public init(payload: some Collection<UInt8>, topicCamera: String? = nil) throws(MessageValidationError) {
        try self.init(validating: JSONObject.parse(payload), topicCamera: topicCamera)
    }

    /// Builds a detection to publish (the camera simulator's, a test's).
    public init(
        messageID: String,
        timestamp: Date,
        cameraID: String,
        checkpointID: String,
        data: DetectionData,
        metadata: JSONObject = [:]
    ) {
        self.messageID = messageID
        self.timestamp = timestamp
        self.cameraID = cameraID
        self.checkpointID = checkpointID
        self.data = data
        self.metadata = metadata
        self.json = [
            "message_id": .string(messageID),
            "timestamp": .timestamp(timestamp),
            "camera_id": .string(cameraID),
            "checkpoint_id": .string(checkpointID),
            "detection_data": .object(data.json),
            "metadata": .object(metadata),
        ]
    }

    /// The largest detection message the LPR server takes (1 MiB): the seed's is about 1 KB, and
    /// a thumbnail embedded in its metadata still fits. A camera agent refuses larger ones at once.
    public static let maximumPayloadBytes = 1 << 20

    /// Why a detection message of `bytes` bytes is refused (nil when it is not too large).
    public static func sizeError(bytes: Int) -> FieldError? {
        guard bytes > maximumPayloadBytes else { return nil }
        return FieldError(path: "", reason: "the message is \(bytes) bytes; a detection may have \(maximumPayloadBytes) at most")
    }

    /// The message's `message_id` when it has a usable one, even if the rest is invalid: a
    /// rejected detection is answered by it.
    public static func messageID(in json: JSONObject) -> String? {
        guard let id = json["message_id"]?.stringValue, !id.isEmpty else { return nil }
        return id
    }

    /// The `message_id` of a message that does not parse as a whole (see
    /// ``JSONValue/topLevelString(_:in:)``).
    public static func messageID(scanning payload: some Collection<UInt8>) -> String? {
        guard let id = JSONValue.topLevelString("message_id", in: payload), !id.isEmpty else { return nil }
        return id
    }

    /// The plates' numbers as read.
    public var plateNumbers: [String] { data.plates.map(\.plateNumber) }
}

/// `detection_data`.
public struct DetectionData: Sendable, Hashable {
    public var vehiclesCount: Int?
    public var platesCount: Int?
    public var processingTimeMs: Double?
    public var confidenceScore: Double?
    public var detectionType: String?
    public var vehicles: [Vehicle]
    public var plates: [Plate]
    /// The object as received or built, unknown members included.
    public var json: JSONObject

    public init(
        confidenceScore: Double?,
        detectionType: String? = "lpr",
        processingTimeMs: Double? = nil,
        vehicles: [Vehicle],
        plates: [Plate]
    ) {
        self.vehiclesCount = vehicles.count
        self.platesCount = plates.count
        self.processingTimeMs = processingTimeMs
        self.confidenceScore = confidenceScore
        self.detectionType = detectionType
        self.vehicles = vehicles
        self.plates = plates
        var json: JSONObject = ["vehicles_count": .int(vehicles.count), "plates_count": .int(plates.count)]
        if let processingTimeMs { json["processing_time_ms"] = .double(processingTimeMs) }
        if let confidenceScore { json["confidence_score"] = .double(confidenceScore) }
        if let detectionType { json["detection_type"] = .string(detectionType) }
        json["vehicles"] = .array(vehicles.map { .object($0.json) })
        json["plates"] = .array(plates.map { .object($0.json) })
        self.json = json
    }

    init(reading object: JSONObject, at path: String, with reader: inout FieldReader) {
        vehiclesCount = reader.integer(object, "vehicles_count", at: path)
        platesCount = reader.integer(object, "plates_count", at: path)
        processingTimeMs = reader.number(object, "processing_time_ms", at: path)
        confidenceScore = reader.number(object, "confidence_score", at: path)
        detectionType = reader.string(object, "detection_type", at: path, required: false)
        vehicles = reader.objects(object, "vehicles", at: path).map { Vehicle(reading: $0.0, at: $0.1, with: &reader) }
        plates = reader.objects(object, "plates", at: path, required: true).compactMap { Plate(reading: $0.0, at: $0.1, with: &reader) }
        json = object
    }
}

/// A vehicle of `detection_data.vehicles`.
public struct Vehicle: Sendable, Hashable {
    public var vehicleIndex: Int?
    public var bbox: [Double]?
    public var confidence: Double?
    public var vehicleClass: String?
    public var vehicleType: String?
    public var color: String?
    public var brand: String?
    public var model: String?
    public var year: Int?
    public var json: JSONObject

    public init(
        vehicleIndex: Int,
        bbox: [Double],
        confidence: Double,
        vehicleClass: String,
        vehicleType: String?,
        color: String?,
        brand: String?,
        model: String?,
        year: Int?
    ) {
        self.vehicleIndex = vehicleIndex
        self.bbox = bbox
        self.confidence = confidence
        self.vehicleClass = vehicleClass
        self.vehicleType = vehicleType
        self.color = color
        self.brand = brand
        self.model = model
        self.year = year
        var json: JSONObject = [
            "vehicle_index": .int(vehicleIndex), "bbox": .array(bbox.map(JSONValue.double)), "confidence": .double(confidence),
            "vehicle_class": .string(vehicleClass),
        ]
        if let vehicleType { json["vehicle_type"] = .string(vehicleType) }
        if let color { json["color"] = .string(color) }
        if let brand { json["brand"] = .string(brand) }
        if let model { json["model"] = .string(model) }
        if let year { json["year"] = .int(year) }
        self.json = json
    }

    init(reading object: JSONObject, at path: String, with reader: inout FieldReader) {
        vehicleIndex = reader.integer(object, "vehicle_index", at: path)
        bbox = reader.boundingBox(object, "bbox", at: path)
        confidence = reader.number(object, "confidence", at: path)
        vehicleClass = reader.string(object, "vehicle_class", at: path, required: false)
        vehicleType = reader.string(object, "vehicle_type", at: path, required: false)
        color = reader.string(object, "color", at: path, required: false)
        brand = reader.string(object, "brand", at: path, required: false)
        model = reader.string(object, "model", at: path, required: false)
        year = reader.integer(object, "year", at: path)
        json = object
    }
}

/// A plate of `detection_data.plates`.
public struct Plate: Sendable, Hashable {
    public var plateIndex: Int?
    /// The plate as the OCR read it.
    public var plateNumber: String
    public var bbox: [Double]?
    public var confidence: Double?
    public var plateType: String?
    public var country: String?
    public var province: String?
    public var isValid: Bool?
    public var json: JSONObject

    public init(
        plateIndex: Int,
        plateNumber: String,
        bbox: [Double],
        confidence: Double,
        plateType: String? = "standard",
        country: String?,
        province: String?,
        isValid: Bool = true
    ) {
        self.plateIndex = plateIndex
        self.plateNumber = plateNumber
        self.bbox = bbox
        self.confidence = confidence
        self.plateType = plateType
        self.country = country
        self.province = province
        self.isValid = isValid
        var json: JSONObject = [
            "plate_index": .int(plateIndex), "plate_number": .string(plateNumber), "bbox": .array(bbox.map(JSONValue.double)),
            "confidence": .double(confidence),
        ]
        if let plateType { json["plate_type"] = .string(plateType) }
        if let country { json["country"] = .string(country) }
        if let province { json["province"] = .string(province) }
        json["is_valid"] = .bool(isValid)
        self.json = json
    }

    init?(reading object: JSONObject, at path: String, with reader: inout FieldReader) {
        let number = reader.storableText(object, "plate_number", at: path, maximumBytes: FieldReader.maximumPlateBytes)
        plateIndex = reader.integer(object, "plate_index", at: path)
        bbox = reader.boundingBox(object, "bbox", at: path)
        confidence = reader.number(object, "confidence", at: path)
        plateType = reader.string(object, "plate_type", at: path, required: false)
        country = reader.storableText(object, "country", at: path, required: false)
        province = reader.string(object, "province", at: path, required: false)
        isValid = reader.bool(object, "is_valid", at: path)
        json = object
        guard let number else { return nil }
        plateNumber = number
    }
}
