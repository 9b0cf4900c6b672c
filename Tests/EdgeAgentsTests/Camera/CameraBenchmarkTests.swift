import DatabusTestSupport
import EdgeAgents
import Foundation
import LPRServer
import Logging
import MQTTClient
import Testing

/// Camera detections per second through the journal and the durable outbox, acknowledged by a
/// real LPR server; prints figures, asserts only that every detection was delivered.
@Suite("Camera agent throughput (benchmark)", .serialized, .timeLimit(.minutes(5)))
struct CameraBenchmarkTests {
    static let cameras = 4
    static let detectionsPerCamera = 1500

    @Test("simulated cameras flat out: detections/s journaled, through the SQLite outbox and acked by the server", arguments: BrokerKind.allCases)
    func throughput(broker kind: BrokerKind) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let quiet = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        // The server's queue at the broker must hold the cameras' bursts (mosquitto's default is 1000 messages).
        try await kind.with(extraConfiguration: "max_queued_messages 1000000") { broker in
            var serverMQTT = MQTTClient.Configuration(host: "127.0.0.1", port: broker.port, clientIdentifier: "lprserver_v3")
            serverMQTT.reconnect = ReconnectPolicy(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
            let server = LPRServer(
                configuration: LPRServerConfiguration(mqtt: serverMQTT),
                repository: try SQLiteLPRRepository(path: folder.file("lpr.sqlite"), durability: .processCrash),
                logger: quiet
            )
            let serverTask = Task { try await server.run() }
            try await withDeadline(.seconds(20), "the LPR server to be ready") { try await server.waitUntilReady() }

            var agents: [CameraAgent] = []
            for index in 0..<Self.cameras {
                let camera = CameraSimulator.cameraID(index: index)
                let options = CameraAgent.Options(
                    cameraID: camera,
                    checkpointID: "CP001",
                    dataDirectory: folder.file(camera),
                    healthInterval: .seconds(3600),
                    tracking: DetectionTracker.Policy(ackTimeout: 30)
                )
                let mqtt = MQTTClient.Configuration(host: "127.0.0.1", port: broker.port, clientIdentifier: "")
                agents.append(try await CameraAgent.open(options: options, mqtt: mqtt, logger: quiet))
            }
            let running = agents.map { agent in Task { await agent.run() } }
            for agent in agents {
                _ = await eventually { if case .connected = agent.client.state { true } else { false } }
            }
            try await Task.sleep(for: .milliseconds(300))

            let start = ContinuousClock.now
            let base = Date()
            await withTaskGroup(of: Void.self) { group in
                for agent in agents {
                    group.addTask {
                        var simulator = CameraSimulator(cameraID: agent.options.cameraID, checkpointID: "CP001", seed: 2026)
                        for index in 0..<Self.detectionsPerCamera {
                            _ = try? await agent.submit(simulator.nextDetection(at: base.addingTimeInterval(Double(index) * 0.001)))
                        }
                    }
                }
            }
            let journaled = ContinuousClock.now - start
            for agent in agents { await agent.waitUntilDelivered(polling: .milliseconds(5)) }
            let delivered = ContinuousClock.now - start
            var total = 0
            for agent in agents { total += await agent.counts.delivered }
            #expect(total == Self.cameras * Self.detectionsPerCamera)
            func seconds(_ duration: Duration) -> Double { Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18 }
            let count = Double(Self.cameras * Self.detectionsPerCamera)
            print(
                String(
                    format: "camera benchmark: %@, %d cameras x %d detections: journaled %.0f/s, delivered (server ack) %.0f/s (%.2f s)",
                    kind.testDescription,
                    Self.cameras,
                    Self.detectionsPerCamera,
                    count / seconds(journaled),
                    count / seconds(delivered),
                    seconds(delivered)
                )
            )
            for task in running { task.cancel() }
            for task in running { await task.value }
            await server.shutdown()
            _ = await serverTask.result
        }
    }
}
