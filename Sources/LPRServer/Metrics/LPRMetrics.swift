import CoreMetrics
import Foundation
import NIOConcurrencyHelpers

/// The server's metrics through swift-metrics (whatever backend the process bootstrapped;
/// `databus server` and `databus up` export Prometheus text), with the seed's names, plus
/// running totals the server publishes on `lprserver/system/monitoring` itself.
final class LPRMetrics: Sendable {
    let connectionsTotal = Counter(label: "mqtt_connections_total")
    let connectionsActive = Gauge(label: "mqtt_connections_active")
    let connectionsFailed = Counter(label: "mqtt_connections_failed")
    let messagesSent = Counter(label: "mqtt_messages_sent")
    let messagesReceived = Counter(label: "mqtt_messages_received")
    let messagesFailed = Counter(label: "mqtt_messages_failed")
    let latency = Recorder(label: "mqtt_latency_ms")
    let throughput = Gauge(label: "mqtt_throughput_msg_per_sec")
    let queueSize = Gauge(label: "mqtt_queue_size")
    let errorsTotal = Counter(label: "mqtt_errors_total")
    let detectionsStored = Counter(label: "lpr_detections_total", dimensions: [("status", "stored")])
    let detectionsDuplicate = Counter(label: "lpr_detections_total", dimensions: [("status", "duplicate")])
    let detectionsRejected = Counter(label: "lpr_detections_total", dimensions: [("status", "rejected")])
    let watchlistHits = Counter(label: "lpr_watchlist_hits_total")
    let batchSeconds = Timer(label: "lpr_ingest_batch_seconds", preferredDisplayUnit: .seconds)
    let camerasOnline = Gauge(label: "lpr_cameras_online")
    let camerasKnown = Gauge(label: "lpr_cameras_known")

    /// Running totals since start, and the figures of the current system interval.
    struct Totals: Sendable {
        var messagesReceived = 0
        var messagesSent = 0
        var errors = 0
        var detectionsReceived = 0
        var detectionsStored = 0
        var duplicates = 0
        var rejected = 0
        var watchlistHits = 0
        var alerts = 0
        var batches = 0
        var commandsSent = 0
        var commandsTimedOut = 0
        var lastMessageReceived: Date?
        // This interval:
        var intervalMessages = 0
        var intervalErrors = 0
        var intervalLatencyTotal = 0.0
        var intervalLatencyCount = 0
    }

    let totals = NIOLockedValueBox(Totals())

    func error(_ type: String) {
        errorsTotal.increment()
        Counter(label: "mqtt_errors_by_type", dimensions: [("type", type)]).increment()
        totals.withLockedValue {
            $0.errors += 1
            $0.intervalErrors += 1
        }
    }

    func received(count: Int = 1, at time: Date) {
        messagesReceived.increment(by: count)
        totals.withLockedValue {
            $0.messagesReceived += count
            $0.intervalMessages += count
            $0.lastMessageReceived = time
        }
    }

    func sent(count: Int = 1) {
        messagesSent.increment(by: count)
        totals.withLockedValue { $0.messagesSent += count }
    }
}
