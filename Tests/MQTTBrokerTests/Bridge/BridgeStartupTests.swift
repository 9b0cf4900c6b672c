import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import Testing

/// A bridge's configuration as the broker process checks, starts and reloads it.
@Suite("Bridge start-up and reload")
struct BridgeStartupTests {
    @Test("--test-config loads a bridge's TLS files: a missing one exits 1 naming the bridge, the key and the file")
    func testConfig() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-bridge-testconfig")
        let file = try folder.write(
            "edge.conf",
            """
            listener 1883
            connection central
            address central.example.com:8883
            bridge_cafile \(folder.file("missing-ca.crt"))
            topic lpr/# out 1
            """
        )
        let result = try await runProgramCollectingErrors(try databusExecutable(), ["broker", "-c", file, "--test-config"])
        #expect(result.status == 1)
        #expect(result.errorOutput.contains("bridge central: bridge_cafile: \(folder.file("missing-ca.crt"))"), "\(result.errorOutput)")

        let bad = try folder.write("bad.conf", "listener 1883\nconnection central\naddress central.example.com\ntopic lpr/# sideways 1\n")
        let refused = try await runProgramCollectingErrors(try databusExecutable(), ["broker", "-c", bad, "--test-config"])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("bad.conf:4: topic: the direction must be out, in or both"), "\(refused.errorOutput)")
    }

    @Test("SIGHUP does not change bridges (as in mosquitto): a reload reports that they need a restart")
    func reloadKeepsBridges() async throws {
        var configuration = try MosquittoConfigParser.parse("connection central\naddress 127.0.0.1:1\nrestart_timeout 30\ntopic lpr/# out 1\n")
        configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
        configuration.allowAnonymous = true
        configuration.sysInterval = 0
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test.bridge-reload"))
        try await broker.start()
        var changed = configuration
        changed.bridges[0].topics.append(.init(pattern: "health/#"))
        let ignored = try await broker.reload(changed)
        #expect(ignored == ["bridges"])
        #expect(try await broker.reload(configuration).isEmpty)
        await broker.shutdown()
    }
}
