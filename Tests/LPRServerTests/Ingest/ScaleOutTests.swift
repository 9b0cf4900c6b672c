import DatabusTestSupport
import Foundation
import LPRModel
import LPRServer
import MQTTClient
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import Testing

/// Two `databus server --share` processes on a real mosquitto and one PostgreSQL database.
@Suite("Scale-out: shared subscriptions over one PostgreSQL", .serialized, .timeLimit(.minutes(8)))
struct ScaleOutTests {
    @Test("10,000 detections from 20 cameras, one of two servers killed halfway: every detection stored once and acked at least once")
    func twoServersOneKilled() async throws {
        try await PostgresServer.with { postgres in
            try await Mosquitto.with(extraConfiguration: "max_queued_messages 100000\n") { broker in
                let directory = try TemporaryDirectory()
                defer { directory.remove() }
                let common = ["--database", postgres.url, "--share", "lpr"]
                let first = try await LPRServerProcess.start(
                    brokerPort: broker.port,
                    arguments: common + ["--client-id", "lprserver-a"],
                    logPath: directory.file("a.log")
                )
                defer { Task { await first.stop() } }
                let second = try await LPRServerProcess.start(
                    brokerPort: broker.port,
                    arguments: common + ["--client-id", "lprserver-b"],
                    logPath: directory.file("b.log")
                )
                defer { Task { await second.stop() } }

                let cameras = 20
                let perCamera = 500
                let total = cameras * perCamera
                let acks = NIOLockedValueBox<[String: Int]>([:])
                let published = NIOLockedValueBox(0)
                let run = Task {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for cameraIndex in 0..<cameras {
                            group.addTask {
                                let id = String(format: "CAM%03d", cameraIndex)
                                try await withClient(.test(broker, id: id)) { camera in
                                    let ackMessages = try await camera.subscribe(to: "lprserver/cameras/\(id)/detection/ack", qos: .atLeastOnce)
                                    let reader = Task {
                                        for await message in ackMessages {
                                            guard let messageID = message.object["message_id"]?.stringValue else { continue }
                                            acks.withLockedValue { $0[messageID, default: 0] += 1 }
                                        }
                                    }
                                    defer { reader.cancel() }
                                    var payloads: [String: ByteBuffer] = [:]
                                    for index in 0..<perCamera {
                                        let messageID = "\(id)-\(index)"
                                        let json = try seedDetection(id: messageID, camera: id, plate: "S\(cameraIndex)Q\(index)")
                                        let payload = ByteBuffer(bytes: JSONValue.object(json).jsonBytes)
                                        payloads[messageID] = payload
                                        _ = try await camera.enqueue(topic: "lprserver/cameras/\(id)/detection", payload: payload, qos: .atLeastOnce)
                                        published.withLockedValue { $0 += 1 }
                                        if index % 20 == 19 { try await Task.sleep(for: .milliseconds(10)) }
                                    }
                                    // As a camera agent does: what has no ack after a while is sent again, until all are acked.
                                    let deadline = ContinuousClock.now + .seconds(120)
                                    while ContinuousClock.now < deadline {
                                        try await Task.sleep(for: .seconds(3))
                                        let missing = payloads.keys.filter { key in acks.withLockedValue { $0[key] == nil } }
                                        if missing.isEmpty { break }
                                        for messageID in missing.sorted() {
                                            _ = try await camera.enqueue(
                                                topic: "lprserver/cameras/\(id)/detection",
                                                payload: payloads[messageID]!,
                                                qos: .atLeastOnce
                                            )
                                        }
                                    }
                                    try await Task.sleep(for: .seconds(1))
                                }
                            }
                        }
                        try await group.waitForAll()
                    }
                }
                try await waitFor("half of the detections published", timeout: .seconds(120)) { published.withLockedValue { $0 } >= total / 2 }
                await first.kill()
                try await run.value

                let store = try await PostgresLPRRepository(url: postgres.url, logger: testLogger)
                defer { store.close() }
                #expect(try await store.detectionCount() == total)
                let acked = acks.withLockedValue { $0 }
                #expect(acked.count == total, "\(total - acked.count) detections never acked")
                let missing = (0..<cameras).flatMap { camera in (0..<perCamera).map { String(format: "CAM%03d", camera) + "-\($0)" } }
                    .filter { acked[$0] == nil }
                #expect(missing.isEmpty, "never acked: \(missing.prefix(10))")
                // The survivor carried on alone.
                #expect(second.isRunning)
                #expect(!first.isRunning)
            }
        }
    }
}
