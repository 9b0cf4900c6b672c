import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// `databus server` killed with SIGKILL while cameras publish, then restarted: every detection
/// the broker acknowledged to a camera ends up stored exactly once.
@Suite("databus server killed mid-stream", .serialized, .timeLimit(.minutes(5)))
struct ServerCrashTests {
    @Test(
        "20 cameras publish 2,000 detections; the server is killed with SIGKILL and restarted; all are stored once",
        arguments: TestBrokerKind.allCases
    )
    func killedMidStream(kind: TestBrokerKind) async throws {
        // The broker keeps the server's session while it is dead: room for everything queued.
        try await kind.with(extraConfiguration: "max_queued_messages 100000\n") { broker in
            let directory = try TemporaryDirectory()
            defer { directory.remove() }
            let database = directory.file("lpr.sqlite")
            let server = try await LPRServerProcess.start(
                brokerPort: broker.port,
                arguments: ["--database", "sqlite:\(database)"],
                logPath: directory.file("server.log")
            )
            defer { Task { await server.stop() } }

            let acknowledged = NIOLockedValueBox<Set<String>>([])
            let cameras = 20
            let perCamera = 100
            let publishers = Task {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for cameraIndex in 0..<cameras {
                        group.addTask {
                            let id = String(format: "CAM%03d", cameraIndex)
                            try await withClient(.test(broker, id: id)) { camera in
                                for index in 0..<perCamera {
                                    let messageID = "\(id)-\(index)"
                                    let json = try seedDetection(id: messageID, camera: id, plate: "P\(cameraIndex)X\(index)")
                                    let result = try await camera.publish(json: json, to: "lprserver/cameras/\(id)/detection")
                                    if result.isSuccess { acknowledged.withLockedValue { _ = $0.insert(messageID) } }
                                    try await Task.sleep(for: .milliseconds(Int.random(in: 5...15)))
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
            }
            // Kill it once a third is out, keep it dead for a while, start it again.
            try await waitFor("a third of the detections", timeout: .seconds(60)) {
                acknowledged.withLockedValue { $0.count } >= cameras * perCamera / 3
            }
            let watcher = MQTTClient(configuration: .test(broker, id: "status-watcher"), logger: testLogger)
            try await watcher.connect()
            let status = try await Inbox.subscribe(watcher, to: "lprserver/system/status")
            try await status.first("the retained online") { $0.payloadString == "online" }
            await server.kill()
            // The broker publishes the server's will.
            try await status.first("the will's offline") { $0.payloadString == "offline" }
            await watcher.disconnect()
            // Killed mid-stream: not everything the broker took is stored yet.
            let storedAtKill = try await SQLiteLPRRepository(path: database).detectionCount()
            #expect(storedAtKill < cameras * perCamera)
            try await Task.sleep(for: .milliseconds(500))
            try await server.launch(brokerPort: broker.port)
            try await publishers.value

            let all = acknowledged.withLockedValue { $0 }
            #expect(all.count == cameras * perCamera)
            let store = try SQLiteLPRRepository(path: database)
            try await waitFor("every acknowledged detection stored", timeout: .seconds(60)) {
                try await store.detectionCount() >= all.count
            }
            #expect(try await store.detectionCount() == all.count)
            for messageID in all.sorted().filter({ $0.hasSuffix("-0") || $0.hasSuffix("-50") || $0.hasSuffix("-99") }) {
                #expect(try await store.detection(messageID: messageID) != nil, "\(messageID)")
            }
        }
    }
}
