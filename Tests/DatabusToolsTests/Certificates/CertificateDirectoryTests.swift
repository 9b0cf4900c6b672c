import DatabusTestSupport
import DatabusTools
import Foundation
import Testing
import X509

/// `databus certs create`: the files, their extensions and modes, reuse, RSA, request files.
@Suite("databus certs create")
struct CertificateDirectoryTests {
    static func certificate(_ path: String) throws -> Certificate {
        try Certificate(pemEncoded: String(contentsOfFile: path, encoding: .utf8))
    }

    static func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
    }

    /// `openssl verify` with a purpose (sslserver, sslclient): the check TLS peers make.
    static func opensslVerifies(_ path: String, ca: String, purpose: String) async throws -> Bool {
        try await runProgram("openssl", ["verify", "-CAfile", ca, "-purpose", purpose, path]).status == 0
    }

    @Test("a CA, a broker and a client folder with the extensions TLS peers expect; keys 0600, the CA folder 0700")
    func createsFolders() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("out"))
        let report = try directory.create(CertificateRequest(clients: ["backend"]))
        #expect(report.createdCA)
        #expect(report.broker.created && report.clients.map(\.created) == [true])

        let ca = try Self.certificate(directory.caCertificate)
        #expect(try ca.extensions.basicConstraints == .isCertificateAuthority(maxPathLength: 0))
        #expect(try ca.extensions.keyUsage == KeyUsage(keyCertSign: true, cRLSign: true))
        #expect(ca.subject == ca.issuer)
        #expect(ca.notValidAfter.timeIntervalSinceNow > 3_649 * 86_400)

        let broker = try Self.certificate(report.broker.certificate)
        #expect(broker.issuer == ca.subject)
        #expect(try broker.extensions.basicConstraints == .notCertificateAuthority)
        #expect(try broker.extensions.keyUsage == KeyUsage(digitalSignature: true))
        #expect(try broker.extensions.extendedKeyUsage == ExtendedKeyUsage([.serverAuth]))
        #expect(try broker.extensions.authorityKeyIdentifier?.keyIdentifier == ca.extensions.subjectKeyIdentifier?.keyIdentifier)
        #expect(try broker.extensions.subjectKeyIdentifier != nil)
        #expect(CertificateSummary(broker).subjectAlternativeNames == ["DNS:localhost", "IP:127.0.0.1", "IP:::1"])
        #expect(broker.notValidAfter.timeIntervalSinceNow > 824 * 86_400 && broker.notValidAfter.timeIntervalSinceNow < 826 * 86_400)

        let backend = try Self.certificate(report.clients[0].certificate)
        #expect(backend.subject == (try DistinguishedName { CommonName("backend") }))
        #expect(try backend.extensions.extendedKeyUsage == ExtendedKeyUsage([.clientAuth]))
        #expect(try backend.extensions.subjectAlternativeNames == nil)

        // Each component folder carries the CA certificate, byte for byte.
        let caBytes = try Data(contentsOf: URL(fileURLWithPath: directory.caCertificate))
        for component in [report.broker] + report.clients {
            #expect(try Data(contentsOf: URL(fileURLWithPath: component.caCertificate)) == caBytes)
            #expect(try Self.mode(component.privateKey) == 0o600)
            #expect(try Self.mode(component.certificate) == 0o644)
        }
        #expect(try Self.mode(directory.caKey) == 0o600)
        #expect(try Self.mode(directory.caFolder) == 0o700)

        #expect(try await Self.opensslVerifies(report.broker.certificate, ca: directory.caCertificate, purpose: "sslserver"))
        #expect(try await Self.opensslVerifies(report.clients[0].certificate, ca: directory.caCertificate, purpose: "sslclient"))
        // The purposes are not interchangeable.
        #expect(try await !Self.opensslVerifies(report.clients[0].certificate, ca: directory.caCertificate, purpose: "sslserver"))
        // The key matches the certificate.
        let keyDigest = try await runProgram("openssl", ["pkey", "-in", report.broker.privateKey, "-pubout"]).output
        let certificateDigest = try await runProgram("openssl", ["x509", "-in", report.broker.certificate, "-noout", "-pubkey"]).output
        #expect(!keyDigest.isEmpty && keyDigest == certificateDigest)
    }

    @Test("a second run reuses the CA and adds a client signed by it; nothing that exists is overwritten")
    func reusesTheCA() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("out"))
        let first = try directory.create(CertificateRequest(hosts: ["broker.lan"], ips: ["10.0.0.5"], clients: ["backend"]))
        let files = [directory.caCertificate, directory.caKey, first.broker.certificate, first.broker.privateKey, first.clients[0].privateKey]
        let before = try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }

        let second = try directory.create(CertificateRequest(hosts: ["other.lan"], clients: ["backend", "gpio-handler"]))
        #expect(!second.createdCA)
        #expect(!second.broker.created)
        #expect(second.clients.map(\.created) == [false, true])
        #expect(second.notes.contains { $0.contains("broker exists and was kept") })
        #expect(try files.map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == before)

        let gpio = try Self.certificate(second.clients[1].certificate)
        #expect(gpio.issuer == (try Self.certificate(directory.caCertificate)).subject)
        #expect(try await Self.opensslVerifies(second.clients[1].certificate, ca: directory.caCertificate, purpose: "sslclient"))
        // The broker kept its first names.
        #expect(CertificateSummary(try Self.certificate(first.broker.certificate)).subjectAlternativeNames == ["DNS:broker.lan", "IP:10.0.0.5"])

        // Half a CA is an error, not a new CA over the old key.
        try FileManager.default.removeItem(atPath: directory.caCertificate)
        #expect(throws: CertificateToolError.self) { try directory.create(CertificateRequest(clients: ["late"])) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: directory.caKey)) == before[1])
    }

    @Test("--rsa: RSA 2048 keys, keyEncipherment on leaves, RSA signatures that OpenSSL verifies")
    func rsaKeys() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("out"))
        let report = try directory.create(CertificateRequest(clients: ["ai-engine"], days: 30, rsa: true))
        let summary = try #require(try CertificateSummary.read(file: report.clients[0].certificate).first)
        #expect(summary.keyType == "RSA 2048")
        #expect(try CertificateSummary.read(file: directory.caCertificate).first?.keyType == "RSA 2048")
        let client = try Self.certificate(report.clients[0].certificate)
        #expect(try client.extensions.keyUsage == KeyUsage(digitalSignature: true, keyEncipherment: true))
        #expect(client.signatureAlgorithm == .sha256WithRSAEncryption)
        #expect(client.notValidAfter.timeIntervalSinceNow < 31 * 86_400)
        #expect(try await Self.opensslVerifies(report.clients[0].certificate, ca: directory.caCertificate, purpose: "sslclient"))
        #expect(try await Self.opensslVerifies(report.broker.certificate, ca: directory.caCertificate, purpose: "sslserver"))
    }

    @Test("a JSON request lists hosts, ips, clients, days and rsa; unknown fields and wrong types are refused")
    func requestFile() throws {
        let request = try CertificateRequest.read(
            json: Data(#"{"hosts": ["broker.lan"], "ips": ["10.0.0.5", "fd00::5"], "clients": ["backend", "gpio"], "days": 90, "rsa": true}"#.utf8)
        )
        #expect(
            request == CertificateRequest(hosts: ["broker.lan"], ips: ["10.0.0.5", "fd00::5"], clients: ["backend", "gpio"], days: 90, rsa: true)
        )
        #expect(request.keyType == .rsa2048)
        #expect(try CertificateRequest.read(json: Data("{}".utf8)).brokerIPs == ["127.0.0.1", "::1"])

        let merged = request.merged(with: CertificateRequest(clients: ["gpio", "camera-1"], days: 10))
        #expect(merged.clients == ["backend", "gpio", "camera-1"])
        #expect(merged.days == 10 && merged.rsa == true)

        for bad in [#"{"client": ["x"]}"#, #"{"days": "ten"}"#, #"{"rsa": 1}"#, #"{"hosts": "broker"}"#, "[]", "not json"] {
            #expect(throws: CertificateToolError.self, "\(bad)") { try CertificateRequest.read(json: Data(bad.utf8)) }
        }
    }

    @Test("names that cannot be a folder, a CN or a SAN are refused before anything is written")
    func refusesBadNames() throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("out"))
        let bad = [
            CertificateRequest(clients: ["ca"]), CertificateRequest(clients: ["broker"]), CertificateRequest(clients: ["../escape"]),
            CertificateRequest(clients: ["a", "a"]), CertificateRequest(clients: [""]), CertificateRequest(ips: ["300.1.1.1"]),
            CertificateRequest(hosts: ["bad host"]), CertificateRequest(days: 0),
        ]
        for request in bad {
            #expect(throws: CertificateToolError.self, "\(request)") { try directory.create(request) }
        }
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }
}
