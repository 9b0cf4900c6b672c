import Foundation

/// A camera's configuration: desired (`config/update`, from the server) or applied (`config`,
/// from the camera).
public struct CameraConfiguration: Sendable, Hashable {
    public var messageID: String
    public var timestamp: Date
    public var cameraID: String
    public var configType: String
    /// `config_data`, every member kept: `detection_interval`, `confidence_threshold`,
    /// `max_vehicles_per_frame`, `image_quality`, `enable_recording`, `recording_duration`,
    /// `alert_settings` {...}.
    public var configData: JSONObject
    public var json: JSONObject

    public init(validating json: JSONObject, topicCamera: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let timestamp = reader.timestamp(json, "timestamp")
        let cameraID = reader.cameraID(json, topicCamera: topicCamera)
        let configType = reader.string(json, "config_type")
        let configData = reader.object(json, "config_data", required: true)
        if let configData { Self.checkConfigData(configData, with: &reader) }
        try reader.check()
        self.messageID = messageID!
        self.timestamp = timestamp!
        self.cameraID = cameraID!
        self.configType = configType!
        self.configData = configData!
        self.json = json
    }

    public init(messageID: String, timestamp: Date, cameraID: String, configType: String, configData: JSONObject) {
        self.messageID = messageID
        self.timestamp = timestamp
        self.cameraID = cameraID
        self.configType = configType
        self.configData = configData
        self.json = [
            "message_id": .string(messageID),
            "timestamp": .timestamp(timestamp),
            "camera_id": .string(cameraID),
            "config_type": .string(configType),
            "config_data": .object(configData),
        ]
    }

    /// Checks the types of the members the protocol names; others pass as they are.
    public static func checkConfigData(_ data: JSONObject, at path: String = "config_data", with reader: inout FieldReader) {
        _ = reader.number(data, "detection_interval", at: path)
        if let threshold = reader.number(data, "confidence_threshold", at: path), !(0...1).contains(threshold) {
            reader.fail(FieldReader.join(path, "confidence_threshold"), "must be between 0 and 1")
        }
        _ = reader.integer(data, "max_vehicles_per_frame", at: path)
        _ = reader.string(data, "image_quality", at: path, required: false)
        _ = reader.bool(data, "enable_recording", at: path)
        _ = reader.number(data, "recording_duration", at: path)
        if let alerts = reader.object(data, "alert_settings", at: path) {
            let alertsPath = FieldReader.join(path, "alert_settings")
            _ = reader.bool(alerts, "enable_alerts", at: alertsPath)
            _ = reader.number(alerts, "alert_confidence_threshold", at: alertsPath)
            if let channels = reader.array(alerts, "notification_channels", at: alertsPath), channels.contains(where: { $0.stringValue == nil }) {
                reader.fail(FieldReader.join(alertsPath, "notification_channels"), "expected an array of strings")
            }
        }
    }

    /// `config_data.confidence_threshold`.
    public var confidenceThreshold: Double? { configData["confidence_threshold"]?.doubleValue }
    /// `config_data.detection_interval`, in milliseconds.
    public var detectionInterval: Double? { configData["detection_interval"]?.doubleValue }
}

/// `lprserver/cameras/{id}/config/request`: the camera asks for its desired configuration.
public struct ConfigurationRequest: Sendable, Hashable {
    public var messageID: String
    public var cameraID: String

    public init(messageID: String, cameraID: String) {
        self.messageID = messageID
        self.cameraID = cameraID
    }

    public init(validating json: JSONObject, topicCamera: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let cameraID = reader.cameraID(json, topicCamera: topicCamera)
        try reader.check()
        self.messageID = messageID!
        self.cameraID = cameraID!
    }

    public var json: JSONObject { ["message_id": .string(messageID), "camera_id": .string(cameraID)] }
}
