import Prometheus

extension BrokerMetrics {
    /// Per bridge: whether it is connected, what waits to be forwarded (in memory and in the
    /// store) and is in flight, what it forwarded and received, and how often it reconnected.
    func exportBridges(_ core: BrokerCore) {
        for bridge in core.bridges.all {
            let labels = [("bridge", bridge.configuration.name)]
            let counters = bridge.counters
            bridgeGauge("connected", "", "1 while the bridge is connected to its remote broker", labels)
                .set(counters.connected.load(ordering: .relaxed) ? 1.0 : 0.0)
            bridgeGauge("queued", "messages", "Messages waiting to be forwarded (memory and store)", labels)
                .set(Double(bridge.session.queuedMessageCount))
            bridgeGauge("inflight", "messages", "Messages forwarded and not yet acknowledged", labels)
                .set(Double(bridge.session.inflightMessageCount))
            counter(
                "databus_bridge_forwarded_total",
                labels,
                "Messages sent to the remote broker (re-sends not counted)",
                value: counters.forwarded.load(ordering: .relaxed)
            )
            counter(
                "databus_bridge_received_total",
                labels,
                "Messages received from the remote broker",
                value: counters.received.load(ordering: .relaxed)
            )
            counter(
                "databus_bridge_reconnects_total",
                labels,
                "Connection attempts after the first",
                value: counters.reconnects.load(ordering: .relaxed)
            )
        }
    }

    /// `databus_bridge_<metric>_<unit>` with the bridge's label.
    private func bridgeGauge(_ metric: String, _ unit: String, _ help: String, _ labels: [(String, String)]) -> Gauge {
        registry.makeGauge(
            descriptor: MetricNameDescriptor(namespace: "databus", subsystem: "bridge", metricName: metric, unitName: unit, helpText: help),
            labels: labels
        )
    }
}
