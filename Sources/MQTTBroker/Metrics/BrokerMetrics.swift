import MQTTCore
import NIOConcurrencyHelpers
import Prometheus

/// The broker's metrics in a Prometheus registry of its own, brought up to date from the
/// broker's counters whenever it is scraped, so the per-message path pays one relaxed atomic.
final class BrokerMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    /// How long one group commit of the store takes.
    let persistenceWriteLatency: DurationHistogram
    /// From accepting a TLS connection to its completed handshake.
    let tlsHandshakeDuration: DurationHistogram
    /// The TLS listeners' certificates, CAs and revocation lists, and when they end.
    let certificateExpiry = CertificateExpiryWatch()
    private let exported = NIOLockedValueBox<[String: Int]>([:])

    init() {
        persistenceWriteLatency = registry.makeDurationHistogram(
            name: "databus_persistence_write_seconds",
            buckets: [
                .microseconds(250), .milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100),
                .seconds(1),
            ],
            help: "Duration of one group commit of the persistent store"
        )
        tlsHandshakeDuration = registry.makeDurationHistogram(
            name: "databus_tls_handshake_seconds",
            buckets: [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(100), .seconds(1)],
            help: "From accepting a TLS connection to its completed handshake"
        )
    }

    /// The Prometheus text exposition of every metric.
    func render(_ core: BrokerCore) -> [UInt8] {
        update(core)
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return bytes
    }

    private func update(_ core: BrokerCore) {
        let statistics = core.statistics
        certificateExpiry.export(into: registry)
        gauge("databus_connections", "Clients connected now", value: statistics.clientsConnected.load(ordering: .relaxed))
        gauge(
            "databus_connections_parked",
            "Connected clients idle in the parking lot (park_idle_connections)",
            value: statistics.parkedConnections.load(ordering: .relaxed)
        )
        gauge("databus_sessions", "Sessions, connected or not", value: core.sessions.count)
        gauge("databus_retained_messages", "Retained messages stored", value: core.retained.count)
        gauge("databus_subscriptions", "Subscriptions, shared members included", value: core.router.count)
        gauge("databus_queued_messages", "Messages queued for clients, over all sessions", value: core.sessions.queuedMessageCount)
        for qos in QoS.allCases {
            let labels = [("qos", "\(qos.rawValue)")]
            counter(
                "databus_messages_received_total",
                labels,
                "PUBLISH packets received from clients",
                value: statistics.received[Int(qos.rawValue)].load(ordering: .relaxed)
            )
            counter(
                "databus_messages_sent_total",
                labels,
                "PUBLISH packets sent to clients",
                value: statistics.sent[Int(qos.rawValue)].load(ordering: .relaxed)
            )
        }
        counter("databus_bytes_received_total", [], "Bytes received from clients", value: statistics.bytesReceived.load(ordering: .relaxed))
        counter("databus_bytes_sent_total", [], "Bytes sent to clients", value: statistics.bytesSent.load(ordering: .relaxed))
        for (reason, count) in statistics.drops {
            counter(
                "databus_messages_dropped_total",
                [("reason", reason.rawValue)],
                "Messages not delivered to a subscriber",
                value: count.load(ordering: .relaxed)
            )
        }
        for session in core.sessions.all {
            for (reason, count) in session.dropCounts {
                counter(
                    "databus_client_messages_dropped_total",
                    [("client", session.clientID), ("reason", reason.rawValue)],
                    "Messages dropped for (or from) one client, by reason",
                    value: count
                )
            }
        }
        if let store = core.store {
            gauge("databus_store_bytes", "Bytes the persistent store's pages in use take", value: store.sizeInUse)
            gauge("databus_store_budget_bytes", "persistence_max_bytes: the budget for the store (0: none)", value: store.maximumBytes)
        }
        counter(
            "databus_authentication_failures_total",
            [],
            "CONNECTs refused for their credentials",
            value: statistics.authenticationFailures.load(ordering: .relaxed)
        )
        counter(
            "databus_connects_throttled_total",
            [],
            "CONNACKs delayed because the address kept failing to log in",
            value: statistics.throttledConnects.load(ordering: .relaxed)
        )
        exportBridges(core)
        counter("databus_tls_handshakes_total", [], "TLS handshakes completed", value: statistics.tlsHandshakes.load(ordering: .relaxed))
        for (failure, count) in statistics.tlsHandshakeFailures {
            let value = count.load(ordering: .relaxed)
            guard value > 0 else { continue }
            counter("databus_tls_handshake_failures_total", [("reason", failure.rawValue)], "TLS handshakes that failed, by reason", value: value)
        }
        for (reason, count) in statistics.refusals {
            let value = count.load(ordering: .relaxed)
            guard value > 0 else { continue }
            counter("databus_connects_refused_total", [("reason", "\(reason.rawValue)")], "CONNECTs refused, by reason code", value: value)
        }
    }

    func gauge(_ name: String, _ help: String, value: Int) {
        registry.makeGauge(name: name, help: help).set(Double(value))
    }

    /// Advances a Prometheus counter to `value` (counters only go up by increments).
    func counter(_ name: String, _ labels: [(String, String)], _ help: String, value: Int) {
        let key = name + labels.map { "|\($0.0)=\($0.1)" }.joined()
        let delta = exported.withLockedValue { exported -> Int in
            defer { exported[key] = value }
            return value - (exported[key] ?? 0)
        }
        let counter = labels.isEmpty ? registry.makeCounter(name: name, help: help) : registry.makeCounter(name: name, labels: labels, help: help)
        if delta > 0 { counter.increment(by: Int64(delta)) }
    }
}
