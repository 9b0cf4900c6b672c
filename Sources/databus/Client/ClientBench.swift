import Foundation
import Logging
import MQTTClient
import MQTTCore
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// `databus bench client`: how fast `databus pub -l` and MQTTClient's SQLite outbox move
/// messages to a running broker, next to `mosquitto_pub -l` in the same run.
///
/// Rows: `mosquitto_pub -l` and `databus pub -l` at QoS 1 and 0 (and `databus pub -l --outbox`)
/// on the same lines; messages into and through a SQLite outbox at QoS 1 (in this process); a
/// backlog stored while offline, then drained to the broker, with this process's RSS.
///
/// A command row also says how many of its lines reached the broker, from the broker's
/// `$SYS/broker/publish/messages/received` (mosquitto with `sys_interval 1`, as
/// `scripts/bench-client-vs-mosquitto` starts it): a command that exits early has not
/// delivered everything it read.
struct ClientBench {
    struct Configuration {
        var host = "127.0.0.1"
        var port = 1883
        /// Lines for the command rows and messages for the outbox row.
        var messages = 100_000
        /// Bytes per line or message.
        var size = 80
        /// Messages in the backlog row.
        var backlog = 360_000
        /// Runs per command row; the median is reported.
        var rounds = 2
        /// The `databus` executable to run `databus pub` from.
        var executable = CommandLine.arguments[0]
        var mosquittoPub = "mosquitto_pub"
    }

    struct Row: Codable {
        var name: String
        var messages: Int
        var seconds: Double
        var cpuSeconds: Double?
        /// Messages the broker received during the run, when it says.
        var delivered: Int?
        var note: String = ""
        var rate: Double { seconds > 0 ? Double(messages) / seconds : 0 }
        var deliveredRate: Double? { delivered.map { seconds > 0 ? Double($0) / seconds : 0 } }
    }

    let configuration: Configuration
    let logger = Logger(label: "databus.bench.client")

    func run() async throws -> (table: String, json: String) {
        let loadBefore = Self.loadAverage()
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("databus-bench-client-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let lines = directory.appendingPathComponent("lines.txt").path
        try Self.writeLines(count: configuration.messages, size: configuration.size, to: lines)

        var rows: [Row] = []
        let counter = try await BrokerReceivedCounter.start(host: configuration.host, port: configuration.port, logger: logger)
        let target = ["-h", configuration.host, "-p", "\(configuration.port)", "-t", "bench/client"]
        for qos in [1, 0] {
            rows.append(
                try await median("mosquitto_pub -l -q \(qos)", configuration.mosquittoPub, target + ["-l", "-q", "\(qos)"], input: lines, counter)
            )
            rows.append(
                try await median(
                    "databus pub -l -q \(qos)",
                    configuration.executable,
                    ["pub"] + target + ["-l", "-q", "\(qos)"],
                    input: lines,
                    counter
                )
            )
            // A command that exits before delivering everything (mosquitto_pub -l -q 1 does) is
            // timed again with both on only as many lines as it delivered: the same work.
            if let mosquitto = rows.dropLast().last, let delivered = mosquitto.delivered, delivered > 0, delivered < configuration.messages {
                let fewer = directory.appendingPathComponent("lines-\(delivered).txt").path
                try Self.writeLines(count: delivered, size: configuration.size, to: fewer)
                rows.append(
                    try await median(
                        "mosquitto_pub -l -q \(qos), \(delivered) lines",
                        configuration.mosquittoPub,
                        target + ["-l", "-q", "\(qos)"],
                        input: fewer,
                        lines: delivered,
                        counter
                    )
                )
                rows.append(
                    try await median(
                        "databus pub -l -q \(qos), \(delivered) lines",
                        configuration.executable,
                        ["pub"] + target + ["-l", "-q", "\(qos)"],
                        input: fewer,
                        lines: delivered,
                        counter
                    )
                )
            }
        }
        let outboxFile = directory.appendingPathComponent("pub-outbox.sqlite").path
        rows.append(
            try await median(
                "databus pub -l -q 1 --outbox",
                configuration.executable,
                ["pub"] + target + ["-l", "-q", "1", "--outbox", outboxFile],
                input: lines,
                counter,
                before: { Self.removeDatabase(outboxFile) }
            )
        )
        await counter.stop()
        rows += try await outboxRows(directory: directory)
        let loadAfter = Self.loadAverage()

        var table =
            "databus bench client: \(configuration.messages) messages of \(configuration.size) bytes to \(configuration.host):\(configuration.port)"
        table += "; load average \(loadBefore) before, \(loadAfter) after\n"
        table += "| what | messages | seconds | msg/s | reached the broker | of those, msg/s | CPU s | note |\n"
        table += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
        for row in rows {
            let cpu = row.cpuSeconds.map { String(format: "%.2f", $0) } ?? "-"
            let delivered = row.delivered.map { "\($0)" } ?? "-"
            let deliveredRate = row.deliveredRate.map { "\(Int($0.rounded()))" } ?? "-"
            table += "| \(row.name) | \(row.messages) | \(String(format: "%.2f", row.seconds)) | \(Int(row.rate.rounded())) "
            table += "| \(delivered) | \(deliveredRate) | \(cpu) | \(row.note) |\n"
        }
        var json: [String: Any] = ["scenario": "client", "loadAverageBefore": loadBefore, "loadAverageAfter": loadAfter]
        json["rows"] = rows.map {
            [
                "name": $0.name, "messages": $0.messages, "seconds": $0.seconds, "rate": $0.rate, "cpuSeconds": $0.cpuSeconds ?? -1,
                "delivered": $0.delivered ?? -1, "note": $0.note,
            ]
        }
        let data = try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        return (table, String(decoding: data, as: UTF8.self))
    }

    // MARK: Commands

    /// Runs a command `rounds` times on the same input and keeps the median run; each run's
    /// messages that reached the broker are counted.
    private func median(
        _ name: String,
        _ program: String,
        _ arguments: [String],
        input: String,
        lines: Int? = nil,
        _ counter: BrokerReceivedCounter,
        before: () -> Void = {}
    ) async throws -> Row {
        var runs: [Row] = []
        for _ in 0..<max(1, configuration.rounds) {
            before()
            let receivedBefore = await counter.settledCount()
            var run = try timeCommand(name, program, arguments, input: input, lines: lines ?? configuration.messages)
            if let receivedBefore, let receivedAfter = await counter.settledCount() {
                run.delivered = receivedAfter - receivedBefore
            }
            runs.append(run)
        }
        runs.sort { $0.seconds < $1.seconds }
        var row = runs[runs.count / 2]
        row.note = "median of \(runs.count): " + runs.map { String(format: "%.2f s", $0.seconds) }.joined(separator: ", ")
        if runs.contains(where: { $0.delivered != nil }) {
            row.note += "; reached the broker: " + runs.map { $0.delivered.map(String.init) ?? "?" }.joined(separator: ", ")
        }
        return row
    }

    private func timeCommand(_ name: String, _ program: String, _ arguments: [String], input: String, lines: Int) throws -> Row {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program.contains("/") ? program : "/usr/bin/env")
        process.arguments = program.contains("/") ? arguments : [program] + arguments
        process.standardInput = FileHandle(forReadingAtPath: input)
        process.standardOutput = FileHandle.nullDevice
        let cpuBefore = Self.childrenCPUSeconds()
        let start = ContinuousClock.now
        try process.run()
        process.waitUntilExit()
        let elapsed = ContinuousClock.now - start
        guard process.terminationStatus == 0 else {
            throw BenchFailure("\(name) exited with \(process.terminationStatus)")
        }
        return Row(name: name, messages: lines, seconds: elapsed.seconds, cpuSeconds: Self.childrenCPUSeconds() - cpuBefore)
    }

    // MARK: The outbox in this process

    private func outboxRows(directory: URL) async throws -> [Row] {
        var rows: [Row] = []
        let payload = ByteBuffer(repeating: UInt8(ascii: "x"), count: configuration.size)
        func messages(_ count: Int) -> [MQTTClient.OutgoingMessage] {
            Array(repeating: MQTTClient.OutgoingMessage(topic: "bench/client/outbox", payload: payload, qos: .atLeastOnce), count: count)
        }
        let batchSize = 1_000

        // Into and through: a connected client stores every message, then the broker acknowledges them.
        do {
            let path = directory.appendingPathComponent("through.sqlite").path
            let client = MQTTClient(
                configuration: try clientConfiguration(path: path, id: "databus-bench-through", capacity: configuration.messages),
                logger: logger
            )
            try await client.connect()
            let cpuBefore = Self.ownCPUSeconds()
            let start = ContinuousClock.now
            var tickets: [PublishBatchTicket] = []
            var remaining = configuration.messages
            while remaining > 0 {
                let count = min(batchSize, remaining)
                tickets.append(try await client.enqueue(batch: messages(count)))
                remaining -= count
            }
            let stored = ContinuousClock.now - start
            for ticket in tickets { _ = try await ticket.results() }
            let through = ContinuousClock.now - start
            let cpu = Self.ownCPUSeconds() - cpuBefore
            await client.disconnect()
            rows.append(
                Row(
                    name: "MQTTClient into the SQLite outbox, QoS 1",
                    messages: configuration.messages,
                    seconds: stored.seconds,
                    cpuSeconds: nil,
                    note: "connected; stored (committed) while sending"
                )
            )
            rows.append(
                Row(
                    name: "MQTTClient through the SQLite outbox, QoS 1",
                    messages: configuration.messages,
                    seconds: through.seconds,
                    cpuSeconds: cpu,
                    note: "stored, sent and acknowledged"
                )
            )
        }

        // A backlog stored while offline, then drained to the running broker.
        do {
            let path = directory.appendingPathComponent("backlog.sqlite").path
            let configuration = try clientConfiguration(path: path, id: "databus-bench-backlog", capacity: self.configuration.backlog)
            let client = MQTTClient(configuration: configuration, logger: logger)
            let start = ContinuousClock.now
            var remaining = self.configuration.backlog
            while remaining > 0 {
                let count = min(batchSize, remaining)
                _ = try await client.enqueue(batch: messages(count))
                remaining -= count
            }
            let stored = ContinuousClock.now - start
            let rssStored = Self.residentBytes()
            let drainStart = ContinuousClock.now
            let cpuBefore = Self.ownCPUSeconds()
            try await client.connect()
            var rssLow = Int.max
            var rssHigh = 0
            while await client.outboxStatistics.messages > 0 {
                let rss = Self.residentBytes()
                rssLow = min(rssLow, rss)
                rssHigh = max(rssHigh, rss)
                try await Task.sleep(for: .milliseconds(50))
            }
            let drained = ContinuousClock.now - drainStart
            let cpu = Self.ownCPUSeconds() - cpuBefore
            await client.disconnect()
            rows.append(
                Row(
                    name: "backlog stored while offline",
                    messages: self.configuration.backlog,
                    seconds: stored.seconds,
                    cpuSeconds: nil,
                    note: "RSS \(rssStored >> 20) MB after"
                )
            )
            rows.append(
                Row(
                    name: "backlog drained to the broker, QoS 1",
                    messages: self.configuration.backlog,
                    seconds: drained.seconds,
                    cpuSeconds: cpu,
                    note: "RSS during the drain \(rssLow >> 20)–\(rssHigh >> 20) MB"
                )
            )
        }
        return rows
    }

    private func clientConfiguration(path: String, id: String, capacity: Int) throws -> MQTTClient.Configuration {
        Self.removeDatabase(path)
        var configuration = MQTTClient.Configuration(
            host: self.configuration.host,
            port: self.configuration.port,
            clientIdentifier: id,
            protocolVersion: .v3_1_1
        )
        configuration.outbox = OutboxConfiguration(
            maximumMessages: capacity + 1,
            maximumBytes: Int.max,
            persistence: try SQLiteOutboxPersistence(path: path)
        )
        return configuration
    }

    // MARK: Helpers

    private static func writeLines(count: Int, size: Int, to path: String) throws {
        var text = [UInt8]()
        text.reserveCapacity(count * (size + 1))
        let filler = [UInt8](repeating: UInt8(ascii: "x"), count: max(0, size - 9))
        for number in 0..<count {
            let digits = Array(String(format: "%08d ", number).utf8)
            text += digits.prefix(size)
            if size > digits.count { text += filler.prefix(size - digits.count) }
            text.append(UInt8(ascii: "\n"))
        }
        try Data(text).write(to: URL(fileURLWithPath: path))
    }

    private static func removeDatabase(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    static func loadAverage() -> String {
        let text = (try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? ""
        return text.split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// CPU time of the child processes waited for so far (user plus system).
    static func childrenCPUSeconds() -> Double {
        var times = tms()
        _ = Glibc.times(&times)
        return Double(times.tms_cutime + times.tms_cstime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// CPU time of this process (user plus system).
    static func ownCPUSeconds() -> Double {
        var times = tms()
        _ = Glibc.times(&times)
        return Double(times.tms_utime + times.tms_stime) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// This process's resident memory, from /proc.
    static func residentBytes() -> Int {
        let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
        let pages = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}

/// The broker's count of PUBLISH packets received, as it publishes it on
/// `$SYS/broker/publish/messages/received` every `sys_interval` (mosquitto).
actor BrokerReceivedCounter {
    private let client: MQTTClient
    private var reading: Task<Void, Never>?
    private var latest: Int?
    /// How long a value takes to be fresh: two publishing intervals of one second.
    private let settle = Duration.milliseconds(2_200)

    private init(client: MQTTClient) {
        self.client = client
    }

    /// Subscribes to the count; a broker that does not publish it gives counts of `nil`.
    static func start(host: String, port: Int, logger: Logger) async throws -> BrokerReceivedCounter {
        let client = MQTTClient(
            configuration: MQTTClient.Configuration(host: host, port: port, clientIdentifier: "databus-bench-counter", protocolVersion: .v3_1_1),
            logger: logger
        )
        try await client.connect()
        let counter = BrokerReceivedCounter(client: client)
        let messages = try await client.subscribe(to: "$SYS/broker/publish/messages/received", qos: .atMostOnce)
        await counter.read(messages)
        return counter
    }

    private func read(_ messages: MQTTMessages) {
        reading = Task {
            for await message in messages {
                if let value = Int(message.payloadString.trimmingCharacters(in: .whitespaces)) { self.record(value) }
            }
        }
    }

    private func record(_ value: Int) { latest = value }

    /// The count once the broker has published it again after now (everything it received
    /// before this call is in it); `nil` when it never said.
    func settledCount() async -> Int? {
        try? await Task.sleep(for: settle)
        return latest
    }

    func stop() async {
        reading?.cancel()
        await client.disconnect()
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Duration {
    fileprivate var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
