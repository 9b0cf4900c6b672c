import DatabusTestSupport
import Foundation
import MQTTBroker
import MQTTCore
import Testing

/// The edge configuration the README shows runs on mosquitto and on `databus broker` alike,
/// bridged over mutual TLS to a central mosquitto.
@Suite("The README's bridge example", .serialized)
struct BridgeReadmeExampleTests {
    /// The block between `<!-- bridge-example -->` and `<!-- /bridge-example -->` in README.md.
    static func readmeExample() throws -> String {
        let readme = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("README.md")
        let text = try String(contentsOf: readme, encoding: .utf8)
        guard let start = text.range(of: "<!-- bridge-example -->\n```\n"), let end = text.range(of: "```\n<!-- /bridge-example -->") else {
            throw InteropError("README.md has no bridge example block")
        }
        return String(text[start.upperBound..<end.lowerBound])
    }

    /// The example with only what a test machine must change: the listener's port, the
    /// persistence folder, the central brokers' addresses and the certificates' folder.
    static func localized(listener: Int, store: String, main: Int, backup: Int, certificates: String) throws -> String {
        var text = try readmeExample()
        for (from, to) in [
            ("listener 1883", "listener \(listener) 127.0.0.1"),
            ("/var/lib/databus/", store + "/"),
            ("central.example.com:8883 central-backup.example.com:8883", "127.0.0.1:\(main) 127.0.0.1:\(backup)"),
            ("/etc/databus/certs/", certificates + "/"),
        ] {
            guard text.contains(from) else { throw InteropError("the README example no longer has \"\(from)\"") }
            text = text.replacingOccurrences(of: from, with: to)
        }
        return text
    }

    @Test("the README's example parses, with every bridge line read")
    func parses() throws {
        let configuration = try MosquittoConfigParser.parse(try Self.readmeExample(), file: "README.md")
        let bridge = try #require(configuration.bridges.first)
        #expect(bridge.addresses.count == 2)
        #expect(bridge.topics.count == 8)
        #expect(bridge.tls.isEnabled && bridge.tls.certFile != nil)
        #expect(bridge.restartTimeout == .backoff(base: 2, cap: 30))
    }

    @Test(
        "the same file runs on databus broker and on mosquitto: detections out, configuration in, over mutual TLS",
        arguments: ["databus", "mosquitto"]
    )
    func runsOnBoth(edgeKind: String) async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let folder = try TemporaryDirectory(prefix: "databus-bridge-readme")
        let certificates = try folder.makeWritableFolder("certs")
        for (name, path) in [
            ("ca.crt", files.ca), ("server.crt", files.serverCertificate), ("server.key", files.serverKey),
            ("checkpoint-7.crt", files.client.certificate), ("checkpoint-7.key", files.client.key),
        ] {
            try folder.write("certs/\(name)", try String(contentsOfFile: path, encoding: .utf8))
        }
        let store = try folder.makeWritableFolder("store")
        // The central broker: mosquitto with a mutual-TLS listener; the backup address is down.
        let tlsPort = try await Mosquitto.freePort()
        let backupPort = try await Mosquitto.freePort()
        try await Mosquitto.with(
            extraConfiguration: """
                listener \(tlsPort) 127.0.0.1
                cafile \(certificates)/ca.crt
                certfile \(certificates)/server.crt
                keyfile \(certificates)/server.key
                require_certificate true
                """
        ) { central in
            let port = try await Mosquitto.freePort()
            let configuration = try folder.write(
                "edge.conf",
                try Self.localized(listener: port, store: store, main: tlsPort, backup: backupPort, certificates: certificates)
            )
            let edge: ChildProcess
            if edgeKind == "databus" {
                edge = try ChildProcess.spawn(try databusExecutable(), ["broker", "-c", configuration], errorPath: folder.file("edge.log"))
            } else {
                edge = try ChildProcess.spawn("/usr/sbin/mosquitto", ["-c", configuration], errorPath: folder.file("edge.log"))
            }
            do {
                try await waitForPort(port)
                try await waitForRetained(port: central.port, topic: "lprserver/checkpoints/7/bridge", payload: "1")
                let server = try await connectAccepted(port: central.port, "lpr-server", version: .v3_1_1)
                try await server.subscribe("lprserver/cameras/+/detection", qos: .atLeastOnce)
                let camera = try await connectAccepted(port: port, "cam7", version: .v3_1_1)
                try await camera.subscribe("lprserver/cameras/cam7/config", qos: .atLeastOnce)
                try await camera.publish("lprserver/cameras/cam7/detection", "AB123", qos: .atLeastOnce, packetIdentifier: 1)
                #expect(try await server.collectPublishes(count: 1).map(\.payloadString) == ["AB123"])
                try await server.publish("lprserver/cameras/cam7/config", "{\"fps\":10}", qos: .atLeastOnce, packetIdentifier: 1)
                #expect(try await camera.collectPublishes(count: 1).map(\.payloadString) == ["{\"fps\":10}"])
                for connection in [server, camera] { await connection.close() }
            } catch {
                await edge.terminate()
                throw InteropError("\(error); edge log: \((try? String(contentsOfFile: folder.file("edge.log"), encoding: .utf8)) ?? "")")
            }
            await edge.terminate()
        }
    }
}
