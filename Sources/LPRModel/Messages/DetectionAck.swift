import Foundation

/// The server's answer to a detection (`lprserver/cameras/{id}/detection/ack`).
public struct DetectionAck: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable, CaseIterable {
        /// Stored now.
        case stored
        /// Stored before: a redelivered or re-sent detection.
        case duplicate
        /// Refused; ``DetectionAck/errors`` says why.
        case rejected
    }

    /// The detection's `message_id`.
    public var messageID: String
    public var status: Status
    /// Empty unless ``status`` is ``Status/rejected``.
    public var errors: [FieldError]
    public var timestamp: Date

    public init(messageID: String, status: Status, errors: [FieldError] = [], timestamp: Date) {
        self.messageID = messageID
        self.status = status
        self.errors = errors
        self.timestamp = timestamp
    }

    public var json: JSONObject {
        [
            "message_id": .string(messageID),
            "status": .string(status.rawValue),
            "errors": .array(errors.map(\.json)),
            "timestamp": .timestamp(timestamp),
        ]
    }

    /// Reads an ack (the camera agent's side).
    public init(validating json: JSONObject) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let status = reader.oneOf(json, "status", Status.allCases.map(\.rawValue))
        let timestamp = reader.timestamp(json, "timestamp", required: false)
        var errors: [FieldError] = []
        for (object, path) in reader.objects(json, "errors") {
            let fieldPath = reader.string(object, "path", at: path, required: false) ?? ""
            let reason = reader.string(object, "reason", at: path) ?? ""
            errors.append(FieldError(path: fieldPath, reason: reason))
        }
        try reader.check()
        self.messageID = messageID!
        self.status = Status(rawValue: status!)!
        self.errors = errors
        self.timestamp = timestamp ?? Date()
    }
}
