import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import Testing

/// What `/metrics` says of a bridge, on a broker embedded in the test process.
@Suite("Bridge metrics", .serialized)
struct BridgeMetricsTests {
    private func scrape(_ port: Int) async throws -> String {
        let script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"
        return try await runProgram("python3", ["-c", script, "http://127.0.0.1:\(port)/metrics"]).output
    }

    /// The value of the metric line that starts with `prefix`, if there is one.
    private func value(_ prefix: String, in text: String) -> Double? {
        text.split(separator: "\n").first { $0.hasPrefix(prefix + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") }
    }

    /// Waits until the metric reads `expected`.
    private func waitFor(_ prefix: String, _ expected: (Double) -> Bool, metricsPort: Int) async throws -> Double {
        let deadline = ContinuousClock.now + .seconds(15)
        var last: Double?
        while ContinuousClock.now < deadline {
            last = value(prefix, in: try await scrape(metricsPort))
            if let last, expected(last) { return last }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw InteropError("\(prefix) is \(last.map { "\($0)" } ?? "missing") after 15 s")
    }

    @Test("per bridge: connected, queued (in the store during an outage), in flight, forwarded, received, reconnects")
    func bridgeMetrics() async throws {
        let store = try TemporaryDirectory(prefix: "databus-bridge-metrics")
        try await Mosquitto.with { central in
            var configuration = try MosquittoConfigParser.parse(
                """
                connection central
                address 127.0.0.1:\(central.port)
                notification_topic bridges/edge/state
                restart_timeout 1
                topic lpr/# out 1
                topic config/# in 1
                """
            )
            configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
            configuration.metricsListener = .init(port: 0, address: "127.0.0.1")
            configuration.allowAnonymous = true
            configuration.sysInterval = 0
            configuration.persistence = true
            configuration.persistenceLocation = store.path
            let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test.bridge-metrics"))
            let port = try await broker.start()[0].port!
            let metricsPort = try #require(broker.metricsAddress?.port)
            do {
                let label = "{bridge=\"central\"}"
                try await waitForRetained(port: central.port, topic: "bridges/edge/state", payload: "1")
                #expect(try await waitFor("databus_bridge_connected\(label)", { $0 == 1 }, metricsPort: metricsPort) == 1)

                await central.terminate()
                #expect(try await waitFor("databus_bridge_connected\(label)", { $0 == 0 }, metricsPort: metricsPort) == 0)
                let camera = try await connectAccepted(port: port, "camera-1")
                for number in 1...5 {
                    try await camera.publish("lpr/cam1", "\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number))
                }
                let text = try await scrape(metricsPort)
                #expect(value("databus_bridge_queued_messages\(label)", in: text) == 5)
                #expect(value("databus_bridge_forwarded_total\(label)", in: text) == 0)

                try await central.restart()
                #expect(try await waitFor("databus_bridge_forwarded_total\(label)", { $0 >= 5 }, metricsPort: metricsPort) == 5)
                #expect(try await waitFor("databus_bridge_queued_messages\(label)", { $0 == 0 }, metricsPort: metricsPort) == 0)
                let server = try await connectAccepted(port: central.port, "lpr-server")
                try await server.publish("config/cam1", "{}", qos: .atLeastOnce, packetIdentifier: 1)
                #expect(try await waitFor("databus_bridge_received_total\(label)", { $0 >= 1 }, metricsPort: metricsPort) == 1)
                let final = try await scrape(metricsPort)
                #expect((value("databus_bridge_reconnects_total\(label)", in: final) ?? 0) >= 1)
                #expect(value("databus_bridge_inflight_messages\(label)", in: final) == 0)
                for connection in [camera, server] { await connection.close() }
            } catch {
                await broker.shutdown()
                throw error
            }
            await broker.shutdown()
        }
    }
}
