import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import NIOPosix
import Testing

/// `databus broker` with TLS listeners, driven by mosquitto_pub and mosquitto_sub with
/// certificates made by openssl.
@Suite("TLS listeners", .serialized, .timeLimit(.minutes(3)))
struct TLSListenerTests {
    static func tlsConfiguration(_ files: OpenSSLCertificates.Files, _ extra: String = "") -> String {
        """
        cafile \(files.ca)
        certfile \(files.serverCertificate)
        keyfile \(files.serverKey)
        require_certificate true
        log_type all
        \(extra)
        """
    }

    @Test("mosquitto_sub and mosquitto_pub get in with the right CA and client certificate; the message flows")
    func mutualTLS() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files)) { broker in
            let options = TLSClientOptions(caFile: files.ca, client: files.client)
            let received = try await withSubscriber(broker, options, topic: "tls/echo", count: 1) {
                let published = try await mosquittoPublish(port: broker.port, options, topic: "tls/echo", message: "over TLS")
                #expect(published.status == 0, "\(published.errorOutput)")
            }
            #expect(received == ["tls/echo over TLS"])
        }
    }

    @Test("refused at the handshake: no client certificate, one from another CA, an expired one; each logged and counted")
    func refusedCertificates() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let metricsPort = try await Mosquitto.freePort()
        let configuration = Self.tlsConfiguration(files, "metrics_listener \(metricsPort) 127.0.0.1")
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let none = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca))
            let foreign = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.foreignClient))
            let expired = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.expired))
            #expect(none.status != 0)
            #expect(foreign.status != 0)
            #expect(expired.status != 0)
            // Nobody of those got as far as MQTT.
            #expect(!broker.log.contains("client connected"))

            let good = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.client))
            #expect(good.status == 0, "\(good.errorOutput)")

            let log = broker.log
            let failures = log.split(separator: "\n").filter { $0.contains("TLS handshake failed") }
            #expect(failures.count == 3, "\(failures)")
            #expect(failures.allSatisfy { $0.contains("peer=[IPv4]127.0.0.1") })
            #expect(failures.contains { $0.contains("failure=certificate_missing") && $0.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") })
            #expect(failures.filter { $0.contains("failure=certificate_invalid") && $0.contains("CERTIFICATE_VERIFY_FAILED") }.count == 2)
            #expect(failures.contains { $0.contains("certificate CN=camera-old issued by CN=Test ca,O=Databus tests expired at 2020-01-02") })
            #expect(failures.contains { $0.contains("issued by CN=Test other-ca,O=Databus tests") })

            let metrics = try await fetchMetrics(port: metricsPort)
            #expect(metrics.contains(#"databus_tls_handshake_failures_total{reason="certificate_missing"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"databus_tls_handshake_failures_total{reason="certificate_invalid"} 2"#))
            #expect(metrics.contains("databus_tls_handshakes_total 1"))
        }
    }

    @Test("crlfile: a revoked certificate is refused, a good one of the same CA gets in")
    func revokedCertificate() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files, "crlfile \(files.crl)")) { broker in
            let revoked = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.revoked))
            #expect(revoked.status != 0)
            let good = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.client))
            #expect(good.status == 0, "\(good.errorOutput)")
            let log = broker.log
            #expect(log.contains("failure=certificate_revoked"), "\(log)")
            #expect(log.contains("CN=camera-stolen (serial"))
            #expect(log.components(separatedBy: "client connected").count == 2, "only the good client connects")
        }
    }

    @Test("a TLS 1.1-only client is refused by the default minimum (1.2); with tls_version tlsv1.1 it gets in")
    func tls11Client() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        // OpenSSL 3 needs security level 0 for TLS 1.1's SHA-1 signatures.
        let cap = try files.directory.write(
            "max11.cnf",
            """
            openssl_conf = openssl_init
            [openssl_init]
            ssl_conf = ssl_sect
            [ssl_sect]
            system_default = system_default_sect
            [system_default_sect]
            MaxProtocol = TLSv1.1
            CipherString = DEFAULT@SECLEVEL=0
            """
        )
        var old = TLSClientOptions(caFile: files.ca, client: files.client)
        old.extra = ["--tls-version", "tlsv1.1"]
        old.openSSLConfiguration = cap

        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files)) { broker in
            let refused = try await mosquittoPublish(port: broker.port, old)
            #expect(refused.status != 0)
            #expect(await eventually({ broker.log }, contains: "failure=protocol_version"), "\(broker.log)")
            #expect(broker.log.contains("UNSUPPORTED_PROTOCOL"))
        }
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files, "tls_version tlsv1.1")) { broker in
            let accepted = try await mosquittoPublish(port: broker.port, old)
            #expect(accepted.status == 0, "the same client gets in when the broker allows TLS 1.1: \(accepted.errorOutput)")
        }
    }

    @Test("ciphers limits the TLS 1.2 suites: a client offering only another suite is refused, a matching one gets in")
    func cipherSuites() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let cap = try files.directory.write(
            "max12.cnf",
            """
            openssl_conf = openssl_init
            [openssl_init]
            ssl_conf = ssl_sect
            [ssl_sect]
            system_default = system_default_sect
            [system_default_sect]
            MaxProtocol = TLSv1.2
            """
        )
        func client(_ cipher: String) -> TLSClientOptions {
            var options = TLSClientOptions(caFile: files.ca, client: files.client)
            options.extra = ["--ciphers", cipher]
            options.openSSLConfiguration = cap
            return options
        }
        let configuration = Self.tlsConfiguration(files, "ciphers ECDHE-ECDSA-AES256-GCM-SHA384")
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let other = try await mosquittoPublish(port: broker.port, client("ECDHE-ECDSA-AES128-GCM-SHA256"))
            #expect(other.status != 0)
            #expect(await eventually({ broker.log }, contains: "failure=no_shared_cipher"), "\(broker.log)")
            let matching = try await mosquittoPublish(port: broker.port, client("ECDHE-ECDSA-AES256-GCM-SHA384"))
            #expect(matching.status == 0, "\(matching.errorOutput)")
        }
    }

    @Test("files that do not load stop the broker with the listener, key and file named; --test-config checks them")
    func brokenFiles() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let executable = try DatabusBrokerProcess.executable()
        let cases = [
            ("ciphers NOPE", "ciphers"),
            ("crlfile \(files.otherCA)", "crlfile"),
            ("keyfile \(files.ca)", "keyfile"),
        ]
        for (line, key) in cases {
            let path = try files.directory.write(
                "broken-\(key).conf",
                """
                listener 0 127.0.0.1
                cafile \(files.ca)
                certfile \(files.serverCertificate)
                keyfile \(files.serverKey)
                require_certificate true
                \(line)
                """
            )
            let checked = try await runProgramCollectingErrors(executable, ["broker", "-c", path, "--test-config"])
            #expect(checked.status == 1, "\(key): \(checked.errorOutput)")
            #expect(checked.errorOutput.contains("listener 0 127.0.0.1: \(key):"), "\(checked.errorOutput)")
            let started = try await runProgramCollectingErrors(executable, ["broker", "-c", path], timeout: .seconds(10))
            #expect(started.status == 1, "a configuration error, not a crash: \(started.errorOutput)")
            #expect(started.errorOutput.contains("\(key):"))
        }
    }

    @Test("use_identity_as_username: the certificate's CN is the username, whatever the client sends")
    func identityAsUsername() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files, "use_identity_as_username true")) { broker in
            var options = TLSClientOptions(caFile: files.ca, client: files.client)
            options.extra = ["-u", "someone-else", "-P", "ignored"]
            let result = try await mosquittoPublish(port: broker.port, options, clientID: "cn-test")
            #expect(result.status == 0, "\(result.errorOutput)")
            let line = broker.log.split(separator: "\n").first { $0.contains("client connected") && $0.contains("client=cn-test") }
            #expect(line?.contains("user=camera-17") == true, "\(broker.log)")
            #expect(line?.contains("auth=certificate") == true)
        }
    }

    @Test("use_subject_as_username: the username is the subject exactly as OpenSSL prints it in RFC 2253 form")
    func subjectAsUsername() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let printed = try await runProgram("openssl", ["x509", "-in", files.oddSubject.certificate, "-noout", "-subject", "-nameopt", "RFC2253"])
        let subject = String(printed.output.trimmingCharacters(in: .newlines).dropFirst("subject=".count))
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files, "use_subject_as_username true")) { broker in
            let result = try await mosquittoPublish(
                port: broker.port,
                TLSClientOptions(caFile: files.ca, client: files.oddSubject),
                clientID: "subject"
            )
            #expect(result.status == 0, "\(result.errorOutput)")
            #expect(broker.log.contains("user=\(subject) "), "expected user=\(subject) in \(broker.log)")
        }
    }

    @Test("use_identity_as_username without require_certificate: no certificate is asked for, so CONNECT is refused")
    func identityWithoutCertificate() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let configuration = """
            certfile \(files.serverCertificate)
            keyfile \(files.serverKey)
            cafile \(files.ca)
            use_identity_as_username true
            """
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            // TLS works (the client checks the broker) but the broker never sees a client certificate.
            let result = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.client))
            #expect(result.status != 0)
            #expect(result.errorOutput.lowercased().contains("bad user name or password"), "\(result.errorOutput)")
            #expect(broker.log.contains("use_identity_as_username is set and the client sent no certificate"))
        }
    }

    @Test("clients that stall or do not speak TLS do not hold up others")
    func stalledHandshakes() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        try await DatabusBrokerProcess.with(extraConfiguration: Self.tlsConfiguration(files)) { broker in
            // Ten sockets that never send a byte, and one that speaks plain MQTT.
            var silent: [any Channel] = []
            for _ in 0..<10 {
                silent.append(
                    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton).connect(host: "127.0.0.1", port: broker.port).get()
                )
            }
            let plain = try await CodecConnection.connect(port: broker.port, version: .v5)
            try? await plain.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "plain")))

            let started = ContinuousClock.now
            let good = try await mosquittoPublish(port: broker.port, TLSClientOptions(caFile: files.ca, client: files.client))
            #expect(good.status == 0, "\(good.errorOutput)")
            #expect(ContinuousClock.now - started < .seconds(5))
            #expect(await eventually({ broker.log }, contains: "failure=not_tls"), "\(broker.log)")

            await plain.close()
            for channel in silent { try? await channel.close() }
        }
    }

    @Test("certificates from databus certs: mosquitto clients get in; a client of another databus CA is refused")
    func databusCertificates() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-tls")
        defer { folder.remove() }
        let executable = try DatabusBrokerProcess.executable()
        let made = try await runProgramCollectingErrors(executable, ["certs", "create", "--out", folder.file("site"), "--client", "backend"])
        #expect(made.status == 0, "\(made.errorOutput)")
        let other = try await runProgramCollectingErrors(executable, ["certs", "create", "--out", folder.file("other"), "--client", "intruder"])
        #expect(other.status == 0, "\(other.errorOutput)")
        let site = folder.file("site")
        let configuration = """
            cafile \(site)/broker/ca.crt
            certfile \(site)/broker/broker.crt
            keyfile \(site)/broker/broker.key
            require_certificate true
            use_identity_as_username true
            log_type all
            """
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let backend = TLSClientOptions(
                caFile: "\(site)/backend/ca.crt",
                certificate: "\(site)/backend/backend.crt",
                key: "\(site)/backend/backend.key"
            )
            let received = try await withSubscriber(broker, backend, topic: "lprserver/#", count: 1, clientID: "backend-sub") {
                let published = try await mosquittoPublish(port: broker.port, backend, topic: "lprserver/cameras/7/detection", message: "AB123CD")
                #expect(published.status == 0, "\(published.errorOutput)")
            }
            #expect(received == ["lprserver/cameras/7/detection AB123CD"])
            #expect(broker.log.contains("user=backend"))

            let otherFolder = folder.file("other")
            let intruder = TLSClientOptions(
                caFile: "\(site)/backend/ca.crt",
                certificate: "\(otherFolder)/intruder/intruder.crt",
                key: "\(otherFolder)/intruder/intruder.key"
            )
            let refused = try await mosquittoPublish(port: broker.port, intruder)
            #expect(refused.status != 0)
            #expect(await eventually({ broker.log }, contains: "failure=certificate_invalid"))
        }
    }
}

/// Runs mosquitto_sub until it has `count` messages, subscribed before `body` runs.
/// - Returns: the lines it printed (`topic payload`).
func withSubscriber(
    _ broker: DatabusBrokerProcess,
    _ options: TLSClientOptions,
    topic: String,
    count: Int,
    clientID: String = "tls-sub",
    _ body: () async throws -> Void
) async throws -> [String] {
    let output = broker.directory.appendingPathComponent("sub-\(UUID().uuidString).out").path
    let (program, arguments) = options.command(
        "mosquitto_sub",
        port: broker.port,
        ["-t", topic, "-q", "1", "-v", "-C", "\(count)", "-W", "15", "-i", clientID]
    )
    let subscriber = try ChildProcess.spawn(program, arguments, outputPath: output)
    do {
        // The broker logs each subscription (log_type all).
        let subscribed = await eventually(within: .seconds(10), { broker.log }, contains: "client=\(clientID) filter=\(topic)")
        #expect(subscribed, "mosquitto_sub did not subscribe: \(broker.log)")
        try await body()
    } catch {
        await subscriber.terminate()
        throw error
    }
    let status = await subscriber.wait(timeout: .seconds(10))
    #expect(status == 0)
    let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").map(String.init)
}

/// The broker's Prometheus text.
func fetchMetrics(port: Int) async throws -> String {
    let script = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode(), end='')"
    return try await runProgram("python3", ["-c", script, "http://127.0.0.1:\(port)/metrics"]).output
}
