import DatabusTestSupport
import Foundation
import Testing

/// The certificate lifecycle seen by brokers: lists and renewals made by `databus certs`, used by
/// `databus broker` and by mosquitto with the same files.
@Suite("TLS revocation, renewal and expiry", .serialized, .timeLimit(.minutes(3)))
struct TLSRevocationTests {
    /// `databus certs ...`, expected to succeed.
    static func certs(_ arguments: [String]) async throws -> String {
        let result = try await runProgramCollectingErrors(try DatabusBrokerProcess.executable(), ["certs"] + arguments)
        #expect(result.status == 0, "databus certs \(arguments): \(result.errorOutput)")
        return result.output
    }

    /// A CA folder with the broker and `clients`, readable by the mosquitto user.
    static func makeSite(_ folder: TemporaryDirectory, clients: [String], extra: [String] = []) async throws -> String {
        let out = folder.file("site")
        _ = try await certs(["create", "--out", out] + clients.flatMap { ["--client", $0] } + extra)
        try openForMosquitto(out)
        return out
    }

    /// mosquitto started as root drops to its own user: it must read the broker's folder and key.
    static func openForMosquitto(_ out: String) throws {
        for path in [out, "\(out)/broker"] {
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
        }
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(out)/broker/broker.key")
    }

    static func configuration(_ out: String, crl: Bool = true, extra: String = "") -> String {
        """
        cafile \(out)/broker/ca.crt
        certfile \(out)/broker/broker.crt
        keyfile \(out)/broker/broker.key
        require_certificate true
        use_identity_as_username true
        \(crl ? "crlfile \(out)/broker/crl.pem" : "")
        \(extra)
        """
    }

    static func client(_ out: String, _ name: String, folder: String? = nil) -> TLSClientOptions {
        let base = "\(out)/\(folder ?? name)"
        return TLSClientOptions(caFile: "\(out)/broker/ca.crt", certificate: "\(base)/\(name).crt", key: "\(base)/\(name).key")
    }

    @Test(
        "a certificate revoked with databus certs is refused by the broker with the same crlfile, at start and after SIGHUP; another of the CA gets in",
        arguments: TestBrokerKind.allCases
    )
    func revokedClientRefused(kind: TestBrokerKind) async throws {
        let folder = try TemporaryDirectory(prefix: "databus-revoke-broker")
        defer { folder.remove() }
        let out = try await Self.makeSite(folder, clients: ["cam-1", "cam-2"])
        _ = try await Self.certs(["revoke", "--out", out, "cam-1", "--reason", "keyCompromise"])
        try await kind.with(extraConfiguration: Self.configuration(out)) { broker in
            let revoked = try await mosquittoPublish(port: broker.port, Self.client(out, "cam-1"), topic: "lprserver/cameras/cam-1/detection")
            #expect(revoked.status != 0, "the revoked camera got in")
            let good = try await mosquittoPublish(port: broker.port, Self.client(out, "cam-2"), topic: "lprserver/cameras/cam-2/detection")
            #expect(good.status == 0, "\(good.errorOutput)")

            // Revoked while the broker runs: refused once SIGHUP made it re-read the list.
            _ = try await Self.certs(["revoke", "--out", out, "cam-2"])
            if let mosquitto = broker as? Mosquitto { kill(mosquitto.pid, SIGHUP) }
            if let databus = broker as? DatabusBrokerProcess { databus.signal(SIGHUP) }
            var refusedAfterReload = false
            for _ in 0..<20 where !refusedAfterReload {
                try await Task.sleep(for: .milliseconds(100))
                refusedAfterReload = try await mosquittoPublish(port: broker.port, Self.client(out, "cam-2")).status != 0
            }
            #expect(refusedAfterReload, "cam-2 still gets in after the reload")
        }
    }

    @Test("renewal: the new certificate (new key, or --keep-key) and the previous one both get in", arguments: TestBrokerKind.allCases)
    func renewedCertificatesAccepted(kind: TestBrokerKind) async throws {
        let folder = try TemporaryDirectory(prefix: "databus-renew-broker")
        defer { folder.remove() }
        let out = try await Self.makeSite(folder, clients: ["cam-1", "cam-2"])
        // The camera still has its previous files until it gets the new folder.
        #expect(try await runProgram("cp", ["-r", "\(out)/cam-1", "\(out)/cam-1-previous"]).status == 0)
        let renewed = try await Self.certs(["renew", "--out", out, "cam-1"])
        #expect(renewed.contains("new key"))
        let kept = try await Self.certs(["renew", "--out", out, "cam-2", "--keep-key"])
        #expect(kept.contains("same key"))
        _ = try await Self.certs(["crl", "--out", out])
        try await kind.with(extraConfiguration: Self.configuration(out)) { broker in
            for (name, folder) in [("cam-1", "cam-1"), ("cam-1", "cam-1-previous"), ("cam-2", "cam-2")] {
                let published = try await mosquittoPublish(port: broker.port, Self.client(out, name, folder: folder), topic: "renewal/\(folder)")
                #expect(published.status == 0, "\(folder): \(published.errorOutput)")
            }
        }
    }

    @Test("SIGHUP after a revocation disconnects the connected revoked client (v5: DISCONNECT 0x87), keeps the others, and refuses it later")
    func connectedClientDisconnectedOnReload() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-revoke-reload")
        defer { folder.remove() }
        let out = try await Self.makeSite(folder, clients: ["cam-1", "cam-2", "backend"])
        _ = try await Self.certs(["crl", "--out", out])
        try await DatabusBrokerProcess.with(extraConfiguration: Self.configuration(out, extra: "log_type all")) { broker in
            // cam-1 listens with MQTT 5, printing what libmosquitto sees (-d).
            let revokedOutput = broker.directory.appendingPathComponent("cam-1.out").path
            let (program, arguments) = Self.client(out, "cam-1").command(
                "mosquitto_sub",
                port: broker.port,
                ["-V", "mqttv5", "-t", "lprserver/#", "-q", "1", "-v", "-d", "-i", "cam-1"]
            )
            let revokedSubscriber = try ChildProcess.spawn(program, arguments, outputPath: revokedOutput)
            defer { Task { await revokedSubscriber.terminate() } }
            #expect(await eventually(within: .seconds(10), { broker.log }, contains: "client=cam-1 filter=lprserver/#"), "\(broker.log)")

            let received = try await withSubscriber(broker, Self.client(out, "cam-2"), topic: "lprserver/system/status", count: 1, clientID: "cam-2")
            {
                _ = try await Self.certs(["revoke", "--out", out, "cam-1", "--reason", "keyCompromise"])
                broker.signal(SIGHUP)
                #expect(
                    await eventually(
                        within: .seconds(10),
                        { broker.log },
                        contains: "disconnecting: the reloaded crlfile refuses this client's certificate"
                    ),
                    "\(broker.log)"
                )
                let published = try await mosquittoPublish(
                    port: broker.port,
                    Self.client(out, "backend"),
                    topic: "lprserver/system/status",
                    message: "online"
                )
                #expect(published.status == 0, "\(published.errorOutput)")
            }
            #expect(received == ["lprserver/system/status online"])

            let log = broker.log
            #expect(log.contains("client=cam-1"))
            #expect(log.contains("certificate=CN=cam-1"), "\(log)")
            let seen = (try? String(contentsOfFile: revokedOutput, encoding: .utf8)) ?? ""
            #expect(!seen.contains("lprserver/system/status online"), "the revoked camera still received: \(seen)")
            // libmosquitto's debug line for the broker's DISCONNECT: 0x87, not authorized.
            #expect(seen.contains("Received DISCONNECT (135)"), "\(seen)")

            // Its next attempt is refused during the handshake.
            let again = try await mosquittoPublish(port: broker.port, Self.client(out, "cam-1"))
            #expect(again.status != 0)
            #expect(await eventually({ broker.log }, contains: "failure=certificate_revoked"))
        }
    }

    @Test("the broker warns about its certificate expiring and exports databus_tls_certificate_expiry_seconds for it, its CA and its CRL")
    func expiryWarningAndMetric() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-expiry")
        defer { folder.remove() }
        let out = try await Self.makeSite(folder, clients: ["cam-1"], extra: ["--days", "10"])
        _ = try await Self.certs(["crl", "--out", out])
        let metricsPort = try await Mosquitto.freePort()
        let configuration = Self.configuration(out, extra: "metrics_listener \(metricsPort) 127.0.0.1")
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            // Ten days less the moments since it was issued (certificates count whole seconds).
            let warned = ["9", "10"].contains { broker.log.contains("the TLS certificate localhost expires in \($0) days: renew it and send SIGHUP") }
            #expect(warned, "\(broker.log)")
            #expect(!broker.log.contains("the CA certificate"), "the CA has ten years left")

            func seconds(_ role: String, _ metrics: String) -> Double? {
                let line = metrics.split(separator: "\n").first {
                    $0.hasPrefix("databus_tls_certificate_expiry_seconds{") && $0.contains(#"role="\#(role)""#)
                }
                return line?.split(separator: " ").last.flatMap { Double($0) }
            }
            let metrics = try await fetchMetrics(port: metricsPort)
            #expect(metrics.contains(#"databus_tls_certificate_expiry_seconds{cn="localhost",role="certificate"}"#), "\(metrics)")
            let certificate = try #require(seconds("certificate", metrics))
            #expect(certificate > 9 * 86_400 && certificate <= 10 * 86_400 + 1)
            let ca = try #require(seconds("ca", metrics))
            #expect(ca > 3_649 * 86_400)
            #expect(metrics.contains(#"cn="Databus CA "#))
            let crl = try #require(seconds("crl", metrics))
            #expect(crl > 89 * 86_400 && crl <= 90 * 86_400 + 1)

            // Renewed and reloaded: the gauge follows the new certificate, and the warning is gone.
            _ = try await Self.certs(["renew", "--out", out, "broker"])
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: "\(out)/broker/broker.key")
            broker.signal(SIGHUP)
            #expect(await eventually({ broker.log }, contains: "TLS files reloaded"))
            let after = try await fetchMetrics(port: metricsPort)
            let renewed = try #require(seconds("certificate", after))
            #expect(renewed > 824 * 86_400, "\(after)")
            #expect(
                after.split(separator: "\n").filter { $0.hasPrefix("databus_tls_certificate_expiry_seconds{") && $0.contains(#"role="certificate""#) }
                    .count == 1
            )
        }
    }
}
