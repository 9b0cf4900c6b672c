import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

@Suite("Password files", .serialized)
struct PasswordFileTests {
    @Test("$7$ and $6$ lines written by mosquitto_passwd verify, wrong passwords do not")
    func mosquittoHashesVerify() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = folder.file("passwd")
        var result = try await runCapturingBoth("/usr/bin/mosquitto_passwd", ["-c", "-b", path, "camera-7", "pl4te!"])
        #expect(result.status == 0, "\(result.output)")
        result = try await runCapturingBoth("/usr/bin/mosquitto_passwd", ["-H", "sha512", "-b", path, "legacy", "old secret"])
        #expect(result.status == 0, "\(result.output)")

        let file = try PasswordFile(contentsOf: path)
        #expect(file.entries.map(\.username) == ["camera-7", "legacy"])
        #expect(file.hash(for: "camera-7")?.algorithm == .pbkdf2SHA512(iterations: 101))
        #expect(file.hash(for: "legacy")?.algorithm == .sha512)
        #expect(file.verify(username: "camera-7", password: Array("pl4te!".utf8)))
        #expect(file.verify(username: "legacy", password: Array("old secret".utf8)))
        #expect(!file.verify(username: "camera-7", password: Array("pl4te".utf8)))
        #expect(!file.verify(username: "legacy", password: Array("old secreT".utf8)))
        #expect(!file.verify(username: "nobody", password: Array("pl4te!".utf8)))
        // Written back unchanged.
        #expect(file.text == (try String(contentsOfFile: path, encoding: .utf8)))
    }

    @Test("64-byte salts and other iteration counts verify too")
    func otherSaltsAndIterations() throws {
        let hash = PasswordHash(hashing: Array("gate".utf8), algorithm: .pbkdf2SHA512(iterations: 1000), saltLength: 64)
        let parsed = try #require(PasswordHash(encoded: hash.encoded))
        #expect(parsed.salt.count == 64)
        #expect(parsed.verify(Array("gate".utf8)))
        #expect(!parsed.verify(Array("Gate".utf8)))
    }

    @Test(
        "a malformed password file is an error naming the file and line",
        arguments: [
            ("alice:$7$101$c2FsdA==\n", 1),
            ("# users\n\nalice\n", 3),
            ("alice:plain-password\n", 1),
            ("bob:$6$c2FsdA==$" + String(repeating: "A", count: 86) + "==\nbob:$6$c2FsdA==$" + String(repeating: "A", count: 86) + "==\n", 2),
        ]
    )
    func malformed(text: String, line: Int) {
        #expect {
            try PasswordFile(parsing: text, file: "passwd")
        } throws: { error in
            guard let error = error as? ConfigurationError else { return false }
            return error.file == "passwd" && error.line == line
        }
    }

    @Test("databus broker admits the users of a mosquitto_passwd file and refuses wrong passwords, both protocol versions")
    func brokerWithMosquittoFile() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let passwords = folder.file("passwd")
        _ = try await runCapturingBoth("/usr/bin/mosquitto_passwd", ["-c", "-b", passwords, "backend", "b4ckend"])
        try await DatabusBrokerProcess.with(extraConfiguration: "allow_anonymous false\npassword_file \(passwords)\n") { broker in
            for version in ["mqttv311", "mqttv5"] {
                let good = try await mosquittoPub([
                    "-p", "\(broker.port)", "-V", version, "-u", "backend", "-P", "b4ckend", "-t", "lpr/test", "-m", "x", "-q", "1",
                ])
                #expect(good.status == 0, "\(version): \(good.output)")
                let bad = try await mosquittoPub([
                    "-p", "\(broker.port)", "-V", version, "-u", "backend", "-P", "wrong", "-t", "lpr/test", "-m", "x",
                ])
                #expect(bad.status != 0)
                #expect(bad.output.lowercased().contains("not authori"), "\(version): \(bad.output)")
                let anonymous = try await mosquittoPub(["-p", "\(broker.port)", "-V", version, "-t", "lpr/test", "-m", "x"])
                #expect(anonymous.status != 0)
            }
        }
    }

    @Test("a file written by databus passwd works in mosquitto: create, add, $6$, delete, convert a plain file")
    func databusFileInMosquitto() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let databus = try databusExecutable()
        let passwords = folder.file("passwd")
        var run = try await runCapturingBoth(databus, ["passwd", "-c", "-b", passwords, "backend", "b4ckend"])
        #expect(run.status == 0, "\(run.output)")
        run = try await runCapturingBoth(databus, ["passwd", "-b", "-H", "sha512", passwords, "legacy", "l3gacy"])
        #expect(run.status == 0, "\(run.output)")
        run = try await runCapturingBoth(databus, ["passwd", "-b", "-I", "2000", passwords, "gateway", "g4te way"])
        #expect(run.status == 0, "\(run.output)")
        run = try await runCapturingBoth(databus, ["passwd", "-b", passwords, "removed", "gone"])
        run = try await runCapturingBoth(databus, ["passwd", "-D", passwords, "removed"])
        #expect(run.status == 0, "\(run.output)")
        // A plain file converted in place.
        let plain = try folder.write(
            "plain",
            "engine:3ngine\n# comment\nbackend:$7$101$" + "AAAAAAAAAAAAAAAA" + "$" + String(repeating: "A", count: 86) + "==\n"
        )
        run = try await runCapturingBoth(databus, ["passwd", "-U", plain])
        #expect(run.status == 0, "\(run.output)")
        let converted = try PasswordFile(contentsOf: plain)
        #expect(converted.verify(username: "engine", password: Array("3ngine".utf8)))
        #expect(converted.entries.count == 2)
        // Append the converted engine user to the main file, as an integrator would.
        let engineLine = try String(contentsOfFile: plain, encoding: .utf8).split(separator: "\n").first { $0.hasPrefix("engine:") }!
        let handle = try #require(FileHandle(forWritingAtPath: passwords))
        handle.seekToEndOfFile()
        handle.write(Data((engineLine + "\n").utf8))
        try handle.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: passwords)

        try await Mosquitto.with(extraConfiguration: "allow_anonymous false\npassword_file \(passwords)\n") { mosquitto in
            for (user, password) in [("backend", "b4ckend"), ("legacy", "l3gacy"), ("gateway", "g4te way"), ("engine", "3ngine")] {
                let good = try await mosquittoPub(["-p", "\(mosquitto.port)", "-u", user, "-P", password, "-t", "t", "-m", "x"])
                #expect(good.status == 0, "\(user): \(good.output)")
            }
            let wrong = try await mosquittoPub(["-p", "\(mosquitto.port)", "-u", "backend", "-P", "B4ckend", "-t", "t", "-m", "x"])
            #expect(wrong.status != 0)
            let deleted = try await mosquittoPub(["-p", "\(mosquitto.port)", "-u", "removed", "-P", "gone", "-t", "t", "-m", "x"])
            #expect(deleted.status != 0)
        }
    }

    @Test("databus passwd refuses bad input with a message and a non-zero exit")
    func passwdErrors() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let databus = try databusExecutable()
        let missing = try await runCapturingBoth(databus, ["passwd", "-b", folder.file("none"), "user", "pw"])
        #expect(missing.status != 0)
        #expect(missing.output.contains("does not exist"))
        let colon = try await runCapturingBoth(databus, ["passwd", "-c", "-b", folder.file("p"), "us:er", "pw"])
        #expect(colon.status != 0)
        #expect(colon.output.contains("':'"))
        let unknown = try await runCapturingBoth(databus, ["passwd", "-c", "-b", folder.file("p"), "user", "pw"])
        #expect(unknown.status == 0)
        let deleteMissing = try await runCapturingBoth(databus, ["passwd", "-D", folder.file("p"), "nobody"])
        #expect(deleteMissing.status != 0)
        #expect(deleteMissing.output.contains("not in"))
    }

    @Test("SIGHUP re-reads the password file: a new user gets in, a removed one is disconnected and no longer gets in")
    func reload() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let passwords = folder.file("passwd")
        var file = PasswordFile()
        file.set("old", PasswordHash(hashing: Array("one".utf8), algorithm: .pbkdf2SHA512(iterations: 101)))
        file.set("kept", PasswordHash(hashing: Array("three".utf8), algorithm: .pbkdf2SHA512(iterations: 101)))
        try file.text.write(toFile: passwords, atomically: true, encoding: .utf8)
        try await DatabusBrokerProcess.with(extraConfiguration: "allow_anonymous false\npassword_file \(passwords)\n") { broker in
            var (connection, connack) = try await connectWithCredentials(port: broker.port, "a", username: "old", password: "one")
            #expect(connack.reasonCode == .success)
            let (kept, keptConnack) = try await connectWithCredentials(port: broker.port, "k", username: "kept", password: "three")
            #expect(keptConnack.reasonCode == .success)

            file.remove("old")
            file.set("new", PasswordHash(hashing: Array("two".utf8), algorithm: .sha512))
            try file.text.write(toFile: passwords, atomically: true, encoding: .utf8)
            try await broker.reload()
            // As in mosquitto, a connected client whose user is gone is disconnected; others stay.
            try await connection.expectNext(.disconnect(DisconnectPacket(reasonCode: .notAuthorized)))
            await connection.close()
            try await kept.send(.pingreq)
            try await kept.expectNext(.pingresp)
            await kept.close()
            (connection, connack) = try await connectWithCredentials(port: broker.port, "b", username: "new", password: "two")
            #expect(connack.reasonCode == .success)
            await connection.close()
            (connection, connack) = try await connectWithCredentials(port: broker.port, "c", username: "old", password: "one", version: .v3_1_1)
            #expect(connack.reasonCode == .notAuthorized)
            await connection.close()

            // A broken file on SIGHUP keeps the users in force.
            try "new\n".write(toFile: passwords, atomically: true, encoding: .utf8)
            try await broker.reload()
            (connection, connack) = try await connectWithCredentials(port: broker.port, "d", username: "new", password: "two")
            #expect(connack.reasonCode == .success)
            await connection.close()
        }
    }
}

@Suite("Reload and connected clients")
struct ReloadAdmissionTests {
    @Test("allow_anonymous turned off by a reload disconnects anonymous clients (v5 DISCONNECT 0x87), as mosquitto does")
    func anonymousDisconnected() async throws {
        var configuration = BrokerConfiguration.testing()
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let port = try await broker.start()[0].port!
        do {
            let (v5, _) = try await connectWithCredentials(port: port, "anon-5")
            let (v3, _) = try await connectWithCredentials(port: port, "anon-3", version: .v3_1_1)
            configuration.allowAnonymous = false
            _ = try await broker.reload(configuration)
            try await v5.expectNext(.disconnect(DisconnectPacket(reasonCode: .notAuthorized)))
            // 3.1.1 has no DISCONNECT from the server: the connection just closes.
            var outcome = ""
            do { _ = try await v3.receive(within: 5) } catch { outcome = "\(error)" }
            #expect(outcome.contains("connection closed"), "\(outcome)")
            await v5.close()
            await v3.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }
}
