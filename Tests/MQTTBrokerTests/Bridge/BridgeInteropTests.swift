import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

/// Bridges between real brokers: `databus broker` bridged to mosquitto and mosquitto bridged to
/// `databus broker`, each way, with prefixes, every QoS, retained messages, and no loops.
@Suite("Bridges with real peers", .serialized)
struct BridgeInteropTests {
    /// The topic lines both bridges use: cameras out with a site prefix, configuration in from
    /// the central side, an `echo` tree both ways to show that nothing loops.
    private static let topicLines = """
        topic lpr/# out 2 edge/ site7/
        topic config/# in 2 site7/ central/site7/
        topic echo/# both 2
        """

    /// Publishes from both sides and checks what each side's subscriber gets.
    /// - Parameters:
    ///   - edge: the port of the bridging broker; `central`: the remote broker's.
    private func exchange(edge: Int, central: Int, version: MQTTProtocolVersion) async throws {
        let edgeSubscriber = try await connectAccepted(port: edge, "edge-sub", version: version)
        try await edgeSubscriber.subscribe(["site7/config/#", "echo/#"], options: .init(qos: .exactlyOnce))
        let centralSubscriber = try await connectAccepted(port: central, "central-sub", version: version)
        try await centralSubscriber.subscribe(["site7/#", "echo/#"], options: .init(qos: .exactlyOnce))
        let edgePublisher = try await connectAccepted(port: edge, "camera-1", version: version)
        let centralPublisher = try await connectAccepted(port: central, "lpr-server", version: version)

        // Out, every QoS, with the prefixes swapped; a retained one keeps its flag.
        for (number, qos) in QoS.allCases.enumerated() {
            try await edgePublisher.publish("edge/lpr/cam1/plate", "q\(qos.rawValue)", qos: qos, packetIdentifier: UInt16(number + 1))
        }
        try await edgePublisher.publish("edge/lpr/cam1/last", "AB123", qos: .atLeastOnce, packetIdentifier: 9, retain: true)
        // Both: once on each side.
        try await edgePublisher.publish("echo/from-edge", "e", qos: .exactlyOnce, packetIdentifier: 10)
        // In, with the prefixes swapped back.
        try await centralPublisher.publish("central/site7/config/cam1", "cfg", qos: .exactlyOnce, packetIdentifier: 1)
        try await centralPublisher.publish("echo/from-central", "c", qos: .atLeastOnce, packetIdentifier: 2)

        let atCentral = Set(try await centralSubscriber.collectPublishes(count: 6).map(Seen.init))
        #expect(
            atCentral == [
                Seen("site7/lpr/cam1/plate", "q0", qos: .atMostOnce), Seen("site7/lpr/cam1/plate", "q1", qos: .atLeastOnce),
                Seen("site7/lpr/cam1/plate", "q2", qos: .exactlyOnce), Seen("site7/lpr/cam1/last", "AB123", qos: .atLeastOnce),
                Seen("echo/from-edge", "e", qos: .exactlyOnce), Seen("echo/from-central", "c", qos: .atLeastOnce),
            ]
        )
        let atEdge = Set(try await edgeSubscriber.collectPublishes(count: 3).map(Seen.init))
        #expect(
            atEdge == [
                Seen("site7/config/cam1", "cfg", qos: .exactlyOnce), Seen("echo/from-edge", "e", qos: .exactlyOnce),
                Seen("echo/from-central", "c", qos: .atLeastOnce),
            ]
        )
        // Nothing came back over the bridge: no second copy on either side.
        let lateCentral = try await centralSubscriber.collectPublishes(quiet: 1.5)
        let lateEdge = try await edgeSubscriber.collectPublishes(quiet: 0.5)
        #expect(lateCentral.isEmpty, "looped back to central: \(lateCentral.map(Seen.init))")
        #expect(lateEdge.isEmpty, "looped back to the edge: \(lateEdge.map(Seen.init))")

        // The retained message is retained at the central broker.
        let late = try await connectAccepted(port: central, "late-sub", version: version)
        try await late.subscribe("site7/lpr/cam1/last", qos: .atLeastOnce)
        let retained = try await late.collectPublishes(count: 1)
        #expect(retained.map(Seen.init) == [Seen("site7/lpr/cam1/last", "AB123", qos: .atLeastOnce, retain: true)])
        for connection in [edgeSubscriber, centralSubscriber, edgePublisher, centralPublisher, late] { await connection.close() }
    }

    @Test(
        "databus broker bridged to mosquitto: out, in and both with prefixes, QoS 0/1/2, retained, no loops",
        arguments: ["mqttv311", "mqttv50", "mqttv31"]
    )
    func databusToMosquitto(protocolVersion: String) async throws {
        try await Mosquitto.with { central in
            try await withDatabusBroker(
                """
                persistence true
                persistence_location {DIRECTORY}/store
                connection central
                address 127.0.0.1:\(central.port)
                bridge_protocol_version \(protocolVersion)
                remote_clientid edge-7
                restart_timeout 1
                \(Self.topicLines)
                """
            ) { edge in
                try await waitForRetained(port: edge.port, topic: "$SYS/broker/connection/edge-7/state", payload: "1")
                try await exchange(edge: edge.port, central: central.port, version: protocolVersion == "mqttv50" ? .v5 : .v3_1_1)
            }
        }
    }

    @Test(
        "mosquitto bridged to databus broker: the bridge bit is honoured, so nothing loops; prefixes and QoS 0/1/2",
        arguments: ["mqttv311", "mqttv50"]
    )
    func mosquittoToDatabus(protocolVersion: String) async throws {
        try await withDatabusBroker("") { central in
            try await Mosquitto.with(
                extraConfiguration: """
                    connection central
                    address 127.0.0.1:\(central.port)
                    bridge_protocol_version \(protocolVersion)
                    remote_clientid edge-7
                    restart_timeout 1
                    \(Self.topicLines)
                    """
            ) { edge in
                try await waitForRetained(port: edge.port, topic: "$SYS/broker/connection/edge-7/state", payload: "1")
                try await exchange(edge: edge.port, central: central.port, version: protocolVersion == "mqttv50" ? .v5 : .v3_1_1)
            }
        }
    }

    @Test("the notification topic: retained 1 on both sides once connected, 0 here when the remote broker goes, 0 there when we stop")
    func notifications() async throws {
        try await Mosquitto.with { central in
            let edge = try await DatabusBrokerProcess.start(
                extraConfiguration: """
                    connection central
                    address 127.0.0.1:\(central.port)
                    notification_topic bridges/edge-7/state
                    restart_timeout 1
                    keepalive_interval 5
                    topic lpr/# out 1
                    """
            )
            do {
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "1")
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "1")
                await central.terminate()
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "0")
                try await central.restart()
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "1")
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "1")
                await edge.terminate()
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "0")
                // A crash: the remote broker publishes the will.
                try await edge.restart()
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "1")
                await edge.kill()
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "0", within: 30)
            } catch {
                await edge.stop()
                throw error
            }
            await edge.stop()
        }
    }

    @Test("fail-over: the first address does not answer, the second is used; round_robin false goes back to the first once it answers")
    func failover() async throws {
        let main = try await Mosquitto.start()
        let backup = try await Mosquitto.start()
        await main.terminate()
        do {
            try await withDatabusBroker(
                """
                connection central
                address 127.0.0.1:\(main.port) 127.0.0.1:\(backup.port)
                notification_topic bridges/edge-7/state
                restart_timeout 1
                topic lpr/# out 1
                """
            ) { edge in
                try await waitForRetained(port: backup.port, topic: "bridges/edge-7/state", payload: "1")
                let publisher = try await connectAccepted(port: edge.port, "camera-1")
                let atBackup = try await connectAccepted(port: backup.port, "backup-sub")
                try await atBackup.subscribe("lpr/#", qos: .atLeastOnce)
                try await publisher.publish("lpr/cam1", "via backup", qos: .atLeastOnce, packetIdentifier: 1)
                #expect(try await atBackup.collectPublishes(count: 1).map(\.payloadString) == ["via backup"])

                try await main.restart()
                // Probed every 5 s: the bridge goes back to the main broker.
                try await waitForRetained(port: main.port, topic: "bridges/edge-7/state", payload: "1", within: 30)
                let atMain = try await connectAccepted(port: main.port, "main-sub")
                try await atMain.subscribe("lpr/#", qos: .atLeastOnce)
                try await publisher.publish("lpr/cam1", "via main", qos: .atLeastOnce, packetIdentifier: 2)
                #expect(try await atMain.collectPublishes(count: 1).map(\.payloadString) == ["via main"])
                for connection in [publisher, atBackup, atMain] { await connection.close() }
            }
        } catch {
            await main.stop()
            await backup.stop()
            throw error
        }
        await main.stop()
        await backup.stop()
    }

    @Test("TLS with a client certificate: mosquitto requires it and takes the CN as the user name")
    func tlsClientCertificate() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let folder = try TemporaryDirectory(prefix: "databus-bridge-tls")
        // mosquitto reads its files as the mosquitto user.
        for (name, path) in [("ca.crt", files.ca), ("server.crt", files.serverCertificate), ("server.key", files.serverKey)] {
            try folder.write(name, try String(contentsOfFile: path, encoding: .utf8))
        }
        let tlsPort = try await Mosquitto.freePort()
        try await Mosquitto.with(
            extraConfiguration: """
                listener \(tlsPort) 127.0.0.1
                cafile \(folder.file("ca.crt"))
                certfile \(folder.file("server.crt"))
                keyfile \(folder.file("server.key"))
                require_certificate true
                use_identity_as_username true
                """
        ) { central in
            try await withDatabusBroker(
                """
                connection central
                address 127.0.0.1:\(tlsPort)
                notification_topic bridges/edge-7/state
                restart_timeout 1
                bridge_cafile \(files.ca)
                bridge_certfile \(files.client.certificate)
                bridge_keyfile \(files.client.key)
                topic lpr/# out 1
                topic config/# in 1
                """
            ) { edge in
                try await waitForRetained(port: central.port, topic: "bridges/edge-7/state", payload: "1")
                let atCentral = try await connectAccepted(port: central.port, "central-sub")
                try await atCentral.subscribe("lpr/#", qos: .atLeastOnce)
                let publisher = try await connectAccepted(port: edge.port, "camera-1")
                try await publisher.publish("lpr/cam1", "over TLS", qos: .atLeastOnce, packetIdentifier: 1)
                #expect(try await atCentral.collectPublishes(count: 1).map(\.payloadString) == ["over TLS"])
                for connection in [atCentral, publisher] { await connection.close() }
            }
            // Without the client certificate the bridge is refused.
            try await withDatabusBroker(
                """
                connection central
                address 127.0.0.1:\(tlsPort)
                notification_topic bridges/edge-8/state
                restart_timeout 1
                bridge_cafile \(files.ca)
                topic lpr/# out 1
                """
            ) { edge in
                try await Task.sleep(for: .seconds(2))
                #expect(edge.log.contains("bridge could not connect") || edge.log.contains("bridge connection error"), "\(edge.log)")
                await #expect(throws: InteropError.self) {
                    try await waitForRetained(port: central.port, topic: "bridges/edge-8/state", payload: "1", within: 2)
                }
            }
        }
    }

    @Test("bridge_jwt_command: a fresh token for every connection, accepted by a broker that wants device JWTs")
    func jwtCommand() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-bridge-jwt")
        let secret = "a shared secret of more than thirty-two bytes"
        try folder.write("secret", secret)
        let script = try folder.write(
            "token.py",
            """
            import base64, hashlib, hmac, json, sys, time
            def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
            header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
            body = b64(json.dumps({"sub": "edge-7", "exp": int(time.time()) + 60}).encode())
            signature = b64(hmac.new(sys.argv[1].encode(), f"{header}.{body}".encode(), hashlib.sha256).digest())
            with open(sys.argv[2], "a") as log: log.write("token\\n")
            print(f"{header}.{body}.{signature}")
            """
        )
        let runs = folder.file("runs")
        try await withDatabusBroker(
            """
            allow_anonymous false
            jwt_algorithms HS256
            jwt_keyfile \(folder.file("secret"))
            """
        ) { central in
            try await withDatabusBroker(
                """
                connection central
                address 127.0.0.1:\(central.port)
                notification_topic bridges/edge-7/state
                restart_timeout 1
                remote_username edge-7
                bridge_jwt_command python3 \(script) '\(secret)' \(runs)
                topic lpr/# out 1
                """
            ) { edge in
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "1")
                #expect((try String(contentsOfFile: runs, encoding: .utf8)).split(separator: "\n").count == 1)
                // The central broker restarts: the bridge logs in again with a new token.
                await central.terminate()
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "0")
                try await central.restart()
                try await waitForRetained(port: edge.port, topic: "bridges/edge-7/state", payload: "1")
                #expect((try String(contentsOfFile: runs, encoding: .utf8)).split(separator: "\n").count >= 2)
            }
        }
    }
}
