import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import Testing

/// The exit codes scripts check, the same as mosquitto_sub's and mosquitto_pub's for the same
/// situation.
@Suite("databus pub and sub exit codes", .serialized, .timeLimit(.minutes(2)))
struct ExitCodeTests {
    @Test("-W exits 27 with \"Timed out\" when the time runs out, as mosquitto_sub does; -C exits 0 once the count is reached")
    func timeoutAndCount() async throws {
        try await Mosquitto.with(extraConfiguration: Mosquitto.logSubscriptions) { broker in
            try await CommandRunner.with { runner in
                let flags = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "quiet/topic", "-W", "1"]
                let reference = try runner.start("mosquitto_sub", flags)
                let ours = try runner.databus(["sub"] + flags)
                let expected = await reference.finish()
                let actual = await ours.finish()
                #expect(expected.status == 27)
                #expect(actual.status == expected.status)
                #expect(actual.error.contains("Timed out"))
                #expect(actual.output.isEmpty)

                // -C before -W: exit 0 with the messages printed.
                let counted = try runner.databus([
                    "sub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "busy", "-C", "2", "-W", "10", "-i", "counter",
                ])
                try await broker.waitForSubscriptions(["counter"])
                try await withClient(.test(broker, id: "publisher")) { publisher in
                    for text in ["one", "two", "three"] { try await publisher.publish(topic: "busy", payload: text, qos: .atLeastOnce) }
                }
                let result = await counted.finish()
                #expect(result.status == 0)
                #expect(result.outputText == "one\ntwo\n")
            }
        }
    }

    @Test("a wrong password is refused with the broker's code as exit status and a clear message", arguments: ["mqttv311", "mqttv5"])
    func refusedConnection(version: String) async throws {
        try await AuthenticationTests.withPasswordBroker(.mosquitto) { broker in
            try await CommandRunner.with { runner in
                let connection = ["-h", "127.0.0.1", "-p", "\(broker.port)", "-V", version, "-u", "camera-17"]
                let subscribe = connection + ["-P", "wrong", "-t", "lprserver/#"]
                let publish = connection + ["-P", "wrong", "-t", "lprserver/cameras/17/status", "-m", "online"]
                let referenceSub = try await runner.run("mosquitto_sub", subscribe)
                let referencePub = try await runner.run("mosquitto_pub", publish)
                let ourSub = try await runner.run(try CommandRunner.databus(), ["sub"] + subscribe)
                let ourPub = try await runner.run(try CommandRunner.databus(), ["pub"] + publish)
                // 5 (not authorized) in 3.1.1, 135 (0x87) in 5, from mosquitto.
                #expect(referenceSub.status == (version == "mqttv5" ? 135 : 5))
                #expect(ourSub.status == referenceSub.status)
                #expect(ourPub.status == referencePub.status)
                for result in [ourSub, ourPub] {
                    #expect(result.error.contains("refused the connection") && result.error.contains("not authorized"), "\(result.error)")
                }
                let accepted = try await runner.run(
                    try CommandRunner.databus(),
                    ["pub"] + connection + ["-P", "s3cret", "-t", "lprserver/x", "-m", "ok", "-q", "1"]
                )
                #expect(accepted.status == 0, "\(accepted.error)")
            }
        }
    }

    @Test("no broker listening: exit 1 and a message naming the address")
    func nothingListening() async throws {
        let port = try await Mosquitto.freePort()
        try await CommandRunner.with { runner in
            for command in ["sub", "pub"] {
                let extra = command == "pub" ? ["-m", "x"] : []
                let result = try await runner.run(try CommandRunner.databus(), [command, "-h", "127.0.0.1", "-p", "\(port)", "-t", "a"] + extra)
                #expect(result.status == 1)
                #expect(result.error.contains("could not connect to 127.0.0.1:\(port)"), "\(result.error)")
            }
        }
    }

    @Test("an authentication method mosquitto does not know is refused with 0x8C, named clearly, exit 140 as mosquitto_sub")
    func unknownAuthenticationMethod() async throws {
        try await Mosquitto.with { broker in
            try await CommandRunner.with { runner in
                let flags = [
                    "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "a", "-V", "5", "-D", "connect", "authentication-method", "SCRAM-SHA-256",
                ]
                let reference = try await runner.run("mosquitto_sub", flags)
                let ours = try await runner.run(try CommandRunner.databus(), ["sub"] + flags)
                #expect(reference.status == 140)
                #expect(ours.status == reference.status)
                #expect(ours.error.contains("does not support the authentication method SCRAM-SHA-256"), "\(ours.error)")
            }
        }
    }
}
