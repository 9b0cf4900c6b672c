import Foundation

/// A camera's health (`lprserver/cameras/{id}/health`).
public struct CameraHealth: Sendable, Hashable {
    public enum Status: String, Sendable, Hashable, CaseIterable {
        case healthy
        case degraded
        case unhealthy
    }

    /// One of `alerts`.
    public struct Alert: Sendable, Hashable {
        public var level: String
        public var message: String
        public var timestamp: Date?
        public init(level: String, message: String, timestamp: Date?) {
            self.level = level
            self.message = message
            self.timestamp = timestamp
        }
    }

    public var messageID: String
    public var timestamp: Date
    public var cameraID: String
    public var status: Status
    public var cpuUsage: Double?
    public var memoryUsage: Double?
    public var diskUsage: Double?
    public var networkStatus: String?
    public var cameraStatus: String?
    public var lastDetection: Date?
    public var uptimeSeconds: Double?
    public var temperature: Double?
    public var alerts: [Alert]
    /// The message as received or built.
    public var json: JSONObject

    public init(validating json: JSONObject, topicCamera: String? = nil) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let timestamp = reader.timestamp(json, "timestamp")
        let cameraID = reader.cameraID(json, topicCamera: topicCamera)
        let status = reader.oneOf(json, "health_status", Status.allCases.map(\.rawValue))
        let path = "health_details"
        let details = reader.object(json, path) ?? JSONObject()
        cpuUsage = reader.number(details, "cpu_usage", at: path)
        memoryUsage = reader.number(details, "memory_usage", at: path)
        diskUsage = reader.number(details, "disk_usage", at: path)
        networkStatus = reader.string(details, "network_status", at: path, required: false)
        cameraStatus = reader.string(details, "camera_status", at: path, required: false)
        lastDetection = reader.timestamp(details, "last_detection", at: path, required: false)
        uptimeSeconds = reader.number(details, "uptime_seconds", at: path)
        temperature = reader.number(details, "temperature", at: path)
        var alerts: [Alert] = []
        for (object, alertPath) in reader.objects(json, "alerts") {
            let level = reader.string(object, "level", at: alertPath) ?? ""
            let message = reader.string(object, "message", at: alertPath, required: false) ?? ""
            let time = reader.timestamp(object, "timestamp", at: alertPath, required: false)
            alerts.append(Alert(level: level, message: message, timestamp: time))
        }
        try reader.check()
        self.messageID = messageID!
        self.timestamp = timestamp!
        self.cameraID = cameraID!
        self.status = Status(rawValue: status!)!
        self.alerts = alerts
        self.json = json
    }

    /// Builds a health message (the camera agent's).
    public init(
        messageID: String,
        timestamp: Date,
        cameraID: String,
        status: Status,
        cpuUsage: Double?,
        memoryUsage: Double?,
        diskUsage: Double?,
        networkStatus: String? = "connected",
        cameraStatus: String? = "active",
        lastDetection: Date?,
        uptimeSeconds: Double?,
        temperature: Double?,
        alerts: [Alert] = []
    ) {
        self.messageID = messageID
        self.timestamp = timestamp
        self.cameraID = cameraID
        self.status = status
        self.cpuUsage = cpuUsage
        self.memoryUsage = memoryUsage
        self.diskUsage = diskUsage
        self.networkStatus = networkStatus
        self.cameraStatus = cameraStatus
        self.lastDetection = lastDetection
        self.uptimeSeconds = uptimeSeconds
        self.temperature = temperature
        self.alerts = alerts
        var details = JSONObject()
        if let cpuUsage { details["cpu_usage"] = .double(cpuUsage) }
        if let memoryUsage { details["memory_usage"] = .double(memoryUsage) }
        if let diskUsage { details["disk_usage"] = .double(diskUsage) }
        if let networkStatus { details["network_status"] = .string(networkStatus) }
        if let cameraStatus { details["camera_status"] = .string(cameraStatus) }
        details["last_detection"] = lastDetection.map(JSONValue.timestamp) ?? .null
        if let uptimeSeconds { details["uptime_seconds"] = .double(uptimeSeconds) }
        if let temperature { details["temperature"] = .double(temperature) }
        json = [
            "message_id": .string(messageID),
            "timestamp": .timestamp(timestamp),
            "camera_id": .string(cameraID),
            "health_status": .string(status.rawValue),
            "health_details": .object(details),
            "alerts": .array(
                alerts.map { alert in
                    [
                        "level": .string(alert.level), "message": .string(alert.message),
                        "timestamp": alert.timestamp.map(JSONValue.timestamp) ?? .null,
                    ]
                }
            ),
        ]
    }
}

/// `lprserver/cameras/{id}/health/request`: asks the camera for a fresh health message.
public struct HealthRequest: Sendable, Hashable {
    public var messageID: String
    public var timestamp: Date

    public init(messageID: String, timestamp: Date) {
        self.messageID = messageID
        self.timestamp = timestamp
    }

    public var json: JSONObject { ["message_id": .string(messageID), "timestamp": .timestamp(timestamp)] }
}

/// `lprserver/cameras/{id}/status`: `online` or `offline` (the camera's will).
public enum CameraAvailability: String, Sendable, Hashable {
    case online
    case offline

    /// Reads the payload: the bare word, a JSON string of it, or an object with `status`;
    /// `nil` for anything else (an empty payload clears a retained status).
    public init?(payload: some Collection<UInt8>) {
        let text = String(decoding: payload, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if let value = CameraAvailability(rawValue: text.lowercased()) {
            self = value
            return
        }
        guard let json = try? JSONValue.parse(Array(text.utf8)) else { return nil }
        let word = json.stringValue ?? json["status"]?.stringValue
        guard let word, let value = CameraAvailability(rawValue: word.lowercased()) else { return nil }
        self = value
    }
}
