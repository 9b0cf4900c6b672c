import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

@Suite("Our key threads: how many event loops serve connections")
struct ThreadsTests {
    /// The names of the process's event-loop threads (SwiftNIO names its shared ones
    /// NIO-SGLTN-group-#thread).
    static func eventLoopThreads(of pid: pid_t) throws -> [String] {
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        return tasks.compactMap { task in
            guard let name = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/comm", encoding: .utf8) else { return nil }
            let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.hasPrefix("NIO-SGLTN-") ? trimmed : nil
        }
    }

    @Test("threads 1: one event loop serves every connection, and a publish still reaches its subscriber")
    func oneLoop() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (broker, port) = try await startBrokerProcess(
            configuration: "listener {PORT} 127.0.0.1\nallow_anonymous true\nsys_interval 0\nthreads 1\n",
            file: directory.file("one.conf")
        )
        defer { Task { await broker.terminate() } }
        let subscriber = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await subscriber.handshake(clientIdentifier: "sub")
        try await subscriber.send(
            .subscribe(
                SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "t/#", options: SubscriptionOptions(qos: .atMostOnce))])
            )
        )
        _ = try await subscriber.receive()
        for index in 0..<4 {
            let publisher = try await CodecConnection.connect(port: port, version: .v5)
            _ = try await publisher.handshake(clientIdentifier: "pub\(index)")
            try await publisher.send(.publish(PublishPacket(topicName: "t/\(index)", payload: ByteBuffer(string: "\(index)"))))
            guard case .publish(let received) = try await subscriber.receive() else {
                Issue.record("expected a PUBLISH")
                return
            }
            #expect(received.topicName == "t/\(index)")
        }
        #expect(try Self.eventLoopThreads(of: broker.pid).count == 1)
    }

    @Test("without the key: one event loop per core")
    func onePerCore() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let (broker, _) = try await startBrokerProcess(
            configuration: "listener {PORT} 127.0.0.1\nallow_anonymous true\nsys_interval 0\n",
            file: directory.file("default.conf")
        )
        defer { Task { await broker.terminate() } }
        #expect(try Self.eventLoopThreads(of: broker.pid).count == System.coreCount)
    }
}
