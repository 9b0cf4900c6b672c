import Foundation
import MQTTCore
import NIOCore

/// The retained `$SYS/broker/...` topics, named as mosquitto names them.
enum SysTopics {
    static let version = "databus 0.1.0"

    static func publish(_ core: BrokerCore) {
        let statistics = core.statistics
        let now = NIODeadline.now()
        let connected = statistics.clientsConnected.load(ordering: .relaxed)
        let total = core.sessions.count
        let values: [(String, String)] = [
            ("version", version),
            ("uptime", "\((now - core.startTime).nanoseconds / 1_000_000_000) seconds"),
            ("clients/connected", "\(connected)"),
            ("clients/disconnected", "\(max(0, total - connected))"),
            ("clients/total", "\(total)"),
            ("clients/maximum", "\(statistics.clientsMaximum.load(ordering: .relaxed))"),
            ("messages/received", "\(statistics.messagesReceived)"),
            ("messages/sent", "\(statistics.messagesSent)"),
            ("publish/messages/dropped", "\(statistics.messagesDropped)"),
            ("bytes/received", "\(statistics.bytesReceived.load(ordering: .relaxed))"),
            ("bytes/sent", "\(statistics.bytesSent.load(ordering: .relaxed))"),
            ("retained messages/count", "\(core.retained.count)"),
            ("subscriptions/count", "\(core.router.count)"),
            ("heap/current", "\(residentSetSize())"),
        ]
        for (name, value) in values {
            let message = ApplicationMessage(topic: "$SYS/broker/\(name)", payload: ByteBuffer(string: value), qos: .atMostOnce, retain: true)
            core.distributor.publish(message, now: now)
        }
    }

    /// The process's resident set size in bytes (Linux), or 0.
    static func residentSetSize() -> Int {
        guard let statm = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = statm.split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
