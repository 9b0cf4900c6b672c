import DatabusTestSupport
import Foundation

/// Certificates made with `openssl` once per test process, the way users make them:
/// a CA run with `openssl ca` (so it can revoke and issue a CRL), a broker certificate for
/// 127.0.0.1 and localhost, good, expired and revoked client certificates, and a second CA
/// with a client of its own.
actor OpenSSLCertificates {
    static let shared = OpenSSLCertificates()

    struct Files: Sendable {
        let directory: TemporaryDirectory
        var ca: String { directory.file("ca/ca.crt") }
        var caKey: String { directory.file("ca/ca.key") }
        var crl: String { directory.file("ca/crl.pem") }
        var serverCertificate: String { directory.file("server.crt") }
        var serverKey: String { directory.file("server.key") }
        /// CN=camera-17, valid.
        var client: (certificate: String, key: String) { pair("camera-17") }
        /// CN=camera-old, valid from 2020-01-01 to 2020-01-02.
        var expired: (certificate: String, key: String) { pair("camera-old") }
        /// CN=camera-stolen, revoked in `crl`.
        var revoked: (certificate: String, key: String) { pair("camera-stolen") }
        /// A subject with every character RFC 2253 escapes, and non-ASCII letters.
        var oddSubject: (certificate: String, key: String) { pair("odd") }
        var otherCA: String { directory.file("other-ca/ca.crt") }
        /// CN=camera-17 again, but from the other CA.
        var foreignClient: (certificate: String, key: String) { pair("foreign") }

        private func pair(_ name: String) -> (certificate: String, key: String) {
            (directory.file("\(name).crt"), directory.file("\(name).key"))
        }
    }

    private var files: Files?

    func make() async throws -> Files {
        if let files { return files }
        let directory = try TemporaryDirectory(prefix: "databus-broker-tls")
        func openssl(_ arguments: [String]) async throws {
            let result = try await runProgramCollectingErrors("openssl", arguments)
            guard result.status == 0 else {
                throw InteropError("openssl \(arguments.joined(separator: " ")) failed with \(result.status): \(result.errorOutput)")
            }
        }
        let ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

        for ca in ["ca", "other-ca"] {
            let folder = directory.file(ca)
            try FileManager.default.createDirectory(atPath: folder + "/issued", withIntermediateDirectories: true)
            try "".write(toFile: folder + "/index.txt", atomically: true, encoding: .utf8)
            try "1000\n".write(toFile: folder + "/serial", atomically: true, encoding: .utf8)
            try "1000\n".write(toFile: folder + "/crlnumber", atomically: true, encoding: .utf8)
            try """
            [req]
            distinguished_name = request_name
            [request_name]
            [ca]
            default_ca = test_ca
            [test_ca]
            dir = \(folder)
            database = $dir/index.txt
            new_certs_dir = $dir/issued
            certificate = $dir/ca.crt
            private_key = $dir/ca.key
            serial = $dir/serial
            crlnumber = $dir/crlnumber
            default_md = sha256
            default_days = 2
            default_crl_days = 2
            policy = any_name
            unique_subject = no
            x509_extensions = client
            [any_name]
            commonName = supplied
            countryName = optional
            organizationName = optional
            organizationalUnitName = optional
            emailAddress = optional
            [client]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = clientAuth
            [server]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = serverAuth
            subjectAltName = IP:127.0.0.1, DNS:localhost
            [ca_extensions]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash
            """.write(toFile: folder + "/ca.cnf", atomically: true, encoding: .utf8)
            try await openssl(
                ["req", "-x509"] + ecKey + [
                    "-keyout", folder + "/ca.key", "-out", folder + "/ca.crt", "-days", "2", "-subj", "/O=Databus tests/CN=Test \(ca)",
                    "-config", folder + "/ca.cnf", "-extensions", "ca_extensions",
                ]
            )
        }

        func issue(
            _ name: String,
            subject: String,
            ca: String = "ca",
            extensions: String = "client",
            dates: [String] = ["-days", "2"]
        )
            async throws
        {
            try await openssl(
                ["req"] + ecKey + [
                    "-utf8", "-keyout", directory.file("\(name).key"), "-out", directory.file("\(name).csr"), "-subj", subject,
                ]
            )
            try await openssl(
                [
                    "ca", "-batch", "-notext", "-utf8", "-preserveDN", "-config", directory.file("\(ca)/ca.cnf"), "-extensions", extensions,
                    "-in", directory.file("\(name).csr"), "-out", directory.file("\(name).crt"),
                ] + dates
            )
        }
        try await issue("server", subject: "/CN=localhost", extensions: "server")
        try await issue("camera-17", subject: "/O=Databus tests/CN=camera-17")
        try await issue("camera-old", subject: "/CN=camera-old", dates: ["-startdate", "20200101000000Z", "-enddate", "20200102000000Z"])
        try await issue("camera-stolen", subject: "/CN=camera-stolen")
        try await issue("odd", subject: "/C=DE/O=Acme, Inc. <R\\+D>/OU=Zoë;Qa/CN=#cam \"7\" \\\\ ü /emailAddress=ops@example.com")
        try await issue("foreign", subject: "/O=Databus tests/CN=camera-17", ca: "other-ca")
        try await openssl(["ca", "-config", directory.file("ca/ca.cnf"), "-revoke", directory.file("camera-stolen.crt")])
        try await openssl(["ca", "-config", directory.file("ca/ca.cnf"), "-gencrl", "-out", directory.file("ca/crl.pem")])

        // databus broker runs as the test user, mosquitto drops to its own: everything readable.
        for name in try FileManager.default.subpathsOfDirectory(atPath: directory.path) {
            try directory.makeReadable(name)
        }
        let made = Files(directory: directory)
        files = made
        return made
    }
}

/// mosquitto_pub and mosquitto_sub over TLS.
struct TLSClientOptions: Sendable {
    var caFile: String
    var certificate: String?
    var key: String?
    /// Extra arguments (`--tls-version`, `-V`, ...).
    var extra: [String] = []
    /// An OpenSSL configuration the client process reads (`OPENSSL_CONF`), to cap its TLS version.
    var openSSLConfiguration: String?

    init(caFile: String, certificate: String? = nil, key: String? = nil) {
        self.caFile = caFile
        self.certificate = certificate
        self.key = key
    }

    init(caFile: String, client: (certificate: String, key: String)) {
        self.init(caFile: caFile, certificate: client.certificate, key: client.key)
    }

    func arguments(port: Int) -> [String] {
        var arguments = ["-h", "127.0.0.1", "-p", "\(port)", "--cafile", caFile]
        if let certificate { arguments += ["--cert", certificate] }
        if let key { arguments += ["--key", key] }
        return arguments + extra
    }

    /// The program and arguments to spawn `tool` with (through `env` when an OpenSSL configuration is set).
    func command(_ tool: String, port: Int, _ arguments: [String]) -> (String, [String]) {
        let all = self.arguments(port: port) + arguments
        guard let openSSLConfiguration else { return (tool, all) }
        return ("env", ["OPENSSL_CONF=\(openSSLConfiguration)", tool] + all)
    }
}

/// Publishes one QoS 1 message with mosquitto_pub; status 0 means the broker took it.
func mosquittoPublish(
    port: Int,
    _ options: TLSClientOptions,
    topic: String = "tls/test",
    message: String = "hello",
    clientID: String? = nil
)
    async throws -> ProgramResult
{
    var arguments = ["-t", topic, "-m", message, "-q", "1"]
    if let clientID { arguments += ["-i", clientID] }
    let (program, all) = options.command("mosquitto_pub", port: port, arguments)
    return try await runProgramCollectingErrors(program, all, timeout: .seconds(10))
}

/// Waits until `text` appears in what `read` returns, up to `timeout`.
func eventually(within timeout: Duration = .seconds(5), _ read: () async -> String, contains text: String) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await read().contains(text) { return true }
        try? await Task.sleep(for: .milliseconds(25))
    }
    return false
}
