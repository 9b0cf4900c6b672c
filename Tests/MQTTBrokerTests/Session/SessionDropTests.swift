import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import MQTTBroker

/// Keeps every log line a test's logger writes.
final class CapturedLog: Sendable {
    private let lines = NIOLockedValueBox<[(Logger.Level, String, Logger.Metadata)]>([])

    var entries: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] { lines.withLockedValue { $0 } }

    var logger: Logger {
        Logger(label: "test.captured") { _ in Handler(log: self) }
    }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            log.lines.withLockedValue { $0.append((event.level, "\(event.message)", metadata.merging(event.metadata ?? [:]) { $1 })) }
        }
    }
}

@Suite("Drops are counted per client and logged at most once a minute")
struct SessionDropTests {
    @Test("a thousand drops in a minute make one log line; the next line, a minute later, counts what came since")
    func dropLogRateLimited() {
        let log = CapturedLog()
        let statistics = BrokerStatistics()
        let session = Session(
            clientID: "dashboard-7",
            limits: .init(maxInflight: 20, maxQueuedMessages: nil, maxQueuedBytes: 0),
            environment: SessionEnvironment(statistics: statistics, store: nil, logger: log.logger)
        )
        let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
        for offset in 0..<1000 {
            session.recordDrop(offset % 2 == 0 ? .queueFull : .offlineQoS0, now: start + .milliseconds(Int64(offset)))
        }
        #expect(log.entries.count == 1)
        #expect(log.entries.first?.metadata["client"] == "dashboard-7")
        #expect(log.entries.first?.metadata["drops"] == "queue_full=1")

        session.recordDrop(.queueFull, now: start + .seconds(61))
        #expect(log.entries.count == 2)
        #expect(log.entries.last?.metadata["drops"] == "offline_qos0=500,queue_full=500")

        #expect(session.dropCounts == [.queueFull: 501, .offlineQoS0: 500])
        #expect(statistics.messagesDropped == 1001)
    }
}
