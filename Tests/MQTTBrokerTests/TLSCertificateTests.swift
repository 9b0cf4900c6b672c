import DatabusTestSupport
import Foundation
import Logging
import Testing
import X509

@testable import MQTTBroker

/// The pieces of TLS listeners that need no connection: subjects as usernames, revocation
/// lists, the username rule, handshake failure reasons, loading a listener's files.
@Suite("TLS certificates and settings")
struct TLSCertificateTests {
    static func certificate(_ path: String) throws -> Certificate {
        try Certificate(pemEncoded: String(contentsOfFile: path, encoding: .utf8))
    }

    static func opensslSubject(_ path: String) async throws -> String {
        let printed = try await runProgram("openssl", ["x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253"])
        return String(printed.output.trimmingCharacters(in: .newlines).dropFirst("subject=".count))
    }

    @Test("the subject is written exactly as OpenSSL's RFC 2253 form: order, escapes, non-ASCII bytes")
    func subjectMatchesOpenSSL() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        for path in [files.oddSubject.certificate, files.client.certificate, files.ca] {
            let identity = ClientCertificateIdentity(certificate: try Self.certificate(path))
            #expect(identity.subject == (try await Self.opensslSubject(path)))
        }
        let odd = ClientCertificateIdentity(certificate: try Self.certificate(files.oddSubject.certificate))
        #expect(odd.subject == ##"emailAddress=ops@example.com,CN=\#cam \"7\" \\ \C3\BC\ ,OU=Zo\C3\AB\;Qa,O=Acme\, Inc. \<R\+D\>,C=DE"##)
        #expect(odd.commonName == ##"#cam "7" \ ü "##)
        #expect(ClientCertificateIdentity(certificate: try Self.certificate(files.client.certificate)).commonName == "camera-17")
    }

    @Test("a CRL made by openssl ca: its revoked serial, its signature by the CA and not by another")
    func revocationList() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let lists = try CertificateRevocationList.lists(pem: String(contentsOfFile: files.crl, encoding: .utf8))
        #expect(lists.count == 1)
        let list = try #require(lists.first)
        let ca = try Self.certificate(files.ca)
        let otherCA = try Self.certificate(files.otherCA)
        let revoked = try Self.certificate(files.revoked.certificate)
        #expect(list.issuer == ca.subject)
        #expect(list.revokes(serialNumber: revoked.serialNumber.bytes))
        #expect(!list.revokes(serialNumber: try Self.certificate(files.client.certificate).serialNumber.bytes))
        #expect(list.isSigned(by: ca))
        #expect(!list.isSigned(by: otherCA))
        #expect(list.nextUpdate.map { $0 > list.thisUpdate } == true)

        #expect(throws: CertificateRevocationList.Error.self) { try CertificateRevocationList.lists(pem: "not a CRL") }
        #expect(throws: (any Error).self) { try RevocationChecker(file: files.crl, authorities: [otherCA]) }
    }

    @Test("revocation check: revoked, good, another issuer, a stale list and one not yet valid")
    func revocationChecker() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let checker = try RevocationChecker(file: files.crl, authorities: [try Self.certificate(files.ca)])
        let now = Date()
        let revoked = try Self.certificate(files.revoked.certificate)
        let good = try Self.certificate(files.client.certificate)
        let foreign = try Self.certificate(files.foreignClient.certificate)
        #expect(checker.refusal(for: revoked, now: now)?.contains("CN=camera-stolen (serial 1003) is revoked") == true)
        #expect(checker.refusal(for: good, now: now) == nil)
        #expect(checker.refusal(for: foreign, now: now)?.contains("has no revocation list of the certificate's issuer") == true)
        // default_crl_days is 2: three days on, the list is stale and everyone is refused, as OpenSSL does.
        #expect(checker.refusal(for: good, now: now.addingTimeInterval(3 * 86_400))?.contains("expired") == true)
        #expect(checker.refusal(for: good, now: now.addingTimeInterval(-3_600))?.contains("not valid before") == true)
    }

    @Test("use_identity_as_username and use_subject_as_username pick the username or refuse")
    func usernameRule() {
        var listener = BrokerConfiguration.Listener(port: 8883)
        let identity = ClientCertificateIdentity(commonName: "camera-7", subject: "CN=camera-7,O=Acme")
        // Not a TLS listener, or neither option: the certificate decides nothing.
        #expect(certificateUsername(for: listener, certificate: identity) == (nil, nil))
        listener.tls.certFile = "broker.crt"
        listener.tls.keyFile = "broker.key"
        #expect(certificateUsername(for: listener, certificate: identity) == (nil, nil))

        listener.tls.useIdentityAsUsername = true
        #expect(certificateUsername(for: listener, certificate: identity) == ("camera-7", nil))
        #expect(certificateUsername(for: listener, certificate: nil).refusal?.contains("sent no certificate") == true)
        let noCN = ClientCertificateIdentity(commonName: nil, subject: "O=Acme")
        #expect(certificateUsername(for: listener, certificate: noCN).refusal?.contains("has no CN") == true)

        // Both set: the CN wins, as in mosquitto.
        listener.tls.useSubjectAsUsername = true
        #expect(certificateUsername(for: listener, certificate: identity) == ("camera-7", nil))
        listener.tls.useIdentityAsUsername = false
        #expect(certificateUsername(for: listener, certificate: identity) == ("CN=camera-7,O=Acme", nil))
        #expect(certificateUsername(for: listener, certificate: noCN) == ("O=Acme", nil))
    }

    @Test("BoringSSL's errors become reason names and failure kinds")
    func handshakeFailureReasons() {
        let line = "Error: 268435581 error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED at /src/handshake.cc:342"
        #expect(TLSHandshakeFailure.reasonName(line) == "CERTIFICATE_VERIFY_FAILED")
        #expect(TLSHandshakeFailure.reasonName("EOF during handshake") == "EOF during handshake")
        let cases: [(String, TLSHandshakeFailure)] = [
            ("CERTIFICATE_VERIFY_FAILED", .certificateInvalid),
            ("PEER_DID_NOT_RETURN_A_CERTIFICATE", .certificateMissing),
            ("UNSUPPORTED_PROTOCOL", .protocolVersion),
            ("NO_SHARED_CIPHER", .noSharedCipher),
            ("WRONG_VERSION_NUMBER", .notTLS),
            ("HTTP_REQUEST", .notTLS),
            ("TLSV1_ALERT_UNKNOWN_CA", .refusedByClient),
            ("EOF during handshake", .closedEarly),
            ("SOMETHING_NEW", .other),
        ]
        for (reason, failure) in cases { #expect(TLSHandshakeFailure.classify(reasonText: reason) == failure, "\(reason)") }
        #expect(TLSHandshakeFailure.classify(ClientCertificateRevokedError(reason: "revoked")) == (.certificateRevoked, "revoked"))
    }

    @Test("ciphers: OpenSSL cipher strings resolve to BoringSSL's suites; what BoringSSL would refuse is an error, not a crash")
    func cipherStrings() throws {
        let single = try TLSCipherList("ECDHE-ECDSA-AES128-GCM-SHA256")
        #expect(single.suites == ["TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"])
        #expect(try TLSCipherList("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384").suites == ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"])

        // mosquitto's own default: everything but the deprecated suites, strongest first.
        let mosquittoDefault = try TLSCipherList("DEFAULT:!aNULL:!eNULL:!LOW:!EXPORT:!SSLv2:@STRENGTH")
        #expect(mosquittoDefault.suites.count == 19)
        #expect(!mosquittoDefault.suites.contains("TLS_RSA_WITH_3DES_EDE_CBC_SHA"))
        #expect(mosquittoDefault.suites.first == "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
        #expect(mosquittoDefault.suites.last?.contains("128") == true)
        #expect(mosquittoDefault.warnings.isEmpty)

        let gcm = try TLSCipherList("@SECLEVEL=2:ECDHE+AESGCM")
        #expect(
            Set(gcm.suites) == [
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        )
        #expect(gcm.warnings == ["@SECLEVEL=2 is OpenSSL's and is ignored"])
        #expect(try TLSCipherList("3DES").suites == ["TLS_RSA_WITH_3DES_EDE_CBC_SHA"])
        #expect(try TLSCipherList("HIGH:MEDIUM").warnings == ["MEDIUM names no cipher BoringSSL has"])
        // "-" turns suites off (a later "+" only moves suites that are on); naming them again puts them last.
        #expect(try TLSCipherList("ALL:-AES128:+AES128").suites.allSatisfy { !$0.contains("128") })
        let reordered = try TLSCipherList("ALL:-AES128:AES128").suites
        #expect(reordered.count == 19)
        #expect(reordered.suffix(8).allSatisfy { $0.contains("128") })

        for refused in ["NO-SUCH-CIPHER", "AES128-SHA:!AES", "@FOO", "[AES128-SHA|AES256-SHA]", "AES128=x", ""] {
            #expect(throws: TLSCipherList.Error.self, "\(refused)") { try TLSCipherList(refused) }
        }
    }

    @Test("a listener's files: each bad one is named by its key; a good set loads with its warnings")
    func loadingFiles() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        var settings = TLSSettings()
        settings.certFile = files.serverCertificate
        settings.keyFile = files.serverKey
        settings.caFile = files.ca
        settings.requireCertificate = true
        settings.crlFile = files.crl
        let loaded = try ListenerTLS.load(settings, name: "listener 8883")
        #expect(loaded.revocation != nil)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.certificate.map { ClientCertificateIdentity.rfc2253($0.subject) } == "CN=localhost")

        func failure(_ change: (inout TLSSettings) -> Void) -> TLSSetupError? {
            var changed = settings
            change(&changed)
            do {
                _ = try ListenerTLS.load(changed, name: "listener 8883")
                return nil
            } catch {
                return error
            }
        }
        #expect(failure { $0.certFile = "/nonexistent/broker.crt" }?.key == "certfile")
        #expect(failure { $0.certFile = "/nonexistent/broker.crt" }?.message.contains("no such file") == true)
        #expect(failure { $0.keyFile = files.ca }?.key == "keyfile")
        #expect(failure { $0.keyFile = files.client.key }?.description.contains("listener 8883") == true)
        #expect(failure { $0.caFile = files.serverKey }?.key == "cafile")
        #expect(failure { $0.crlFile = files.ca }?.key == "crlfile")
        #expect(failure { $0.caFile = files.otherCA }?.message.contains("comes from no CA") == true)
        #expect(failure { $0.ciphersTLS13 = "TLS_AES_999_SHA" }?.key == "ciphers_tls1.3")
        #expect(failure { $0.ciphers = "NO-SUCH-CIPHER" }?.key == "ciphers")

        var restricted = settings
        restricted.ciphersTLS13 = "TLS_AES_256_GCM_SHA384"
        #expect(try ListenerTLS.load(restricted, name: "l").warnings.first?.contains("ciphers_tls1.3 is not applied") == true)
        var optional = settings
        optional.requireCertificate = false
        #expect(try ListenerTLS.load(optional, name: "l").warnings == ["crlfile is only used with require_certificate true"])
    }

    @Test("reload: per-listener settings apply; changing a listener's binding needs a restart")
    func reloadListeners() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        var configuration = BrokerConfiguration.testing()
        configuration.listeners[0].tls.certFile = files.serverCertificate
        configuration.listeners[0].tls.keyFile = files.serverKey
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await broker.start()

        var security = configuration
        security.listeners[0].tls.caFile = files.ca
        security.listeners[0].tls.requireCertificate = true
        security.listeners[0].tls.useIdentityAsUsername = true
        security.listeners[0].allowAnonymous = false
        let afterSecurity = try await broker.reload(security)
        #expect(afterSecurity == [])

        var rebound = security
        rebound.listeners[0].maxConnections = 5
        let afterRebound = try await broker.reload(rebound)
        #expect(afterRebound == ["listeners"])
        var plain = security
        plain.listeners[0].tls = TLSSettings()
        let afterPlain = try await broker.reload(plain)
        #expect(afterPlain == ["listeners"])
        // A broken file is reported by the log and leaves the listener as it was.
        var broken = security
        broken.listeners[0].tls.keyFile = "/nonexistent/broker.key"
        let afterBroken = try await broker.reload(broken)
        #expect(afterBroken == [])
        await broker.shutdown()
    }
}
