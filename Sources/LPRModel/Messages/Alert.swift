import Foundation

/// An alert (`lprserver/system/alerts`).
public struct Alert: Sendable, Hashable {
    public enum Level: String, Sendable, Hashable, CaseIterable, Comparable {
        case info
        case warning
        case critical

        private var rank: Int {
            switch self {
            case .info: 0
            case .warning: 1
            case .critical: 2
            }
        }

        public static func < (lhs: Level, rhs: Level) -> Bool { lhs.rank < rhs.rank }
    }

    public enum Kind: String, Sendable, Hashable, CaseIterable {
        case watchlistHit = "watchlist_hit"
        case cameraOffline = "camera_offline"
        case cameraOnline = "camera_online"
        case cameraHealth = "camera_health"
        case messageRejected = "message_rejected"
        case server
    }

    public var alertID: String
    public var level: Level
    public var kind: Kind
    public var cameraID: String?
    public var message: String
    public var timestamp: Date
    /// More about it (the plate and entry of a watch-list hit, the topic of a rejected message).
    public var details: JSONObject

    public init(alertID: String, level: Level, kind: Kind, cameraID: String?, message: String, timestamp: Date, details: JSONObject = [:]) {
        self.alertID = alertID
        self.level = level
        self.kind = kind
        self.cameraID = cameraID
        self.message = message
        self.timestamp = timestamp
        self.details = details
    }

    public var json: JSONObject {
        var json: JSONObject = ["alert_id": .string(alertID), "level": .string(level.rawValue), "kind": .string(kind.rawValue)]
        if let cameraID { json["camera_id"] = .string(cameraID) }
        json["message"] = .string(message)
        json["timestamp"] = .timestamp(timestamp)
        if !details.isEmpty { json["details"] = .object(details) }
        return json
    }

    public init(validating json: JSONObject) throws(MessageValidationError) {
        var reader = FieldReader()
        let alertID = reader.string(json, "alert_id")
        let level = reader.oneOf(json, "level", Level.allCases.map(\.rawValue))
        let kind = reader.oneOf(json, "kind", Kind.allCases.map(\.rawValue))
        let cameraID = reader.string(json, "camera_id", required: false)
        let message = reader.string(json, "message", required: false)
        let timestamp = reader.timestamp(json, "timestamp")
        let details = reader.object(json, "details") ?? [:]
        try reader.check()
        self.init(
            alertID: alertID!,
            level: Level(rawValue: level!)!,
            kind: Kind(rawValue: kind!)!,
            cameraID: cameraID,
            message: message ?? "",
            timestamp: timestamp!,
            details: details
        )
    }
}
