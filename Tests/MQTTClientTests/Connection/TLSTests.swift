import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// Certificates made with `openssl` once for the suite: a CA, a server certificate for
/// 127.0.0.1 and localhost, a client certificate, and a second CA that signed nothing here.
actor CertificateFixtures {
    static let shared = CertificateFixtures()

    struct Files: Sendable {
        let directory: TemporaryDirectory
        var ca: String { directory.file("ca.crt") }
        var otherCA: String { directory.file("other-ca.crt") }
        var serverCertificate: String { directory.file("server.crt") }
        var serverKey: String { directory.file("server.key") }
        /// A server certificate for broker.example.com only.
        var misnamedCertificate: String { directory.file("misnamed.crt") }
        var misnamedKey: String { directory.file("misnamed.key") }
        var clientCertificate: String { directory.file("client.crt") }
        var clientKey: String { directory.file("client.key") }
        /// `openssl x509 -fingerprint -sha256` of the server certificate.
        let serverFingerprint: String
    }

    private var files: Files?

    func make() async throws -> Files {
        if let files { return files }
        let directory = try TemporaryDirectory(prefix: "databus-tls")
        func openssl(_ arguments: [String]) async throws -> String {
            let (status, output) = try await runProgram("openssl", arguments)
            guard status == 0 else { throw InteropError("openssl \(arguments.joined(separator: " ")) failed with \(status)") }
            return output
        }
        let ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            _ = try await openssl(
                ["req", "-x509"] + ecKey + [
                    "-keyout", directory.file("\(ca).key"), "-out", directory.file("\(ca).crt"), "-days", "2", "-subj", "/CN=Databus test \(ca)",
                ]
            )
        }
        try directory.write("server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        try directory.write("client.ext", "extendedKeyUsage=clientAuth\n")
        try directory.write("misnamed.ext", "subjectAltName=DNS:broker.example.com\nextendedKeyUsage=serverAuth\n")
        for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=camera-17"), ("misnamed", "/CN=broker.example.com")] {
            _ = try await openssl(
                ["req"] + ecKey + ["-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).csr"), "-subj", subject]
            )
            _ = try await openssl([
                "x509", "-req", "-in", directory.file("\(name).csr"), "-CA", directory.file("ca.crt"), "-CAkey", directory.file("ca.key"),
                "-CAcreateserial", "-out", directory.file("\(name).crt"), "-days", "2", "-extfile", directory.file("\(name).ext"),
            ])
        }
        for file in ["ca.crt", "other-ca.crt", "server.crt", "server.key", "client.crt", "client.key", "misnamed.crt", "misnamed.key"] {
            try directory.makeReadable(file)
        }
        let fingerprint = try await openssl(["x509", "-in", directory.file("server.crt"), "-noout", "-fingerprint", "-sha256"])
        let made = Files(
            directory: directory,
            serverFingerprint: String(fingerprint.split(separator: "=").last ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        )
        files = made
        return made
    }
}

/// TLS and mutual TLS against mosquitto with certificates made by openssl.
@Suite("TLS against mosquitto", .serialized, .timeLimit(.minutes(2)))
struct TLSTests {
    static func withTLSBroker(misnamed: Bool = false, _ body: (Mosquitto, CertificateFixtures.Files) async throws -> Void) async throws {
        let files = try await CertificateFixtures.shared.make()
        let configuration = """
            cafile \(files.ca)
            certfile \(misnamed ? files.misnamedCertificate : files.serverCertificate)
            keyfile \(misnamed ? files.misnamedKey : files.serverKey)
            require_certificate true
            tls_version tlsv1.2
            """
        try await Mosquitto.with(extraConfiguration: configuration) { broker in try await body(broker, files) }
    }

    static func configuration(
        _ broker: Mosquitto,
        _ files: CertificateFixtures.Files,
        host: String = "127.0.0.1",
        ca: String? = nil
    ) -> MQTTClient.Configuration {
        var tls = MQTTClient.TLS(trust: .caFile(ca ?? files.ca), certificateFile: files.clientCertificate, privateKeyFile: files.clientKey)
        tls.verifiesHostname = true
        var configuration = MQTTClient.Configuration(host: host, port: broker.port, clientIdentifier: "camera-17", tls: tls)
        configuration.reconnect = .disabled
        configuration.connectTimeout = .seconds(5)
        return configuration
    }

    @Test("mutual TLS with hostname verification: publish and subscribe over TLS", arguments: ["127.0.0.1", "localhost"])
    func mutualTLS(host: String) async throws {
        try await Self.withTLSBroker { broker, files in
            try await withClient(Self.configuration(broker, files, host: host)) { client in
                let echo = try await client.subscribe(to: "tls/echo", qos: .exactlyOnce)
                let result = try await client.publish(topic: "tls/echo", payload: "over TLS", qos: .exactlyOnce)
                #expect(result.isSuccess)
                let received = try await collect(echo, count: 1)
                #expect(received.first?.payloadString == "over TLS")
            }
        }
    }

    @Test("a broker certificate from another CA is refused")
    func wrongCA() async throws {
        try await Self.withTLSBroker { broker, files in
            let error = await Self.connectionError(Self.configuration(broker, files, ca: files.otherCA))
            #expect(error?.code == .connectionFailed)
            #expect(error?.message.contains("TLS") == true)
        }
    }

    @Test("a broker certificate for another name is refused; naming the server it is for connects")
    func wrongHostname() async throws {
        try await Self.withTLSBroker(misnamed: true) { broker, files in
            let error = await Self.connectionError(Self.configuration(broker, files))
            #expect(error?.code == .connectionFailed)
            var named = Self.configuration(broker, files)
            named.tls?.serverName = "broker.example.com"
            try await withClient(named) { client in
                let result = try await client.publish(topic: "named", payload: "x", qos: .atLeastOnce)
                #expect(result.isSuccess)
            }
        }
    }

    @Test("without a client certificate the broker refuses the connection")
    func missingClientCertificate() async throws {
        try await Self.withTLSBroker { broker, files in
            var configuration = Self.configuration(broker, files)
            configuration.tls?.certificateFile = nil
            configuration.tls?.privateKeyFile = nil
            let error = await Self.connectionError(configuration)
            #expect(error?.code == .connectionFailed)
        }
    }

    @Test("insecure turns verification off: another CA connects")
    func insecure() async throws {
        try await Self.withTLSBroker { broker, files in
            var configuration = Self.configuration(broker, files, ca: files.otherCA)
            configuration.tls?.insecure = true
            try await withClient(configuration) { client in
                let result = try await client.publish(topic: "insecure", payload: "x", qos: .atLeastOnce)
                #expect(result.isSuccess)
            }
        }
    }

    @Test("a pinned SHA-256 that matches connects; one that does not is refused before CONNECT")
    func pinning() async throws {
        try await Self.withTLSBroker { broker, files in
            let pin = try #require(MQTTClient.TLS.sha256Pin(hex: files.serverFingerprint))
            var pinned = Self.configuration(broker, files)
            pinned.tls?.pinnedServerCertificateSHA256 = pin
            try await withClient(pinned) { client in
                let result = try await client.publish(topic: "pinned", payload: "x", qos: .atLeastOnce)
                #expect(result.isSuccess)
            }
            var wrong = Self.configuration(broker, files)
            wrong.tls?.pinnedServerCertificateSHA256 = pin.map { $0 ^ 0xFF }
            let error = await Self.connectionError(wrong)
            #expect(error?.code == .connectionFailed)
            #expect(error?.message.contains("pinned") == true)
        }
    }

    @Test("a certificate's pin is the SHA-256 fingerprint openssl prints for it")
    func sha256() async throws {
        let files = try await CertificateFixtures.shared.make()
        let der = try await runProgram(
            "openssl",
            ["x509", "-in", files.serverCertificate, "-outform", "DER", "-out", files.directory.file("server.der")]
        )
        #expect(der.status == 0)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: files.directory.file("server.der"))))
        let pin = MQTTClient.TLS.sha256(ofCertificate: bytes)
        #expect(pin.count == 32)
        #expect(pin == MQTTClient.TLS.sha256Pin(hex: files.serverFingerprint))
    }

    static func connectionError(_ configuration: MQTTClient.Configuration) async -> MQTTClientError? {
        let client = MQTTClient(configuration: configuration, logger: testLogger)
        do {
            try await client.connect()
            await client.disconnect()
            return nil
        } catch {
            return error as? MQTTClientError
        }
    }
}
