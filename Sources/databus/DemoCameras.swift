import EdgeAgents
import Foundation
import Logging
import MQTTClient
import ServiceLifecycle

/// `databus up --demo N`: N simulated cameras (`DEMO01`...) so the dashboard is alive at once.
/// Each is the real camera agent (`databus camera --simulate`): its own client and journal, a
/// retained `online` with `offline` as its will, seed-format detections now and then, health,
/// configuration applied and reported, `control` answered, the edge watch-list kept.
struct DemoCameras: Service {
    let count: Int
    let host: String
    let port: Int
    let username: String?
    let password: String?
    /// Where each camera keeps its journal and outbox.
    let dataDirectory: String
    let logger: Logger

    /// A plate the demo's traffic shows now and then; `databus up --demo` puts it on the watch-list.
    static let watchedPlate = "DEMO42"
    /// Detections per second per demo camera.
    static let rate = 0.4

    static func cameraID(_ index: Int) -> String { String(format: "DEMO%02d", index + 1) }
    static func checkpointID(_ index: Int) -> String { String(format: "CP%02d", index / 2 + 1) }

    func run() async throws {
        var agents: [CameraAgent] = []
        for index in 0..<max(1, count) {
            var mqtt = MQTTClient.Configuration(host: host, port: port, clientIdentifier: "demo-\(Self.cameraID(index))")
            if let username { mqtt.username = username }
            if let password { mqtt.password = Array(password.utf8) }
            let options = CameraAgent.Options(
                cameraID: Self.cameraID(index),
                checkpointID: Self.checkpointID(index),
                dataDirectory: (dataDirectory as NSString).appendingPathComponent(Self.cameraID(index)),
                healthInterval: .seconds(10),
                simulatedHealthSeed: UInt64(index + 1)
            )
            agents.append(try await CameraAgent.open(options: options, mqtt: mqtt, logger: logger))
        }
        let cameras = agents
        try await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                for (index, agent) in cameras.enumerated() {
                    group.addTask { await agent.run() }
                    group.addTask {
                        // Watch-listed plates (the demo's among them) show up in one detection out of twelve.
                        let simulator = CameraSimulator(
                            cameraID: agent.options.cameraID,
                            checkpointID: agent.options.checkpointID,
                            seed: UInt64(index + 1),
                            options: CameraSimulator.Options(watchlistRate: 1.0 / 12)
                        )
                        await CameraSimulation.drive(
                            agent,
                            simulator: simulator,
                            rate: Self.rate,
                            phase: Double(index) / Double(cameras.count),
                            logger: logger
                        )
                    }
                }
            }
        }
    }
}
