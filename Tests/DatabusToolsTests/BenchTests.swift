import DatabusTestSupport
import DatabusTools
import MQTTCore
import Testing

/// Short runs of the load generator against a real mosquitto: every message it sends comes
/// back once, in order, with its latency recorded. No figure is asserted; speed is measured
/// by scripts/bench-vs-mosquitto.
@Suite("databus bench", .serialized)
struct BenchTests {
    private func run(_ configure: (inout BenchConfiguration) -> Void, against mosquitto: Mosquitto) async throws -> BenchReport {
        var configuration = BenchConfiguration()
        configuration.port = mosquitto.port
        configuration.duration = .milliseconds(500)
        configuration.drainTimeout = .seconds(5)
        configuration.brokerPID = mosquitto.pid
        configure(&configuration)
        return try await BenchRunner(configuration: configuration).run()
    }

    @Test(
        "fan-in at QoS 1 and QoS 2, both protocol versions: nothing lost, duplicated or reordered",
        arguments: [
            (QoS.atLeastOnce, MQTTProtocolVersion.v3_1_1), (.exactlyOnce, .v5),
        ]
    )
    func fanIn(qos: QoS, version: MQTTProtocolVersion) async throws {
        try await Mosquitto.with(extraConfiguration: "max_queued_messages 1000000\n") { mosquitto in
            let report = try await run(
                {
                    $0.scenario = .fanin
                    $0.qos = qos
                    $0.version = version
                    $0.publishers = 3
                    $0.inflight = 8
                },
                against: mosquitto
            )
            #expect(report.sent > 0)
            #expect(report.expected == report.sent)
            #expect(report.received == report.sent)
            #expect(report.lost == 0 && report.duplicates == 0 && report.reordered == 0)
            #expect(report.p50Microseconds > 0 && report.p50Microseconds <= report.p99Microseconds)
            #expect(report.brokerRSSKilobytes ?? 0 > 0)
            #expect(report.json.contains("\"msgs_per_s\""))
        }
    }

    @Test("fan-out and pairs count each subscriber's copy; a fixed rate never sends more than it asked")
    func fanOutPairsAndRate() async throws {
        try await Mosquitto.with(extraConfiguration: "max_queued_messages 1000000\n") { mosquitto in
            let fanout = try await run(
                {
                    $0.scenario = .fanout
                    $0.qos = .atLeastOnce
                    $0.subscribers = 4
                },
                against: mosquitto
            )
            #expect(fanout.publishers == 1 && fanout.subscribers == 4)
            #expect(fanout.expected == fanout.sent * 4)
            #expect(fanout.lost == 0)

            let pairs = try await run(
                {
                    $0.scenario = .pairs
                    $0.qos = .atLeastOnce
                    $0.publishers = 3
                },
                against: mosquitto
            )
            #expect(pairs.subscribers == 3)
            #expect(pairs.expected == pairs.sent && pairs.lost == 0)

            let paced = try await run(
                {
                    $0.scenario = .fanin
                    $0.qos = .atLeastOnce
                    $0.publishers = 2
                    $0.rate = 200
                    $0.duration = .seconds(1)
                },
                against: mosquitto
            )
            // 2 publishers × 200 msg/s × 1 s: never more (a loaded machine may send fewer).
            #expect(paced.sent > 0 && paced.sent <= 440, "\(paced.sent)")
            #expect(paced.lost == 0)
        }
    }

    @Test("conns holds idle connections and reads the broker's memory")
    func connections() async throws {
        try await Mosquitto.with { mosquitto in
            let report = try await run(
                {
                    $0.scenario = .conns
                    $0.connections = 300
                    $0.duration = .milliseconds(100)
                },
                against: mosquitto
            )
            #expect(report.connections == 300)
            #expect(report.bytesPerConnection != nil)
        }
    }

    @Test("wake: one message reaches every held subscriber once, each with its latency", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func wake(version: MQTTProtocolVersion) async throws {
        try await Mosquitto.with { mosquitto in
            let report = try await run(
                {
                    $0.scenario = .wake
                    $0.version = version
                    $0.connections = 200
                    $0.duration = .milliseconds(100)
                },
                against: mosquitto
            )
            #expect(report.connections == 200)
            #expect(report.expected == 200)
            #expect(report.received == 200)
            #expect(report.lost == 0)
            #expect(report.duplicates == 0)
            #expect(report.p50Microseconds > 0)
            #expect(report.maxMicroseconds >= report.p99Microseconds)
            #expect(report.messagesPerSecond > 0)
        }
    }

    @Test("a refused connection is an error, not a hang")
    func refused() async throws {
        try await Mosquitto.with(extraConfiguration: "allow_anonymous false\n") { mosquitto in
            var failed = false
            do { _ = try await run({ $0.scenario = .fanin }, against: mosquitto) } catch { failed = true }
            #expect(failed)
        }
    }
}
