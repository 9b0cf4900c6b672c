import Foundation
import Histogram

/// Latencies in microseconds (1 µs to 60 s, three significant digits).
struct LatencyRecorder: Sendable {
    private(set) var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1,
        highestTrackableValue: 60_000_000,
        numberOfSignificantValueDigits: .three
    )

    mutating func record(nanoseconds: UInt64) {
        _ = histogram.record(Swift.min(Swift.max(nanoseconds / 1_000, 1), 60_000_000))
    }

    mutating func add(_ other: LatencyRecorder) { histogram.add(other.histogram) }

    var count: UInt64 { histogram.totalCount }
    func percentile(_ value: Double) -> UInt64 { histogram.totalCount == 0 ? 0 : histogram.valueAtPercentile(value) }
    var max: UInt64 { histogram.totalCount == 0 ? 0 : histogram.max }
}

/// CPU time and memory of a process, from /proc.
struct ProcessSample: Sendable {
    var cpuSeconds: Double
    var rssKilobytes: Int

    /// The process `pid` (nil: this process).
    static func take(_ pid: Int32?) -> ProcessSample? {
        let path = pid.map { "/proc/\($0)" } ?? "/proc/self"
        guard let stat = try? String(contentsOfFile: path + "/stat", encoding: .utf8),
            let status = try? String(contentsOfFile: path + "/status", encoding: .utf8)
        else { return nil }
        // Fields after the command name, which is in parentheses and may hold spaces.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var rss = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            rss = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
        }
        return ProcessSample(cpuSeconds: (user + system) / ticks, rssKilobytes: rss)
    }
}

/// The outcome of one run: a table for people and one JSON line for scripts.
public struct BenchReport: Sendable, Codable {
    public var label: String
    public var scenario: String
    public var qos: Int
    public var size: Int
    public var publishers: Int
    public var subscribers: Int
    public var seconds: Double
    public var sent: Int
    public var expected: Int
    public var received: Int
    public var lost: Int
    public var duplicates: Int
    public var reordered: Int
    /// Deliveries per second, over the time from the first send to the last receipt.
    public var messagesPerSecond: Double
    public var p50Microseconds: UInt64
    public var p99Microseconds: UInt64
    public var p999Microseconds: UInt64
    public var maxMicroseconds: UInt64
    public var brokerCPUPercent: Double?
    public var brokerRSSKilobytes: Int?
    public var generatorCPUPercent: Double?
    /// For `conns`: connections held, and the broker's RSS growth per connection.
    public var connections: Int?
    public var bytesPerConnection: Double?

    enum CodingKeys: String, CodingKey {
        case label, scenario, qos, size, publishers, subscribers, seconds, sent, expected, received, lost, duplicates, reordered
        case messagesPerSecond = "msgs_per_s"
        case p50Microseconds = "p50_us"
        case p99Microseconds = "p99_us"
        case p999Microseconds = "p999_us"
        case maxMicroseconds = "max_us"
        case brokerCPUPercent = "broker_cpu_pct"
        case brokerRSSKilobytes = "broker_rss_kb"
        case generatorCPUPercent = "generator_cpu_pct"
        case connections
        case bytesPerConnection = "bytes_per_connection"
    }

    /// One line of JSON.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// A readable table.
    public var table: String {
        var rows: [(String, String)] = [("broker", label), ("scenario", "\(scenario), QoS \(qos), \(size) B")]
        if let connections {
            rows.append(("connections", "\(connections)"))
            if let bytesPerConnection { rows.append(("broker RSS per connection", String(format: "%.2f KB", bytesPerConnection / 1024))) }
            if expected > 0 {
                rows += [
                    ("expected / received", "\(expected) / \(received)"),
                    ("lost / duplicates", "\(lost) / \(duplicates)"),
                    ("latency p50 / p99 / max", "\(p50Microseconds) / \(p99Microseconds) / \(maxMicroseconds) µs"),
                ]
            }
        } else {
            rows += [
                ("publishers / subscribers", "\(publishers) / \(subscribers)"),
                ("sent / expected / received", "\(sent) / \(expected) / \(received)"),
                ("lost / duplicates / reordered", "\(lost) / \(duplicates) / \(reordered)"),
                ("throughput", String(format: "%.0f msg/s", messagesPerSecond)),
                ("latency p50 / p99 / p99.9 / max", "\(p50Microseconds) / \(p99Microseconds) / \(p999Microseconds) / \(maxMicroseconds) µs"),
            ]
        }
        if let brokerCPUPercent { rows.append(("broker CPU", String(format: "%.0f %%", brokerCPUPercent))) }
        if let brokerRSSKilobytes { rows.append(("broker RSS", "\(brokerRSSKilobytes) KB")) }
        if let generatorCPUPercent { rows.append(("generator CPU", String(format: "%.0f %%", generatorCPUPercent))) }
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }.joined(separator: "\n")
    }
}
