import DatabusTestSupport
import Foundation
import Testing

/// SIGHUP re-reads a TLS listener's files: new connections get them, connected clients stay.
@Suite("TLS reload", .serialized, .timeLimit(.minutes(2)))
struct TLSReloadTests {
    @Test("SIGHUP: a connected subscriber keeps receiving, new connections get the new certificate, broken files keep the old one")
    func certificateReload() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-tls-reload")
        defer { folder.remove() }
        let executable = try DatabusBrokerProcess.executable()
        let first = folder.file("first")
        let second = folder.file("second")
        for (out, clients) in [(first, ["--client", "sub", "--client", "pub"]), (second, [])] {
            let made = try await runProgramCollectingErrors(executable, ["certs", "create", "--out", out] + clients)
            #expect(made.status == 0, "\(made.errorOutput)")
        }
        // The broker reads its certificate from files that the test replaces.
        try FileManager.default.createDirectory(atPath: folder.file("live"), withIntermediateDirectories: true)
        func install(_ source: String) throws {
            for name in ["broker.crt", "broker.key"] {
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(source)/broker/\(name)"))
                try data.write(to: URL(fileURLWithPath: folder.file("live/\(name)")), options: .atomic)
            }
        }
        try install(first)
        let configuration = """
            cafile \(first)/broker/ca.crt
            certfile \(folder.file("live/broker.crt"))
            keyfile \(folder.file("live/broker.key"))
            require_certificate true
            log_type all
            """
        let client = { (trust: String, name: String) in
            TLSClientOptions(caFile: "\(trust)/broker/ca.crt", certificate: "\(first)/\(name)/\(name).crt", key: "\(first)/\(name)/\(name).key")
        }

        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let received = try await withSubscriber(broker, client(first, "sub"), topic: "lpr/reload", count: 2, clientID: "stays") {
                let before = try await mosquittoPublish(port: broker.port, client(first, "pub"), topic: "lpr/reload", message: "before")
                #expect(before.status == 0, "\(before.errorOutput)")

                try install(second)
                broker.signal(SIGHUP)
                #expect(await eventually({ broker.log }, contains: "TLS files reloaded"), "\(broker.log)")

                // New connections see the second CA's broker certificate: trusting the first CA fails...
                let oldTrust = try await mosquittoPublish(port: broker.port, client(first, "pub"), topic: "lpr/reload", message: "refused")
                #expect(oldTrust.status != 0)
                // ...trusting the second one works, and the subscriber from before still gets the message.
                let after = try await mosquittoPublish(port: broker.port, client(second, "pub"), topic: "lpr/reload", message: "after")
                #expect(after.status == 0, "\(after.errorOutput)")
            }
            #expect(received == ["lpr/reload before", "lpr/reload after"])

            // What openssl s_client is served now: the second CA's broker certificate.
            let secondCA = try await runProgram("openssl", ["x509", "-in", "\(second)/ca/ca.crt", "-noout", "-subject", "-nameopt", "RFC2253"])
            let issuer = secondCA.output.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "subject=", with: "issuer=")
            let served = try await runProgram(
                "openssl",
                [
                    "s_client", "-connect", "127.0.0.1:\(broker.port)", "-showcerts", "-nameopt", "RFC2253",
                    "-cert", "\(first)/pub/pub.crt", "-key", "\(first)/pub/pub.key",
                ],
                timeout: .seconds(10)
            )
            #expect(served.output.contains(issuer), "s_client shows \(served.output)")

            // A broken key on the next SIGHUP: logged, and the certificate in use stays.
            try "not a key".write(toFile: folder.file("live/broker.key"), atomically: true, encoding: .utf8)
            broker.signal(SIGHUP)
            #expect(await eventually({ broker.log }, contains: "keeping the previous TLS files"), "\(broker.log)")
            #expect(broker.log.contains("keyfile"))
            let stillServed = try await mosquittoPublish(port: broker.port, client(second, "pub"), topic: "lpr/reload", message: "still")
            #expect(stillServed.status == 0, "\(stillServed.errorOutput)")
        }
    }
}
