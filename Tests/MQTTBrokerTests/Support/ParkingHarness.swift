import DatabusTestSupport
import MQTTBroker
import NIOCore

/// A broker whose connections park after a second of quiet (`park_idle_connections 1`),
/// changed by `configure`, on `group` when given.
func withParkingBroker(
    _ configure: (inout BrokerConfiguration) -> Void = { _ in },
    group: (any EventLoopGroup)? = nil,
    _ body: (Int, MQTTBroker) async throws -> Void
) async throws {
    let configuration = BrokerConfiguration.testing {
        $0.parkIdleConnections = 1
        configure(&$0)
    }
    try await withBroker(configuration, group: group, body)
}

/// The value of gauge or counter `name` (without labels) in Prometheus text; -1 when absent.
func metricValue(_ name: String, in text: String) -> Int {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Int(Double(line.split(separator: " ")[1]) ?? -1)
    }
    return -1
}

/// The broker's `databus_connections_parked` gauge.
func parked(_ broker: MQTTBroker) -> Int {
    metricValue("databus_connections_parked", in: String(decoding: broker.prometheusText(), as: UTF8.self))
}

/// Waits until `count` connections are parked; throws after `seconds`.
func waitParked(_ broker: MQTTBroker, _ count: Int, within seconds: Double = 10) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while parked(broker) != count {
        guard ContinuousClock.now < deadline else {
            throw InteropError("\(parked(broker)) connections parked after \(seconds) s, expected \(count)")
        }
        try await Task.sleep(for: .milliseconds(50))
    }
}

/// A client (keep alive 60) subscribed to `wills/#` at QoS 1, to see the wills of others.
func willWatcher(port: Int, _ clientIdentifier: String) async throws -> CodecConnection {
    let watcher = try await connectAccepted(port: port, clientIdentifier, keepAlive: 60)
    try await watcher.subscribe("wills/#", qos: .atLeastOnce)
    return watcher
}
