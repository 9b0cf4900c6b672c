import DatabusTestSupport
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

@Suite("Metrics")
struct MetricsTests {
    private func fetch(_ url: String) async throws -> (status: Int32, body: String) {
        let script = """
            import sys, urllib.request, urllib.error
            try:
                print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end="")
            except urllib.error.HTTPError as error:
                print(error.code, end="")
                sys.exit(3)
            """
        let result = try await runProgram("python3", ["-c", script, url])
        return (result.status, result.output)
    }

    @Test("Prometheus text at /metrics counts messages by QoS, connections, refusals and drops")
    func prometheusEndpoint() async throws {
        var configuration = BrokerConfiguration()
        configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
        configuration.metricsListener = .init(port: 0, address: "127.0.0.1")
        configuration.allowAnonymous = true
        configuration.sysInterval = 0
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test.metrics"))
        let port = try await broker.start()[0].port!
        let metricsPort = try #require(broker.metricsAddress?.port)

        let camera = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await camera.handshake(clientIdentifier: "camera-m")
        for identifier in 1...3 {
            try await camera.send(
                .publish(PublishPacket(topicName: "lpr/m", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, packetIdentifier: UInt16(identifier)))
            )
            _ = try await camera.receive()
        }
        try await camera.send(.publish(PublishPacket(topicName: "lpr/m", payload: ByteBuffer(string: "y"))))
        // A 3.1.1 client with an empty identifier and a persistent session is refused (0x85 → return code 2).
        let refused = try await CodecConnection.connect(port: port, version: .v3_1_1)
        let refusal = try await refused.handshake(clientIdentifier: "", cleanStart: false)
        #expect(refusal.reasonCode == .clientIdentifierNotValid)
        try await camera.send(.pingreq)
        _ = try await camera.receive()

        let scrape = try await fetch("http://127.0.0.1:\(metricsPort)/metrics")
        #expect(scrape.status == 0)
        let lines = Set(scrape.body.split(separator: "\n").map(String.init))
        #expect(lines.contains(#"databus_messages_received_total{qos="1"} 3"#), "\(scrape.body)")
        #expect(lines.contains(#"databus_messages_received_total{qos="0"} 1"#))
        #expect(lines.contains("databus_connections 1.0") || lines.contains("databus_connections 1"))
        #expect(lines.contains(#"databus_connects_refused_total{reason="133"} 1"#))
        #expect(scrape.body.contains("# TYPE databus_messages_dropped_total counter"))

        // A second scrape does not count anything twice.
        let again = try await fetch("http://127.0.0.1:\(metricsPort)/metrics")
        #expect(again.body.contains(#"databus_messages_received_total{qos="1"} 3"#))

        let missing = try await fetch("http://127.0.0.1:\(metricsPort)/other")
        #expect(missing.status == 3 && missing.body == "404")

        await camera.close()
        await refused.close()
        await broker.shutdown()
    }
}
