import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

@Suite("Configuration reload", .serialized)
struct ReloadTests {
    @Test("reload applies limits to new connections and reports what needs a restart")
    func reloadInProcess() async throws {
        var configuration = BrokerConfiguration()
        configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
        configuration.allowAnonymous = true
        configuration.sysInterval = 0
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test.reload"))
        let port = try await broker.start()[0].port!

        var changed = configuration
        changed.retainAvailable = false
        changed.listeners = [.init(port: 1, address: "127.0.0.1")]
        let needRestart = try await broker.reload(changed)
        #expect(needRestart == ["listeners"])

        let client = try await CodecConnection.connect(port: port, version: .v5)
        let connack = try await client.handshake(clientIdentifier: "after-reload")
        #expect(connack.properties.retainAvailable == 0)
        try await client.send(.publish(PublishPacket(topicName: "lpr/status", payload: ByteBuffer(string: "x"), retain: true)))
        try await client.expectNext(.disconnect(DisconnectPacket(reasonCode: .retainNotSupported)))
        await client.close()
        await broker.shutdown()
    }

    @Test("SIGHUP re-reads the file: new connections follow it, connected clients stay")
    func sighup() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("databus-reload-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let file = folder + "/databus.conf"
        let template = "listener {PORT} 127.0.0.1\nallow_anonymous true\nsys_interval 0\n"
        let (broker, port) = try await startBrokerProcess(configuration: template + "retain_available true\n", file: file)
        let base = template.replacingOccurrences(of: "{PORT}", with: "\(port)")
        let connected = try await CodecConnection.connect(port: port, version: .v5)
        _ = try await connected.handshake(clientIdentifier: "stays")

        try (base + "retain_available false\n").write(toFile: file, atomically: true, encoding: .utf8)
        kill(broker.pid, SIGHUP)

        // The reload happens asynchronously: try new connections until one sees it.
        var refused = false
        for _ in 0..<40 where !refused {
            let probe = try await CodecConnection.connect(port: port, version: .v5)
            let connack = try await probe.handshake(clientIdentifier: "probe")
            refused = connack.properties.retainAvailable == 0
            await probe.close()
            if !refused { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(refused, "new connections still announce retain available after SIGHUP")
        try await connected.send(.pingreq)
        try await connected.expectNext(.pingresp)

        // A broken file keeps the running configuration.
        try "listener \(port) 127.0.0.1\nno_such_key 1\n".write(toFile: file, atomically: true, encoding: .utf8)
        kill(broker.pid, SIGHUP)
        try await Task.sleep(for: .milliseconds(200))
        try await connected.send(.pingreq)
        try await connected.expectNext(.pingresp)

        await connected.close()
        let status = await broker.terminate()
        #expect(status == 0)
    }
}
