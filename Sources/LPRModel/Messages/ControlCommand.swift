import Foundation

/// A command to a camera (`lprserver/cameras/{id}/control`).
public struct ControlCommand: Sendable, Hashable {
    public enum Priority: String, Sendable, Hashable, CaseIterable {
        case low
        case normal
        case high
    }

    public var messageID: String
    public var timestamp: Date
    public var cameraID: String
    public var command: String
    public var parameters: JSONObject
    public var priority: Priority
    public var json: JSONObject

    public init(messageID: String, timestamp: Date, cameraID: String, command: String, parameters: JSONObject = [:], priority: Priority = .normal) {
        self.messageID = messageID
        self.timestamp = timestamp
        self.cameraID = cameraID
        self.command = command
        self.parameters = parameters
        self.priority = priority
        self.json = [
            "message_id": .string(messageID),
            "timestamp": .timestamp(timestamp),
            "camera_id": .string(cameraID),
            "command": .string(command),
            "parameters": .object(parameters),
            "priority": .string(priority.rawValue),
        ]
    }

    /// Reads a command (the camera agent's side).
    public init(validating json: JSONObject, topicCamera: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let timestamp = reader.timestamp(json, "timestamp", required: false)
        let cameraID = reader.cameraID(json, topicCamera: topicCamera, required: false)
        let command = reader.string(json, "command")
        let parameters = reader.object(json, "parameters") ?? [:]
        let priority = reader.oneOf(json, "priority", Priority.allCases.map(\.rawValue), required: false)
        try reader.check()
        self.messageID = messageID!
        self.timestamp = timestamp ?? Date()
        self.cameraID = cameraID!
        self.command = command!
        self.parameters = parameters
        self.priority = priority.flatMap(Priority.init(rawValue:)) ?? .normal
        self.json = json
    }
}

/// A camera's answer to a command (`lprserver/cameras/{id}/control/response`), with the command's `message_id`.
public struct ControlResponse: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable, CaseIterable {
        case ok
        case error
        case unsupported
    }

    /// The command's `message_id`.
    public var messageID: String
    public var status: Status
    public var result: JSONObject
    public var timestamp: Date?
    /// The message as the camera sent it.
    public var json: JSONObject

    /// Reads an answer. With MQTT 5 correlation data the `message_id` may be missing: pass the
    /// correlated command's as `correlatedMessageID`.
    public init(validating json: JSONObject, correlatedMessageID: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id", required: correlatedMessageID == nil) ?? correlatedMessageID
        let status = reader.oneOf(json, "status", Status.allCases.map(\.rawValue))
        let result = reader.object(json, "result") ?? [:]
        let timestamp = reader.timestamp(json, "timestamp", required: false)
        try reader.check()
        self.messageID = messageID!
        self.status = Status(rawValue: status!)!
        self.result = result
        self.timestamp = timestamp
        self.json = json
    }

    public init(messageID: String, status: Status, result: JSONObject = [:], timestamp: Date) {
        self.messageID = messageID
        self.status = status
        self.result = result
        self.timestamp = timestamp
        self.json = [
            "message_id": .string(messageID), "status": .string(status.rawValue), "result": .object(result), "timestamp": .timestamp(timestamp),
        ]
    }
}
