import DatabusTestSupport
import Foundation
import MQTTClient
import MQTTCore
import NIOCore
import Testing

/// `databus pub` against a real mosquitto: every message source, standard input line by line,
/// properties, retain and will.
@Suite("databus pub", .serialized, .timeLimit(.minutes(2)))
struct PubCommandTests {
    @Test("seq 1 1000 | databus pub -l -q 1 delivers all 1,000 lines, in order, to mosquitto_sub", arguments: ["mqttv311", "mqttv5"])
    func thousandLines(version: String) async throws {
        try await Mosquitto.with(extraConfiguration: Mosquitto.logSubscriptions) { broker in
            try await CommandRunner.with { runner in
                let receiver = try runner.start(
                    "mosquitto_sub",
                    ["-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "numbers", "-q", "1", "-C", "1000", "-i", "receiver", "-V", version]
                )
                try await broker.waitForSubscriptions(["receiver"])
                let databus = try CommandRunner.databus()
                let pipeline = "seq 1 1000 | '\(databus)' pub -l -q 1 -h 127.0.0.1 -p \(broker.port) -t numbers -V \(version)"
                let published = try await runner.run("/bin/sh", ["-c", pipeline])
                #expect(published.status == 0, "\(published.error)")
                let received = await receiver.finish(timeout: .seconds(10))
                #expect(received.status == 0)
                expectNumbered(received.outputText.split(separator: "\n").map(String.init), 1..<1001)
            }
        }
    }

    @Test("-m, -f, -s and -n publish their message byte for byte, -r retains it, -D adds MQTT 5 properties")
    func messageSources() async throws {
        try await Mosquitto.with { broker in
            try await CommandRunner.with { runner in
                try await withClient(.test(broker, id: "observer")) { observer in
                    let messages = try await observer.subscribe(to: "cli/#", qos: .exactlyOnce)
                    let base = ["pub", "-h", "127.0.0.1", "-p", "\(broker.port)"]
                    let binary: [UInt8] = [0x00, 0xFF, 0x0A, 0x41, 0x0D, 0x0A, 0x7F]
                    let file = runner.directory.file("frame.bin")
                    try Data(binary).write(to: URL(fileURLWithPath: file))
                    let runs: [(arguments: [String], input: [UInt8]?)] = [
                        (["-t", "cli/m", "-m", "hello -m", "-q", "1"], nil),
                        (["-t", "cli/f", "-f", file, "-q", "2"], nil),
                        (["-t", "cli/s", "-s"], Array("all\nof standard input\n".utf8)),
                        (["-t", "cli/n", "-n", "-q", "1"], nil),
                        (
                            [
                                "-t", "cli/props", "-m", "with properties", "-q", "1", "-V", "5",
                                "-D", "publish", "content-type", "text/plain", "-D", "publish", "user-property", "camera", "7",
                                "-D", "publish", "correlation-data", "c-9", "-D", "publish", "response-topic", "cli/reply",
                                "-D", "publish", "payload-format-indicator", "1", "-D", "publish", "message-expiry-interval", "600",
                            ], nil
                        ),
                        (["-t", "cli/retained", "-m", "kept", "-r", "-q", "1"], nil),
                    ]
                    for run in runs {
                        let result = try await runner.run(try CommandRunner.databus(), base + run.arguments, input: run.input)
                        #expect(result.status == 0, "\(run.arguments): \(result.error)")
                    }
                    let received = try await collect(messages, count: runs.count)
                    #expect(received.map(\.topic) == ["cli/m", "cli/f", "cli/s", "cli/n", "cli/props", "cli/retained"])
                    #expect(received[0].payloadString == "hello -m")
                    #expect(Array(received[1].payload.readableBytesView) == binary)
                    #expect(received[1].qos == .exactlyOnce)
                    #expect(received[2].payloadString == "all\nof standard input\n")
                    #expect(received[3].payload.readableBytes == 0)
                    let properties = received[4].properties
                    #expect(properties.contentType == "text/plain")
                    #expect(properties.userProperties.map { "\($0.name)=\($0.value)" } == ["camera=7"])
                    #expect(properties.correlationData == ByteBuffer(string: "c-9"))
                    #expect(properties.responseTopic == "cli/reply")
                    #expect(properties.payloadFormatIndicator == 1)
                    #expect((properties.messageExpiryInterval ?? 0) > 590)
                }
                try await withClient(.test(broker, id: "late")) { late in
                    let retained = try await collect(try await late.subscribe(to: "cli/retained"), count: 1)
                    #expect(retained.first?.payloadString == "kept")
                    #expect(retained.first?.retain == true)
                }
            }
        }
    }

    @Test("the will given with --will-topic is published when databus sub is killed")
    func will() async throws {
        try await Mosquitto.with(extraConfiguration: Mosquitto.logSubscriptions) { broker in
            try await CommandRunner.with { runner in
                try await withClient(.test(broker, id: "lpr-server")) { server in
                    let availability = try await server.subscribe(to: "lprserver/cameras/+/availability", qos: .atLeastOnce)
                    let camera = try runner.databus([
                        "sub", "-h", "127.0.0.1", "-p", "\(broker.port)", "-t", "lprserver/cameras/5/command", "-i", "camera-5",
                        "--will-topic", "lprserver/cameras/5/availability", "--will-payload", "offline", "--will-qos", "1",
                    ])
                    try await broker.waitForSubscriptions(["camera-5"])
                    camera.process.signal(SIGKILL)
                    _ = await camera.finish()
                    let wills = try await collect(availability, count: 1)
                    #expect(wills.first?.payloadString == "offline")
                    #expect(wills.first?.qos == .atLeastOnce)
                }
            }
        }
    }

    @Test("bad flags print a clear error and exit 64 without connecting")
    func badFlags() async throws {
        try await CommandRunner.with { runner in
            let port = "1"  // Nothing is contacted: each is refused before connecting.
            let invocations: [(arguments: [String], says: String)] = [
                (["pub", "-p", port, "-m", "x"], "-t"),
                (["pub", "-p", port, "-t", "a", "-m", "x", "-n"], "only one"),
                (["pub", "-p", port, "-t", "a", "-m", "x", "-q", "3"], "QoS"),
                (["pub", "-p", port, "-t", "a/#", "-m", "x"], "a/#"),
                (["pub", "-p", port, "-t", "a", "-m", "x", "-D", "publish", "no-such-property", "1"], "no-such-property"),
                (["pub", "-p", port, "-t", "a", "-m", "x", "-V", "311", "-D", "publish", "content-type", "x"], "MQTT 5"),
                (["pub", "-p", port, "-t", "a", "-m", "x", "--cert", "client.crt"], "--key"),
                (["sub", "-p", port], "-t"),
                (["sub", "-p", port, "-t", "a", "-F", "%Z"], "'Z'"),
                (["sub", "-p", port, "-t", "a", "-V", "7"], "protocol version"),
                (["sub", "-p", port, "-t", "a", "-c"], "-i"),
                (["sub", "-p", port, "-t", "a", "-C", "0"], "-C"),
                (["sub", "-p", port, "-t", "a", "--bogus"], "--bogus"),
            ]
            for invocation in invocations {
                let result = try await runner.run(try CommandRunner.databus(), invocation.arguments)
                #expect(result.status == 64, "\(invocation.arguments): \(result.status) \(result.error)")
                #expect(result.error.contains("Error:") && result.error.contains(invocation.says), "\(invocation.arguments): \(result.error)")
            }
            let help = try await runner.run(try CommandRunner.databus(), ["sub", "--help"])
            #expect(help.status == 0)
            #expect(help.outputText.contains("-h, --host"))
        }
    }
}
