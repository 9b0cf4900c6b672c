import Foundation
import LPRModel

/// The host figures a camera's health message carries, read from `/proc` (CPU, memory,
/// uptime), `statvfs` (disk) and `/sys/class/thermal` (temperature, when the host has a sensor).
public struct HostSample: Sendable, Hashable {
    /// Percent of CPU time busy since the previous sample.
    public var cpuUsage: Double?
    /// Percent of memory in use (not available).
    public var memoryUsage: Double?
    /// Percent of the data folder's file system in use.
    public var diskUsage: Double?
    /// Seconds since the host booted.
    public var uptimeSeconds: Double?
    /// Degrees Celsius, the hottest thermal zone.
    public var temperature: Double?

    public init(
        cpuUsage: Double? = nil,
        memoryUsage: Double? = nil,
        diskUsage: Double? = nil,
        uptimeSeconds: Double? = nil,
        temperature: Double? = nil
    ) {
        self.cpuUsage = cpuUsage
        self.memoryUsage = memoryUsage
        self.diskUsage = diskUsage
        self.uptimeSeconds = uptimeSeconds
        self.temperature = temperature
    }
}

/// Reads the host's figures; keeps the previous CPU counters to report usage between samples.
public struct HostHealthReader: Sendable {
    /// The CPU counters of `/proc/stat`'s first line.
    public struct CPUTimes: Sendable, Hashable {
        public var busy: UInt64
        public var total: UInt64

        public init(busy: UInt64, total: UInt64) {
            self.busy = busy
            self.total = total
        }
    }

    public let procRoot: String
    public let thermalRoot: String
    /// The folder whose file system's usage is reported.
    public let diskPath: String
    private var previousCPU: CPUTimes?

    public init(diskPath: String, procRoot: String = "/proc", thermalRoot: String = "/sys/class/thermal") {
        self.diskPath = diskPath
        self.procRoot = procRoot
        self.thermalRoot = thermalRoot
        previousCPU = Self.read("\(procRoot)/stat").flatMap(Self.cpuTimes(stat:))
    }

    /// A sample now: CPU usage since the previous one (or since the reader was made).
    public mutating func sample() -> HostSample {
        var sample = HostSample()
        if let times = Self.read("\(procRoot)/stat").flatMap(Self.cpuTimes(stat:)) {
            if let previousCPU { sample.cpuUsage = Self.cpuUsage(from: previousCPU, to: times) }
            previousCPU = times
        }
        sample.memoryUsage = Self.read("\(procRoot)/meminfo").flatMap(Self.memoryUsage(meminfo:))
        sample.uptimeSeconds = Self.read("\(procRoot)/uptime").flatMap(Self.uptime(text:))
        sample.diskUsage = Self.diskUsage(path: diskPath)
        sample.temperature = Self.temperature(thermalRoot: thermalRoot)
        return sample
    }

    static func read(_ path: String) -> String? {
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// The `cpu` line of `/proc/stat`: user nice system idle iowait irq softirq steal ...
    public static func cpuTimes(stat text: String) -> CPUTimes? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
        let values = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard values.count >= 4 else { return nil }
        let idle = values[3] + (values.count > 4 ? values[4] : 0)
        let total = values.reduce(0, +)
        return CPUTimes(busy: total - idle, total: total)
    }

    /// Percent busy between two readings; `nil` when no time passed.
    public static func cpuUsage(from earlier: CPUTimes, to later: CPUTimes) -> Double? {
        guard later.total > earlier.total, later.busy >= earlier.busy else { return nil }
        return rounded(Double(later.busy - earlier.busy) / Double(later.total - earlier.total) * 100)
    }

    /// Percent of `MemTotal` not `MemAvailable` (`MemFree` on old kernels).
    public static func memoryUsage(meminfo text: String) -> Double? {
        var fields: [Substring: Double] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let value = Double(parts[1]) else { continue }
            fields[parts[0].dropLast()] = value
        }
        guard let total = fields["MemTotal"], total > 0, let available = fields["MemAvailable"] ?? fields["MemFree"] else { return nil }
        return rounded((total - available) / total * 100)
    }

    /// The first number of `/proc/uptime`.
    public static func uptime(text: String) -> Double? {
        text.split(separator: " ").first.flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Percent of the file system holding `path` in use, as `df` counts it.
    public static func diskUsage(path: String) -> Double? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0, stats.f_blocks > 0 else { return nil }
        let used = Double(stats.f_blocks - stats.f_bfree)
        let usable = used + Double(stats.f_bavail)
        guard usable > 0 else { return nil }
        return rounded(used / usable * 100)
    }

    /// The hottest `thermal_zone*/temp` (millidegrees) in degrees; `nil` without sensors.
    public static func temperature(thermalRoot: String) -> Double? {
        guard let zones = try? FileManager.default.contentsOfDirectory(atPath: thermalRoot) else { return nil }
        let readings = zones.filter { $0.hasPrefix("thermal_zone") }.compactMap { zone in
            read("\(thermalRoot)/\(zone)/temp").flatMap(temperature(millidegrees:))
        }
        return readings.max()
    }

    /// A `temp` file's millidegrees in degrees Celsius.
    public static func temperature(millidegrees text: String) -> Double? {
        guard let value = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)), value > -50_000, value < 200_000 else { return nil }
        return rounded(value / 1000)
    }

    static func rounded(_ value: Double) -> Double { (value * 10).rounded() / 10 }
}

/// Turns host figures into a health status and alerts: `degraded` with a warning when CPU,
/// memory or disk pass 90 % or the temperature 75 °C, `unhealthy` with a critical alert when
/// disk passes 97 % or the temperature 85 °C, or when detections cannot be delivered.
public struct HealthAssessment: Sendable, Hashable {
    public var cpuWarning = 90.0
    public var memoryWarning = 90.0
    public var diskWarning = 90.0
    public var diskCritical = 97.0
    public var temperatureWarning = 75.0
    public var temperatureCritical = 85.0

    public init() {}

    public func assess(_ sample: HostSample, now: Date) -> (status: CameraHealth.Status, alerts: [CameraHealth.Alert]) {
        var warnings: [String] = []
        var criticals: [String] = []
        if let cpu = sample.cpuUsage, cpu > cpuWarning { warnings.append("High CPU usage detected (\(cpu) %)") }
        if let memory = sample.memoryUsage, memory > memoryWarning { warnings.append("High memory usage detected (\(memory) %)") }
        if let disk = sample.diskUsage {
            if disk > diskCritical {
                criticals.append("Disk almost full (\(disk) %)")
            } else if disk > diskWarning {
                warnings.append("High disk usage detected (\(disk) %)")
            }
        }
        if let temperature = sample.temperature {
            if temperature > temperatureCritical {
                criticals.append("Temperature critical (\(temperature) °C)")
            } else if temperature > temperatureWarning {
                warnings.append("High temperature detected (\(temperature) °C)")
            }
        }
        let alerts =
            criticals.map { CameraHealth.Alert(level: "critical", message: $0, timestamp: now) }
            + warnings.map { CameraHealth.Alert(level: "warning", message: $0, timestamp: now) }
        let status: CameraHealth.Status = !criticals.isEmpty ? .unhealthy : !warnings.isEmpty ? .degraded : .healthy
        return (status, alerts)
    }
}
