import DatabusTestSupport
import Foundation
import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// MQTT 3.1 (protocol level 3, `MQIsdp`) between our client, our broker, mosquitto and its tools.
@Suite("MQTT 3.1", .serialized, .timeLimit(.minutes(2)))
struct MQTT31Tests {
    static func brokers() -> [String] { ["databus", "mosquitto"] }

    func withBroker(_ name: String, _ body: (any TestBroker) async throws -> Void) async throws {
        if name == "databus" {
            try await DatabusBrokerProcess.with { try await body($0) }
        } else {
            try await Mosquitto.with { try await body($0) }
        }
    }

    @Test("our client connects with MQTT 3.1 and round-trips QoS 0, 1 and 2", arguments: brokers())
    func clientRoundTrip(broker: String) async throws {
        try await withBroker(broker) { broker in
            let configuration = MQTTClient.Configuration(
                host: "127.0.0.1",
                port: broker.port,
                clientIdentifier: "old-device-31",
                protocolVersion: .v3_1
            )
            let client = MQTTClient(configuration: configuration, logger: testLogger)
            let connack = try await client.connect()
            #expect(connack.reasonCode == .success)
            #expect(connack.sessionPresent == false)
            let messages = try await client.subscribe(to: "legacy/#", qos: .exactlyOnce)
            for qos in [QoS.atMostOnce, .atLeastOnce, .exactlyOnce] {
                let result = try await client.publish(topic: "legacy/\(qos.rawValue)", payload: "q\(qos.rawValue)", qos: qos)
                #expect(result.isSuccess)
            }
            var received: [String] = []
            for await message in messages {
                received.append("\(message.topic)=\(message.payloadString)")
                if received.count == 3 { break }
            }
            #expect(received == ["legacy/0=q0", "legacy/1=q1", "legacy/2=q2"])
            await client.disconnect()
        }
    }

    @Test("mosquitto_pub -V mqttv31 reaches a 3.1 mosquitto_sub through databus broker")
    func mosquittoTools() async throws {
        try await DatabusBrokerProcess.with { broker in
            let folder = try TemporaryDirectory()
            defer { folder.remove() }
            let output = folder.file("sub.out")
            let subscriber = try ChildProcess.spawn(
                "mosquitto_sub",
                ["-V", "mqttv31", "-p", "\(broker.port)", "-h", "127.0.0.1", "-i", "sub31", "-t", "legacy/topic", "-q", "1", "-C", "1"],
                outputPath: output
            )
            try await Task.sleep(for: .milliseconds(500))
            let published = try await runProgramCollectingErrors(
                "mosquitto_pub",
                ["-V", "mqttv31", "-p", "\(broker.port)", "-h", "127.0.0.1", "-i", "pub31", "-t", "legacy/topic", "-q", "1", "-m", "hello 3.1"]
            )
            #expect(published.status == 0, "\(published.errorOutput)")
            #expect(await subscriber.wait(timeout: .seconds(10)) == 0)
            #expect((try? String(contentsOfFile: output, encoding: .utf8)) == "hello 3.1\n")
            #expect(broker is DatabusBrokerProcess)
        }
    }

    @Test("databus broker refuses an empty 3.1 client identifier with \"identifier rejected\", as mosquitto does", arguments: brokers())
    func emptyClientIdentifier(broker: String) async throws {
        try await withBroker(broker) { broker in
            let connection = try await CodecConnection.connect(port: broker.port, version: .v3_1)
            defer { Task { await connection.close() } }
            try await connection.send(.connect(ConnectPacket(protocolVersion: .v3_1, clientIdentifier: "", cleanStart: true)))
            let answer = try await connection.receive()
            #expect(answer == .connack(ConnAckPacket(reasonCode: .clientIdentifierNotValid)))
        }
    }

    @Test("databus pub -V mqttv31 publishes to mosquitto")
    func databusPub() async throws {
        try await Mosquitto.with { broker in
            let folder = try TemporaryDirectory()
            defer { folder.remove() }
            let output = folder.file("sub.out")
            let subscriber = try ChildProcess.spawn(
                "mosquitto_sub",
                ["-p", "\(broker.port)", "-h", "127.0.0.1", "-t", "legacy/pub", "-C", "1"],
                outputPath: output
            )
            try await Task.sleep(for: .milliseconds(500))
            let published = try await runProgramCollectingErrors(
                try DatabusBrokerProcess.executable(),
                ["pub", "-V", "mqttv31", "-p", "\(broker.port)", "-h", "127.0.0.1", "-t", "legacy/pub", "-q", "1", "-m", "from databus pub"]
            )
            #expect(published.status == 0, "\(published.errorOutput)")
            #expect(await subscriber.wait(timeout: .seconds(10)) == 0)
            #expect((try? String(contentsOfFile: output, encoding: .utf8)) == "from databus pub\n")
        }
    }
}
