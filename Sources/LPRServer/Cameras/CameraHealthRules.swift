import Foundation
import LPRModel

/// When a camera counts as online, offline or unwell, and which alerts that raises: a pure
/// state machine over ``CameraRecord``, so every server sharing a store raises each alert once.
///
/// A camera is offline when its will (or its own `status`) says so, or when no health message
/// came for ``staleAfter``; it is back with the next `online` or health message. A health
/// problem (a status other than healthy, CPU, memory, disk or temperature above its limit) is
/// alerted when it appears, not again while it lasts, and again if it comes back after clearing.
public struct CameraHealthRules: Sendable, Hashable {
    /// No health message for this long: offline. Three health intervals by default.
    public var staleAfter: Duration
    /// Percent.
    public var cpuLimit: Double
    /// Percent.
    public var memoryLimit: Double
    /// Percent.
    public var diskLimit: Double
    /// Degrees Celsius.
    public var temperatureLimit: Double

    public init(
        staleAfter: Duration = .seconds(90),
        cpuLimit: Double = 90,
        memoryLimit: Double = 95,
        diskLimit: Double = 95,
        temperatureLimit: Double = 80
    ) {
        self.staleAfter = staleAfter
        self.cpuLimit = cpuLimit
        self.memoryLimit = memoryLimit
        self.diskLimit = diskLimit
        self.temperatureLimit = temperatureLimit
    }

    /// What a change of a camera's state means for others.
    public enum Event: Sendable, Hashable {
        /// Offline now (it was online or unknown).
        case wentOffline(reason: String)
        /// Online again after being offline.
        case cameBack
        /// Online for the first time the server knows of.
        case appeared
        /// A health problem appeared.
        case problem(key: String, level: Alert.Level, message: String)
        /// A health problem cleared.
        case recovered(key: String)
    }

    /// A health message arrived.
    public func health(_ health: CameraHealth, receivedAt: Date, checkpointID: String?, record: inout CameraRecord) -> [Event] {
        var events = markSeen(at: receivedAt, checkpointID: checkpointID, record: &record)
        record.lastHealthAt = receivedAt
        record.health = JSONValue.object(health.json).jsonText
        record.healthStatus = health.status.rawValue
        events += setOnline(true, reason: nil, record: &record)

        var problems: [(key: String, level: Alert.Level, message: String)] = []
        switch health.status {
        case .healthy: break
        case .degraded: problems.append(("status", .warning, "camera \(health.cameraID) reports it is degraded"))
        case .unhealthy: problems.append(("status", .critical, "camera \(health.cameraID) reports it is unhealthy"))
        }
        if let cpu = health.cpuUsage, cpu > cpuLimit {
            problems.append(("cpu", .warning, "camera \(health.cameraID) CPU at \(Self.format(cpu)) % (limit \(Self.format(cpuLimit)) %)"))
        }
        if let memory = health.memoryUsage, memory > memoryLimit {
            problems.append(
                ("memory", .warning, "camera \(health.cameraID) memory at \(Self.format(memory)) % (limit \(Self.format(memoryLimit)) %)")
            )
        }
        if let disk = health.diskUsage, disk > diskLimit {
            problems.append(("disk", .warning, "camera \(health.cameraID) disk at \(Self.format(disk)) % (limit \(Self.format(diskLimit)) %)"))
        }
        if let temperature = health.temperature, temperature > temperatureLimit {
            problems.append(
                ("temperature", .warning, "camera \(health.cameraID) at \(Self.format(temperature)) °C (limit \(Self.format(temperatureLimit)) °C)")
            )
        }
        let current = Set(problems.map(\.key))
        for problem in problems where !record.activeProblems.contains(problem.key) {
            events.append(.problem(key: problem.key, level: problem.level, message: problem.message))
        }
        for key in record.activeProblems where !current.contains(key) {
            events.append(.recovered(key: key))
        }
        record.activeProblems = problems.map(\.key)
        return events
    }

    /// A status message (`online` / `offline`, the camera's will) arrived.
    public func availability(_ availability: CameraAvailability, receivedAt: Date, record: inout CameraRecord) -> [Event] {
        var events = markSeen(at: receivedAt, checkpointID: nil, record: &record)
        switch availability {
        case .online:
            events += setOnline(true, reason: nil, record: &record)
        case .offline:
            events += setOnline(false, reason: "its status says offline", record: &record)
        }
        return events
    }

    /// Time passed: a camera silent for longer than ``staleAfter`` goes offline.
    public func check(now: Date, record: inout CameraRecord) -> [Event] {
        guard record.online != false, let lastHealth = record.lastHealthAt else { return [] }
        let silence = now.timeIntervalSince(lastHealth)
        guard silence > staleAfter.seconds else { return [] }
        return setOnline(false, reason: "no health message for \(Int(silence)) s", record: &record)
    }

    /// Some other message came from the camera.
    public func markSeen(at time: Date, checkpointID: String?, record: inout CameraRecord) -> [Event] {
        if record.firstSeen == nil { record.firstSeen = time }
        if record.lastSeen.map({ $0 < time }) ?? true { record.lastSeen = time }
        if let checkpointID { record.checkpointID = checkpointID }
        return []
    }

    private func setOnline(_ online: Bool, reason: String?, record: inout CameraRecord) -> [Event] {
        let before = record.online
        guard before != online else { return [] }
        record.online = online
        if online {
            return before == false ? [.cameBack] : [.appeared]
        }
        return [.wentOffline(reason: reason ?? "offline")]
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }
}

extension Duration {
    /// The duration in seconds, as a double.
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
