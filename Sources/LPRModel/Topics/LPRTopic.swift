/// The topics of the LPR Server v3 protocol: every name built in one place, and a received topic
/// name parsed back into what it is and which camera or checkpoint it concerns.
public enum LPRTopic: Sendable, Hashable, CustomStringConvertible {
    /// camera → server, QoS 1: a detection.
    case detection(camera: String)
    /// server → camera, QoS 1: stored, duplicate or rejected.
    case detectionAck(camera: String)
    /// camera → server, QoS 0 retained: health.
    case health(camera: String)
    /// server → camera, QoS 0: asks for a fresh health message.
    case healthRequest(camera: String)
    /// server → camera, QoS 2 retained: the desired configuration.
    case configUpdate(camera: String)
    /// camera → server, QoS 2 retained: the configuration as applied.
    case config(camera: String)
    /// camera → server, QoS 2: asks for the desired configuration again.
    case configRequest(camera: String)
    /// server → camera, QoS 2: a command.
    case control(camera: String)
    /// camera → server, QoS 2: a command's answer.
    case controlResponse(camera: String)
    /// camera → all, QoS 1 retained: `online` / `offline` (the camera's will).
    case status(camera: String)
    /// server → all, QoS 1 retained: cameras online and offline at a checkpoint.
    case checkpointStatus(checkpoint: String)
    /// server → all, QoS 1 retained: a checkpoint's detection figures.
    case checkpointAnalytics(checkpoint: String)
    /// server → all, QoS 0 retained every 30 s: the server's health check.
    case systemHealth
    /// server → all, QoS 1 retained: `online`, or `offline` as the server's will.
    case systemStatus
    /// operator → server, QoS 2: commands to the server.
    case systemControl
    /// server → operator, QoS 2: answers to `system/control`.
    case systemControlResponse
    /// server → all, QoS 1: alerts.
    case systemAlerts
    /// server → all, QoS 0: the server's warnings and errors.
    case systemLogs
    /// server → all, QoS 0 retained every 30 s: counters.
    case systemMonitoring
    /// server → cameras, QoS 1 retained: the whole watch-list with its version.
    case blacklistUpdates
    /// server → all, QoS 1: a watch-list match.
    case blacklistNotifications
    /// camera → server, QoS 1: asks for `blacklist/updates` again.
    case blacklistRequest

    public static let root = "lprserver"

    /// The topic name.
    public var name: String {
        switch self {
        case .detection(let camera): "lprserver/cameras/\(camera)/detection"
        case .detectionAck(let camera): "lprserver/cameras/\(camera)/detection/ack"
        case .health(let camera): "lprserver/cameras/\(camera)/health"
        case .healthRequest(let camera): "lprserver/cameras/\(camera)/health/request"
        case .configUpdate(let camera): "lprserver/cameras/\(camera)/config/update"
        case .config(let camera): "lprserver/cameras/\(camera)/config"
        case .configRequest(let camera): "lprserver/cameras/\(camera)/config/request"
        case .control(let camera): "lprserver/cameras/\(camera)/control"
        case .controlResponse(let camera): "lprserver/cameras/\(camera)/control/response"
        case .status(let camera): "lprserver/cameras/\(camera)/status"
        case .checkpointStatus(let checkpoint): "lprserver/checkpoints/\(checkpoint)/status"
        case .checkpointAnalytics(let checkpoint): "lprserver/checkpoints/\(checkpoint)/analytics"
        case .systemHealth: "lprserver/system/health"
        case .systemStatus: "lprserver/system/status"
        case .systemControl: "lprserver/system/control"
        case .systemControlResponse: "lprserver/system/control/response"
        case .systemAlerts: "lprserver/system/alerts"
        case .systemLogs: "lprserver/system/logs"
        case .systemMonitoring: "lprserver/system/monitoring"
        case .blacklistUpdates: "lprserver/blacklist/updates"
        case .blacklistNotifications: "lprserver/blacklist/notifications"
        case .blacklistRequest: "lprserver/blacklist/request"
        }
    }

    public var description: String { name }

    /// The QoS the protocol publishes this topic at (0, 1 or 2).
    public var qos: Int {
        switch self {
        case .detection, .detectionAck, .status, .checkpointStatus, .checkpointAnalytics, .systemStatus, .systemAlerts, .blacklistUpdates,
            .blacklistNotifications, .blacklistRequest:
            1
        case .health, .healthRequest, .systemHealth, .systemLogs, .systemMonitoring:
            0
        case .configUpdate, .config, .configRequest, .control, .controlResponse, .systemControl, .systemControlResponse:
            2
        }
    }

    /// Whether the protocol publishes this topic retained.
    public var retain: Bool {
        switch self {
        case .health, .configUpdate, .config, .status, .checkpointStatus, .checkpointAnalytics, .systemHealth, .systemStatus, .systemMonitoring,
            .blacklistUpdates:
            true
        default:
            false
        }
    }

    /// The camera the topic concerns, for camera topics.
    public var camera: String? {
        switch self {
        case .detection(let camera), .detectionAck(let camera), .health(let camera), .healthRequest(let camera), .configUpdate(let camera),
            .config(let camera), .configRequest(let camera), .control(let camera), .controlResponse(let camera), .status(let camera):
            camera
        default:
            nil
        }
    }

    /// What a topic name is, or `nil` when it is not one of the protocol's.
    public init?(parsing name: String) {
        let levels = name.split(separator: "/", omittingEmptySubsequences: false)
        guard levels.count >= 3, levels[0] == "lprserver" else { return nil }
        switch levels[1] {
        case "cameras":
            guard levels.count >= 4, !levels[2].isEmpty else { return nil }
            let camera = String(levels[2])
            switch levels[3...].joined(separator: "/") {
            case "detection": self = .detection(camera: camera)
            case "detection/ack": self = .detectionAck(camera: camera)
            case "health": self = .health(camera: camera)
            case "health/request": self = .healthRequest(camera: camera)
            case "config/update": self = .configUpdate(camera: camera)
            case "config": self = .config(camera: camera)
            case "config/request": self = .configRequest(camera: camera)
            case "control": self = .control(camera: camera)
            case "control/response": self = .controlResponse(camera: camera)
            case "status": self = .status(camera: camera)
            default: return nil
            }
        case "checkpoints":
            guard levels.count == 4, !levels[2].isEmpty else { return nil }
            let checkpoint = String(levels[2])
            switch levels[3] {
            case "status": self = .checkpointStatus(checkpoint: checkpoint)
            case "analytics": self = .checkpointAnalytics(checkpoint: checkpoint)
            default: return nil
            }
        case "system":
            switch levels[2...].joined(separator: "/") {
            case "health": self = .systemHealth
            case "status": self = .systemStatus
            case "control": self = .systemControl
            case "control/response": self = .systemControlResponse
            case "alerts": self = .systemAlerts
            case "logs": self = .systemLogs
            case "monitoring": self = .systemMonitoring
            default: return nil
            }
        case "blacklist":
            guard levels.count == 3 else { return nil }
            switch levels[2] {
            case "updates": self = .blacklistUpdates
            case "notifications": self = .blacklistNotifications
            case "request": self = .blacklistRequest
            default: return nil
            }
        default:
            return nil
        }
    }

    /// Whether `identifier` can stand in a topic level: not empty, no `/`, `+`, `#` or control
    /// character (brokers such as mosquitto refuse topic names with control characters and drop
    /// the connection that sent one).
    public static func isValidIdentifier(_ identifier: String) -> Bool {
        !identifier.isEmpty
            && !identifier.unicodeScalars.contains { scalar in
                scalar == "/" || scalar == "+" || scalar == "#" || scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
            }
    }

    /// The filters the server subscribes to, camera → server.
    public enum Filter {
        public static let detections = "lprserver/cameras/+/detection"
        public static let health = "lprserver/cameras/+/health"
        public static let status = "lprserver/cameras/+/status"
        public static let config = "lprserver/cameras/+/config"
        public static let configRequests = "lprserver/cameras/+/config/request"
        public static let controlResponses = "lprserver/cameras/+/control/response"
        public static let blacklistRequests = "lprserver/blacklist/request"
        public static let systemControl = "lprserver/system/control"
        public static let blacklistUpdates = "lprserver/blacklist/updates"
    }
}
