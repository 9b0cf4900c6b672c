import DatabusTestSupport
import DatabusTools
import Foundation
import Testing

/// The `databus certs` executable, and real mosquitto with the files it makes.
@Suite("databus certs command", .serialized, .timeLimit(.minutes(2)))
struct CertsCommandTests {
    @Test("create prints the mosquitto.conf lines for the files; show prints subject, SANs, issuer, validity, serial, key type")
    func createAndShow() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-cli")
        defer { folder.remove() }
        let executable = try DatabusBrokerProcess.executable()
        let request = try folder.write("request.json", #"{"hosts": ["broker.lan"], "clients": ["backend"]}"#)
        let out = folder.file("site")
        let created = try await runProgramCollectingErrors(
            executable,
            ["certs", "create", "--out", out, "--request", request, "--ip", "10.0.0.5", "--client", "gpio"]
        )
        #expect(created.status == 0, "\(created.errorOutput)")
        for line in [
            "cafile \(out)/broker/ca.crt", "certfile \(out)/broker/broker.crt", "keyfile \(out)/broker/broker.key", "require_certificate true",
            "use_identity_as_username true",
        ] {
            #expect(created.output.contains(line + "\n"), "missing \(line) in \(created.output)")
        }
        #expect(created.output.contains("Issued gpio: \(out)/gpio/"))
        #expect(created.output.contains("# crlfile \(out)/broker/crl.pem   (once databus certs revoke or crl has written it)\n"))

        let shown = try await runProgramCollectingErrors(executable, ["certs", "show", "\(out)/broker/broker.crt"])
        #expect(shown.status == 0, "\(shown.errorOutput)")
        #expect(shown.output.contains("Subject:     CN=broker.lan\n"))
        #expect(shown.output.contains("SANs:        DNS:broker.lan, IP:10.0.0.5\n"))
        #expect(shown.output.contains("Issuer:      CN=Databus CA "))
        #expect(shown.output.contains("Key:         ECDSA P-256\n"))
        #expect(shown.output.contains("(valid, 82"))
        // Serial and fingerprint as openssl prints them.
        let serial = try await runProgram("openssl", ["x509", "-in", "\(out)/broker/broker.crt", "-noout", "-serial"]).output
        let hexSerial = serial.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
        let shownSerial = shown.output.split(separator: "\n").first { $0.hasPrefix("Serial:") }?.split(separator: " ").last
        #expect(shownSerial?.replacingOccurrences(of: ":", with: "") == hexSerial, "\(shown.output) vs \(hexSerial)")
        let fingerprint = try await runProgram("openssl", ["x509", "-in", "\(out)/broker/broker.crt", "-noout", "-fingerprint", "-sha256"]).output
        #expect(shown.output.contains("SHA-256:     \(fingerprint.split(separator: "=").last!.trimmingCharacters(in: .whitespacesAndNewlines))"))

        let missing = try await runProgramCollectingErrors(executable, ["certs", "show", "\(out)/broker/broker.key"])
        #expect(missing.status != 0)
        #expect(missing.errorOutput.contains("no CERTIFICATE in the file"))
        let refused = try await runProgramCollectingErrors(executable, ["certs", "create", "--out", out, "--client", "ca"])
        #expect(refused.status != 0)
        #expect(refused.errorOutput.contains("client name \"ca\""))
    }

    @Test("mosquitto runs with databus certs' files: a client with its folder gets in, one without a certificate does not")
    func mosquittoAcceptsTheFiles() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-mosquitto")
        defer { folder.remove() }
        let report = try CertificateDirectory(path: folder.file("site")).create(CertificateRequest(clients: ["backend"]))
        // mosquitto drops from root to its own user: let it read the broker's key.
        for path in [folder.file("site"), report.broker.folder, report.broker.privateKey] {
            try FileManager.default.setAttributes([.posixPermissions: path.hasSuffix(".key") ? 0o644 : 0o755], ofItemAtPath: path)
        }
        let configuration = """
            cafile \(report.broker.caCertificate)
            certfile \(report.broker.certificate)
            keyfile \(report.broker.privateKey)
            require_certificate true
            use_identity_as_username true
            """
        try await Mosquitto.with(extraConfiguration: configuration) { mosquitto in
            let backend = report.clients[0]
            let base = [
                "-h", "127.0.0.1", "-p", "\(mosquitto.port)", "--cafile", backend.caCertificate, "-t", "certs/test", "-m", "hello", "-q", "1",
            ]
            let accepted = try await runProgramCollectingErrors("mosquitto_pub", base + ["--cert", backend.certificate, "--key", backend.privateKey])
            #expect(accepted.status == 0, "\(accepted.errorOutput)")
            let refused = try await runProgramCollectingErrors("mosquitto_pub", base)
            #expect(refused.status != 0)
            // Hostname verification passed against the default SANs (the client checks 127.0.0.1).
            let log = (try? String(contentsOf: mosquitto.directory.appendingPathComponent("mosquitto.log"), encoding: .utf8)) ?? ""
            #expect(log.contains("as backend") || log.contains("u'backend'"), "mosquitto took the CN as the username: \(log)")
        }
    }
}
