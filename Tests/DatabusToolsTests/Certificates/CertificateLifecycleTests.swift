import DatabusTestSupport
import DatabusTools
import Foundation
import MQTTBroker
import Testing
import X509

/// `databus certs revoke | crl | list | renew`: the index, the revocation list checked by
/// openssl, the exit codes, and the errors bad input gets.
@Suite("databus certs lifecycle", .serialized, .timeLimit(.minutes(3)))
struct CertificateLifecycleTests {
    /// Runs `databus certs ...`.
    static func certs(_ arguments: [String]) async throws -> ProgramResult {
        try await runProgramCollectingErrors(try DatabusBrokerProcess.executable(), ["certs"] + arguments)
    }

    static func serial(_ path: String) async throws -> String {
        let output = try await runProgram("openssl", ["x509", "-in", path, "-noout", "-serial"]).output
        return output.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "serial=", with: "")
    }

    @Test(
        "revoke: openssl crl -verify accepts the list, openssl verify -crl_check refuses the revoked and passes the rest",
        arguments: [false, true]
    )
    func revocationListAgreesWithOpenSSL(rsa: Bool) async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-revoke")
        defer { folder.remove() }
        let out = folder.file("site")
        let created = try await Self.certs(["create", "--out", out, "--client", "cam-1", "--client", "cam-2"] + (rsa ? ["--rsa"] : []))
        #expect(created.status == 0, "\(created.errorOutput)")
        let revokedSerial = try await Self.serial("\(out)/cam-1/cam-1.crt")

        let revoked = try await Self.certs(["revoke", "--out", out, "cam-1", "--reason", "keyCompromise"])
        #expect(revoked.status == 0, "\(revoked.errorOutput)")
        #expect(revoked.output.contains("Revoked cam-1, serial \(revokedSerial) (keyCompromise)"), "\(revoked.output)")
        #expect(revoked.output.contains("\(out)/ca/crl.pem and \(out)/broker/crl.pem"))

        let crl = "\(out)/ca/crl.pem"
        let verified = try await runProgramCollectingErrors("openssl", ["crl", "-in", crl, "-CAfile", "\(out)/ca/ca.crt", "-noout", "-verify"])
        #expect(verified.status == 0)
        #expect((verified.output + verified.errorOutput).contains("verify OK"), "\(verified.errorOutput)")
        let text = try await runProgram("openssl", ["crl", "-in", crl, "-noout", "-text"]).output
        #expect(text.contains("Version 2"), "\(text)")
        #expect(text.contains("Serial Number: \(revokedSerial)"))
        #expect(text.contains("Key Compromise"))
        #expect(text.contains("X509v3 CRL Number"))
        #expect(text.contains("X509v3 Authority Key Identifier"))
        #expect(text.contains("Next Update:"))
        #expect(!text.contains(try await Self.serial("\(out)/cam-2/cam-2.crt")))
        // The broker's copy is the same list.
        #expect(try String(contentsOfFile: crl, encoding: .utf8) == String(contentsOfFile: "\(out)/broker/crl.pem", encoding: .utf8))

        func verify(_ component: String) async throws -> ProgramResult {
            try await runProgramCollectingErrors(
                "openssl",
                ["verify", "-crl_check", "-CAfile", "\(out)/ca/ca.crt", "-CRLfile", crl, "\(out)/\(component)/\(component).crt"]
            )
        }
        let refused = try await verify("cam-1")
        #expect(refused.status != 0)
        #expect((refused.output + refused.errorOutput).contains("certificate revoked"), "\(refused.output) \(refused.errorOutput)")
        #expect(try await verify("cam-2").status == 0)
        #expect(try await verify("broker").status == 0)

        // Our broker's reader sees the same list, signed by the CA.
        let list = try #require(try CertificateRevocationList.lists(pem: String(contentsOfFile: crl, encoding: .utf8)).first)
        let ca = try Certificate(pemEncoded: String(contentsOfFile: "\(out)/ca/ca.crt", encoding: .utf8))
        #expect(list.isSigned(by: ca))
        #expect(list.revokedSerialNumbers.count == 1)

        // `openssl ca` reads our index: its own list names the same certificate.
        let copy = folder.file("copy")
        #expect(try await runProgram("cp", ["-r", out, copy]).status == 0)
        let configuration = try folder.write(
            "openssl-ca.cnf",
            """
            [ ca ]
            default_ca = databus
            [ databus ]
            database = \(copy)/ca/index.txt
            crlnumber = \(copy)/ca/crlnumber
            certificate = \(copy)/ca/ca.crt
            private_key = \(copy)/ca/ca.key
            default_md = sha256
            default_crl_days = 30
            """
        )
        let generated = try await runProgramCollectingErrors(
            "openssl",
            ["ca", "-config", configuration, "-gencrl", "-out", folder.file("openssl.crl")]
        )
        #expect(generated.status == 0, "\(generated.errorOutput)")
        let theirs = try await runProgram("openssl", ["crl", "-in", folder.file("openssl.crl"), "-noout", "-text"]).output
        #expect(theirs.contains("Serial Number: \(revokedSerial)"), "\(theirs)")
        #expect(theirs.contains("Key Compromise"))
    }

    @Test("crl re-issues the list with a higher number and a later next update; nothing revoked gives an empty list")
    func reissuedList() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-crl")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("site"))
        _ = try directory.create(CertificateRequest(clients: ["cam-1"]))
        let now = Date()
        let first = try directory.issueRevocationList(days: 10, now: now.addingTimeInterval(-86_400))
        #expect(first.revokedCount == 0)
        let empty = try await runProgram("openssl", ["crl", "-in", directory.revocationListFile, "-noout", "-text"]).output
        #expect(empty.contains("No Revoked Certificates"), "\(empty)")

        let second = try directory.issueRevocationList(days: 90, now: now)
        #expect(second.number == first.number + 1)
        #expect(second.nextUpdate.timeIntervalSince(now) > 89 * 86_400)
        let text = try await runProgram("openssl", ["crl", "-in", directory.revocationListFile, "-noout", "-text"]).output
        #expect(text.contains(String(format: "%02X", second.number)) || text.contains("\(second.number)"), "\(text)")
        let list = try #require(try CertificateRevocationList.lists(pem: String(contentsOfFile: directory.revocationListFile, encoding: .utf8)).first)
        #expect(abs((list.nextUpdate ?? .distantPast).timeIntervalSince(second.nextUpdate)) < 1)
    }

    @Test("list: exit 0 when all is well, 1 for an expiring or expired certificate or list, 2 for a folder it cannot read")
    func listExitCodes() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-list")
        defer { folder.remove() }
        let out = folder.file("site")
        #expect(try await Self.certs(["create", "--out", out, "--client", "backend"]).status == 0)
        let fine = try await Self.certs(["list", "--out", out])
        #expect(fine.status == 0, "\(fine.output) \(fine.errorOutput)")
        #expect(fine.output.contains("(CA)"))
        let backendSerial = try await Self.serial("\(out)/backend/backend.crt")
        let backendLine = fine.output.split(separator: "\n").first { $0.hasPrefix("backend ") }
        #expect(backendLine?.contains(backendSerial) == true, "\(fine.output)")
        #expect(backendLine?.contains("82") == true)
        #expect(backendLine?.hasSuffix("valid") == true)
        #expect(fine.output.contains("No revocation list yet"))

        // A camera whose certificate ends in 10 days: exit 1, unless warned only 5 days ahead.
        #expect(try await Self.certs(["create", "--out", out, "--client", "cam-short", "--days", "10"]).status == 0)
        let expiring = try await Self.certs(["list", "--out", out])
        #expect(expiring.status == 1)
        #expect(expiring.output.split(separator: "\n").contains { $0.hasPrefix("cam-short ") && $0.hasSuffix("EXPIRING") }, "\(expiring.output)")
        #expect(try await Self.certs(["list", "--out", out, "--warn-days", "5"]).status == 0)

        // Renewed: the old one no longer counts.
        #expect(try await Self.certs(["renew", "--out", out, "cam-short"]).status == 0)
        let renewed = try await Self.certs(["list", "--out", out])
        #expect(renewed.status == 0, "\(renewed.output)")
        #expect(renewed.output.contains("valid, renewed since"))

        // An expired certificate (issued two days ago for one day): exit 1; revoked, it no longer counts.
        let directory = CertificateDirectory(path: out)
        _ = try directory.create(CertificateRequest(clients: ["cam-old"], days: 1), now: Date().addingTimeInterval(-2 * 86_400))
        let expired = try await Self.certs(["list", "--out", out])
        #expect(expired.status == 1)
        #expect(expired.output.split(separator: "\n").contains { $0.hasPrefix("cam-old ") && $0.hasSuffix("EXPIRED") }, "\(expired.output)")
        #expect(try await Self.certs(["revoke", "--out", out, "cam-old", "--reason", "cessationOfOperation"]).status == 0)
        let revoked = try await Self.certs(["list", "--out", out])
        #expect(revoked.status == 0, "\(revoked.output)")
        #expect(revoked.output.contains("(cessationOfOperation)"))
        #expect(revoked.output.contains("1 revoked, next update"))

        // A revocation list that ends within the warning period is a reason to exit 1 too.
        _ = try directory.issueRevocationList(days: 3)
        let staleList = try await Self.certs(["list", "--out", out])
        #expect(staleList.status == 1)
        #expect(staleList.output.contains("databus certs crl --out"))

        // Folders it cannot read: exit 2 with the reason.
        let missing = try await Self.certs(["list", "--out", folder.file("nothing")])
        #expect(missing.status == 2)
        #expect(missing.errorOutput.contains("is not a folder made by databus certs create"), "\(missing.errorOutput)")
        try "V\tnot a date\n".write(toFile: "\(out)/ca/index.txt", atomically: true, encoding: .utf8)
        let broken = try await Self.certs(["list", "--out", out])
        #expect(broken.status == 2)
        #expect(broken.errorOutput.contains("\(out)/ca/index.txt:1: expected 6 tab-separated fields"), "\(broken.errorOutput)")
    }

    @Test("renew: a new certificate for the same CN and usage, a new key unless --keep-key; the old one stays valid and listed")
    func renewal() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-renew")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("site"))
        let created = try directory.create(CertificateRequest(hosts: ["broker.lan"], ips: ["10.0.0.5"], clients: ["cam-1"]))
        let camera = created.clients[0]
        let oldCertificate = try Certificate(pemEncoded: String(contentsOfFile: camera.certificate, encoding: .utf8))
        let oldKey = try String(contentsOfFile: camera.privateKey, encoding: .utf8)

        let renewed = try directory.renew("cam-1", days: 400)
        #expect(renewed.notes.isEmpty, "\(renewed.notes)")
        let newCertificate = try Certificate(pemEncoded: String(contentsOfFile: camera.certificate, encoding: .utf8))
        #expect(newCertificate.serialNumber != oldCertificate.serialNumber)
        #expect(newCertificate.subject == oldCertificate.subject)
        #expect(try newCertificate.extensions.extendedKeyUsage == ExtendedKeyUsage([.clientAuth]))
        #expect(try String(contentsOfFile: camera.privateKey, encoding: .utf8) != oldKey)
        #expect(newCertificate.publicKey != oldCertificate.publicKey)
        #expect(newCertificate.notValidAfter.timeIntervalSinceNow > 399 * 86_400)
        #expect(try CertificateDirectoryTests.mode(camera.privateKey) == 0o600)
        #expect(renewed.previous.serialNumber == (try await Self.serial(directory.issuedFolder + "/\(renewed.previous.serialNumber).pem")))
        // Both are in the index, neither revoked; openssl verifies the new one as a client certificate.
        let index = try CertificateIndex(parsing: String(contentsOfFile: directory.indexFile, encoding: .utf8), file: directory.indexFile)
        #expect(index.entries.filter { $0.commonName == "cam-1" }.count == 2)
        #expect(index.revoked.isEmpty)
        #expect(try await CertificateDirectoryTests.opensslVerifies(camera.certificate, ca: directory.caCertificate, purpose: "sslclient"))

        // --keep-key: same key, new certificate.
        let keyBefore = try String(contentsOfFile: camera.privateKey, encoding: .utf8)
        let kept = try directory.renew("cam-1", keepKey: true)
        #expect(kept.keptKey)
        #expect(try String(contentsOfFile: camera.privateKey, encoding: .utf8) == keyBefore)
        let keptCertificate = try Certificate(pemEncoded: String(contentsOfFile: camera.certificate, encoding: .utf8))
        #expect(keptCertificate.publicKey == newCertificate.publicKey)
        #expect(keptCertificate.serialNumber != newCertificate.serialNumber)

        // The broker keeps its names and server usage.
        _ = try directory.renew("broker")
        let broker = try Certificate(pemEncoded: String(contentsOfFile: created.broker.certificate, encoding: .utf8))
        #expect(CertificateSummary(broker).subjectAlternativeNames == ["DNS:broker.lan", "IP:10.0.0.5"])
        #expect(try await CertificateDirectoryTests.opensslVerifies(created.broker.certificate, ca: directory.caCertificate, purpose: "sslserver"))

        // A key revoked as compromised is never certified again.
        _ = try directory.revoke("cam-1", reason: .keyCompromise)
        #expect(throws: CertificateToolError.self) { try directory.renew("cam-1", keepKey: true) }
    }

    @Test("bad input gets a clear error and exit status, never a crash")
    func badInput() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-bad")
        defer { folder.remove() }
        let out = folder.file("site")
        #expect(try await Self.certs(["create", "--out", out, "--client", "cam-1"]).status == 0)
        let cases: [(arguments: [String], status: Int32, message: String)] = [
            (["revoke", "--out", out, "cam-9"], 1, "no certificate named \"cam-9\""),
            (["revoke", "--out", out, "cam-1", "--reason", "stolen"], 64, "keyCompromise"),
            (["revoke", "--out", out, "cam-1", "--serial", "xyz"], 1, "\"xyz\" is not a serial number"),
            (["revoke", "--out", out, "cam-1", "--serial", "0A0B"], 1, "has no certificate with serial 0A0B"),
            (["revoke", "--out", out, "ca"], 1, "the CA itself cannot be revoked"),
            (["revoke", "--out", out, "cam-1", "--crl-days", "0"], 1, "between 1 and 3650 days"),
            (["revoke", "--out", folder.file("none"), "cam-1"], 1, "is not a folder made by databus certs create"),
            (["renew", "--out", out, "cam-9"], 1, "no component \"cam-9\""),
            (["renew", "--out", out, "cam-1", "--days", "0"], 1, "days must be between 1 and 36500"),
            (["crl", "--out", folder.file("none")], 1, "is not a folder made by databus certs create"),
            (["enrol", "--out", out, "bad/name"], 1, "must be letters, digits"),
            (["enrol", "--out", out, "cam-2", "--password-file", folder.file("passwd")], 64, "--password-file needs --password"),
        ]
        for (arguments, status, message) in cases {
            let result = try await Self.certs(arguments)
            #expect(result.status == status, "\(arguments): \(result.status) \(result.errorOutput)")
            #expect(result.errorOutput.contains(message), "\(arguments): \(result.errorOutput)")
        }
        // A CA folder with a broken certificate or without its key.
        try "not a certificate".write(toFile: folder.file("broken-ca.crt"), atomically: true, encoding: .utf8)
        #expect(try await runProgram("cp", ["-r", out, folder.file("broken")]).status == 0)
        try "garbage".write(toFile: folder.file("broken/ca/ca.crt"), atomically: true, encoding: .utf8)
        let broken = try await Self.certs(["revoke", "--out", folder.file("broken"), "cam-1"])
        #expect(broken.status == 1)
        #expect(broken.errorOutput.contains("the CA certificate is not a PEM certificate"), "\(broken.errorOutput)")
        let brokenList = try await Self.certs(["list", "--out", folder.file("broken")])
        #expect(brokenList.status == 2)
        #expect(brokenList.errorOutput.contains("ca.crt: not a PEM certificate"), "\(brokenList.errorOutput)")
        try FileManager.default.removeItem(atPath: "\(out)/ca/ca.key")
        let keyless = try await Self.certs(["renew", "--out", out, "cam-1"])
        #expect(keyless.status == 1)
        #expect(keyless.errorOutput.contains("ca.key is missing"), "\(keyless.errorOutput)")
        // Listing needs no key.
        #expect(try await Self.certs(["list", "--out", out]).status == 0)
    }

    @Test("enrol: a camera with a password and the camera ACL lines writes its own topics and no other camera's", arguments: TestBrokerKind.allCases)
    func enrolledCamera(kind: TestBrokerKind) async throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-enrol")
        defer { folder.remove() }
        let out = folder.file("site")
        #expect(try await Self.certs(["create", "--out", out]).status == 0)
        let acl = try folder.write("acl", "user backend\ntopic read lprserver/#\n")
        let passwd = folder.file("passwd")
        let enrolled = try await Self.certs([
            "enrol", "--out", out, "camera-13", "--no-certificate", "--password", "s3cret-13", "--password-file", passwd, "--acl-file", acl,
        ])
        #expect(enrolled.status == 0, "\(enrolled.errorOutput)")
        #expect(enrolled.output.contains("Added 12 camera lines to \(acl)"), "\(enrolled.output)")
        #expect(FileManager.default.fileExists(atPath: "\(out)/camera-13/ca.crt"))
        #expect(!FileManager.default.fileExists(atPath: "\(out)/camera-13/camera-13.crt"))
        // A second camera with a certificate: the lines serve it too, none added; its password line is printed.
        let second = try await Self.certs(["enrol", "--out", out, "camera-14", "--acl-file", acl, "--password", "s3cret-14"])
        #expect(second.status == 0, "\(second.errorOutput)")
        #expect(second.output.contains("already has the camera lines"))
        let line = try #require(second.output.split(separator: "\n").first { $0.hasPrefix("camera-14:$7$101$") })
        #expect(try PasswordFile(parsing: String(line)).verify(username: "camera-14", password: Array("s3cret-14".utf8)))
        #expect(try await CertificateDirectoryTests.opensslVerifies("\(out)/camera-14/camera-14.crt", ca: "\(out)/ca/ca.crt", purpose: "sslclient"))
        let aclText = try String(contentsOfFile: acl, encoding: .utf8)
        #expect(aclText.components(separatedBy: "pattern write lprserver/cameras/%u/detection\n").count == 2, "\(aclText)")

        try CameraEnrolment.setPassword(username: "backend", password: "backend-pw", in: passwd)
        try folder.makeReadable("passwd")
        let configuration = """
            allow_anonymous false
            password_file \(passwd)
            acl_file \(acl)
            """
        try await kind.with(extraConfiguration: configuration) { broker in
            func publish(_ user: String, _ password: String, _ topic: String, _ message: String) async throws -> Int32 {
                let arguments = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-u", user, "-P", password, "-t", topic, "-m", message, "-r", "-q", "1"]
                return try await runProgramCollectingErrors("mosquitto_pub", arguments).status
            }
            #expect(try await publish("camera-13", "s3cret-13", "lprserver/cameras/camera-13/health", "own") == 0)
            // Another camera's topic: acknowledged (3.1.1) and dropped.
            _ = try await publish("camera-13", "s3cret-13", "lprserver/cameras/camera-14/health", "forged")
            #expect(try await publish("camera-13", "wrong", "lprserver/cameras/camera-13/health", "x") != 0)
            let seen = try await runProgramCollectingErrors(
                "mosquitto_sub",
                ["-h", "127.0.0.1", "-p", "\(broker.port)", "-u", "backend", "-P", "backend-pw", "-t", "lprserver/#", "-v", "-W", "2"]
            )
            #expect(seen.output.contains("lprserver/cameras/camera-13/health own"), "\(seen.output) \(seen.errorOutput)")
            #expect(!seen.output.contains("forged"), "\(seen.output)")
        }
    }

    @Test("folders made before the index existed are listed and can be revoked")
    func adoptsExistingFolders() throws {
        let folder = try TemporaryDirectory(prefix: "databus-certs-adopt")
        defer { folder.remove() }
        let directory = CertificateDirectory(path: folder.file("site"))
        _ = try directory.create(CertificateRequest(clients: ["cam-1"]))
        try FileManager.default.removeItem(atPath: directory.indexFile)
        try FileManager.default.removeItem(atPath: directory.issuedFolder)
        let inventory = try CertificateInventory(directory: directory)
        #expect(Set(inventory.certificates.map(\.commonName)) == ["localhost", "cam-1"])
        let report = try directory.revoke("cam-1")
        #expect(report.revoked.map(\.commonName) == ["cam-1"])
        #expect(report.revocationList.revokedCount == 1)
    }
}
