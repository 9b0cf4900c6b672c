import Foundation

/// `lprserver/system/health`: the server's health check, in the seed's shape.
public struct SystemHealth: Sendable, Hashable {
    public var status: String
    public var timestamp: Date
    public var connectionStatus: String
    public var lastMessageReceived: Date?
    public var messageRate: Double
    public var errorRate: Double
    public var latencyMs: Double

    public init(
        status: String,
        timestamp: Date,
        connectionStatus: String,
        lastMessageReceived: Date?,
        messageRate: Double,
        errorRate: Double,
        latencyMs: Double
    ) {
        self.status = status
        self.timestamp = timestamp
        self.connectionStatus = connectionStatus
        self.lastMessageReceived = lastMessageReceived
        self.messageRate = messageRate
        self.errorRate = errorRate
        self.latencyMs = latencyMs
    }

    public var json: JSONObject {
        [
            "status": .string(status),
            "timestamp": .timestamp(timestamp),
            "connection_status": .string(connectionStatus),
            "last_message_received": lastMessageReceived.map(JSONValue.timestamp) ?? .null,
            "message_rate": .double((messageRate * 100).rounded() / 100),
            "error_rate": .double((errorRate * 10000).rounded() / 10000),
            "latency_ms": .double((latencyMs * 100).rounded() / 100),
        ]
    }
}

/// A command to the server on `lprserver/system/control`.
public struct SystemCommand: Sendable, Hashable {
    /// What the server does.
    public enum Command: String, Sendable, Hashable, CaseIterable {
        /// Reads the watch-list from the store again and publishes `blacklist/updates`.
        case reloadWatchlist = "reload_watchlist"
        /// Publishes every camera's desired configuration again.
        case resendConfigurations = "resend_configurations"
        /// Purges detections by the retention rules now.
        case purge
        /// Answers with the server's counters.
        case status
        /// Asks every known camera for a fresh health message.
        case requestHealth = "request_health"
    }

    public var messageID: String
    public var command: String
    public var parameters: JSONObject

    public init(messageID: String, command: String, parameters: JSONObject = [:]) {
        self.messageID = messageID
        self.command = command
        self.parameters = parameters
    }

    public init(validating json: JSONObject) throws(MessageValidationError) {
        var reader = FieldReader()
        let messageID = reader.string(json, "message_id")
        let command = reader.string(json, "command")
        let parameters = reader.object(json, "parameters") ?? [:]
        try reader.check()
        self.init(messageID: messageID!, command: command!, parameters: parameters)
    }

    public var json: JSONObject { ["message_id": .string(messageID), "command": .string(command), "parameters": .object(parameters)] }
}

/// `lprserver/checkpoints/{cp}/status`: which cameras at a checkpoint are online.
public struct CheckpointStatus: Sendable, Hashable {
    public var checkpointID: String
    public var timestamp: Date
    /// Camera id and whether it is online, sorted by id.
    public var cameras: [(id: String, online: Bool)]

    public init(checkpointID: String, timestamp: Date, cameras: [(id: String, online: Bool)]) {
        self.checkpointID = checkpointID
        self.timestamp = timestamp
        self.cameras = cameras.sorted { $0.id < $1.id }
    }

    public var json: JSONObject {
        let online = cameras.filter(\.online).map(\.id)
        let offline = cameras.filter { !$0.online }.map(\.id)
        return [
            "checkpoint_id": .string(checkpointID),
            "timestamp": .timestamp(timestamp),
            "status": .string(online.isEmpty ? "offline" : (offline.isEmpty ? "online" : "degraded")),
            "cameras_online": .int(online.count),
            "cameras_offline": .int(offline.count),
            "online": .array(online.map(JSONValue.string)),
            "offline": .array(offline.map(JSONValue.string)),
        ]
    }

    public static func == (lhs: CheckpointStatus, rhs: CheckpointStatus) -> Bool { lhs.json == rhs.json }
    public func hash(into hasher: inout Hasher) { hasher.combine(json) }
}

/// `lprserver/checkpoints/{cp}/analytics`: a checkpoint's figures over the last hour.
public struct CheckpointAnalytics: Sendable, Hashable {
    public var checkpointID: String
    public var timestamp: Date
    /// Detections in the window, which is an hour: detections per hour.
    public var detectionsPerHour: Int
    public var uniquePlates: Int
    public var watchlistHits: Int
    /// Mean `confidence_score`; `nil` without detections.
    public var meanConfidence: Double?

    public init(checkpointID: String, timestamp: Date, detectionsPerHour: Int, uniquePlates: Int, watchlistHits: Int, meanConfidence: Double?) {
        self.checkpointID = checkpointID
        self.timestamp = timestamp
        self.detectionsPerHour = detectionsPerHour
        self.uniquePlates = uniquePlates
        self.watchlistHits = watchlistHits
        self.meanConfidence = meanConfidence
    }

    public var json: JSONObject {
        [
            "checkpoint_id": .string(checkpointID),
            "timestamp": .timestamp(timestamp),
            "window_seconds": .int(3600),
            "detections_per_hour": .int(detectionsPerHour),
            "unique_plates": .int(uniquePlates),
            "watchlist_hits": .int(watchlistHits),
            "mean_confidence": meanConfidence.map { .double(($0 * 10000).rounded() / 10000) } ?? .null,
        ]
    }
}
