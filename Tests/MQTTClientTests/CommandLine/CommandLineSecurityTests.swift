import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import Testing

/// `--jwt-command` and the TLS flags of `databus pub` and `databus sub` against mosquitto.
@Suite("databus pub and sub: tokens and TLS", .serialized, .timeLimit(.minutes(2)))
struct CommandLineSecurityTests {
    @Test("--jwt-command runs again before the reconnect, so the expired token is not reused")
    func jwtCommandOnReconnect() async throws {
        let directory = try TemporaryDirectory(prefix: "databus-cli-tokens")
        defer { directory.remove() }
        let authority = TokenAuthority(directory: directory)
        try await authority.rotate()
        let tokenFile = directory.file("token")
        let callsFile = directory.file("calls")
        try directory.write("token", TokenAuthority.token(authority.currentGeneration))
        let configuration = "allow_anonymous false\npassword_file \(authority.passwordFile)\n\(Mosquitto.logSubscriptions)"
        try await Mosquitto.with(extraConfiguration: configuration) { broker in
            try await CommandRunner.with { runner in
                let subscriber = try runner.databus([
                    "sub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "lprserver/cameras/17/command", "-q", "1", "-v",
                    "-i", "camera-17-commands", "-u", "camera-17", "--jwt-command", "echo call >> '\(callsFile)'; cat '\(tokenFile)'",
                ])
                try await broker.waitForSubscriptions(["camera-17-commands"])
                #expect(Self.lines(callsFile) == 1)

                // The token expires and a new one is issued; the broker restarts and knows only the new one.
                try await authority.rotate()
                try directory.write("token", TokenAuthority.token(authority.currentGeneration))
                await broker.terminate()
                try await broker.restart()
                try await withDeadline(.seconds(15), "the subscriber to reconnect and subscribe again") {
                    while broker.subscriptionCount(of: "camera-17-commands") < 2 { try await Task.sleep(for: .milliseconds(20)) }
                }
                var configuration = MQTTClient.Configuration.test(broker, id: "lpr-server")
                configuration.credentialsProvider = { authority.fetch() }
                try await withClient(configuration) { server in
                    try await server.publish(topic: "lprserver/cameras/17/command", payload: "reboot", qos: .atLeastOnce)
                }
                try await withDeadline(.seconds(10), "the command at the reconnected subscriber") {
                    while !String(decoding: subscriber.outputSoFar, as: UTF8.self).contains("lprserver/cameras/17/command reboot\n") {
                        try await Task.sleep(for: .milliseconds(20))
                    }
                }
                // Once for the first connection, at least once more for the reconnect (more when
                // attempts met the broker still down).
                #expect(Self.lines(callsFile) >= 2)
                #expect(subscriber.process.isRunning)
            }
        }
    }

    static func lines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// mosquitto with a TLS listener that requires a client certificate, logging subscriptions.
    static func withTLSBroker(misnamed: Bool = false, _ body: (Mosquitto, CertificateFixtures.Files) async throws -> Void) async throws {
        let files = try await CertificateFixtures.shared.make()
        let configuration = """
            cafile \(files.ca)
            certfile \(misnamed ? files.misnamedCertificate : files.serverCertificate)
            keyfile \(misnamed ? files.misnamedKey : files.serverKey)
            require_certificate true
            tls_version tlsv1.2
            \(Mosquitto.logSubscriptions)
            """
        try await Mosquitto.with(extraConfiguration: configuration) { broker in try await body(broker, files) }
    }

    @Test("--cafile, --cert and --key: mutual TLS for sub and pub; another CA is refused; --capath reads a hashed folder")
    func mutualTLS() async throws {
        try await Self.withTLSBroker { broker, files in
            try await CommandRunner.with { runner in
                let client = ["--cert", files.clientCertificate, "--key", files.clientKey, "-h", "localhost", "-p", "\(broker.port)"]
                let subscriber = try runner.databus(["sub", "--cafile", files.ca, "-t", "tls/echo", "-C", "2", "-i", "tls-sub"] + client)
                try await broker.waitForSubscriptions(["tls-sub"])
                let published = try await runner.run(
                    try CommandRunner.databus(),
                    ["pub", "--cafile", files.ca, "-t", "tls/echo", "-m", "over TLS", "-q", "1"] + client
                )
                #expect(published.status == 0, "\(published.error)")

                // --capath: a folder with the CA under its subject hash, as `openssl rehash` names it.
                let hash = try await runner.run("openssl", ["x509", "-hash", "-noout", "-in", files.ca])
                let folder = runner.directory.file("capath")
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                let hashed = "\(folder)/\(hash.outputText.trimmingCharacters(in: .whitespacesAndNewlines)).0"
                try FileManager.default.copyItem(atPath: files.ca, toPath: hashed)
                let viaFolder = try await runner.run(
                    try CommandRunner.databus(),
                    ["pub", "--capath", folder, "-t", "tls/echo", "-m", "via capath", "-q", "1"] + client
                )
                #expect(viaFolder.status == 0, "\(viaFolder.error)")

                let received = await subscriber.finish()
                #expect(received.status == 0, "\(received.error)")
                #expect(received.outputText == "over TLS\nvia capath\n")

                let wrongCA = try await runner.run(
                    try CommandRunner.databus(),
                    ["pub", "--cafile", files.otherCA, "-t", "tls/echo", "-m", "x"] + client
                )
                #expect(wrongCA.status == 1)
                #expect(wrongCA.error.contains("could not connect") && wrongCA.error.contains("TLS"), "\(wrongCA.error)")
            }
        }
    }

    @Test("a broker certificate for another name is refused; --insecure skips the name check, as in mosquitto")
    func insecureSkipsHostname() async throws {
        try await Self.withTLSBroker(misnamed: true) { broker, files in
            try await CommandRunner.with { runner in
                let flags = [
                    "pub", "--cafile", files.ca, "--cert", files.clientCertificate, "--key", files.clientKey,
                    "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "tls/named", "-m", "x", "-q", "1",
                ]
                let checked = try await runner.run(try CommandRunner.databus(), flags)
                #expect(checked.status == 1)
                let insecure = try await runner.run(try CommandRunner.databus(), flags + ["--insecure"])
                #expect(insecure.status == 0, "\(insecure.error)")
            }
        }
    }
}
