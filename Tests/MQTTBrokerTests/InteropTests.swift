import DatabusTestSupport
import Foundation
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The broker driven by third-party clients: mosquitto_pub and mosquitto_sub (3.1.1 and 5.0)
/// and paho-mqtt from Python, checking exactly what arrives.
@Suite("Interop with mosquitto clients and paho-mqtt")
struct InteropTests {
    static let cliVersions = ["mqttv311", "mqttv5"]

    /// Publishes QoS 1 messages on `topic` from a 5.0 client until the broker stops answering
    /// 0x10 (no matching subscribers): then some client has subscribed and got exactly one of them.
    private func waitForSubscriber(port: Int, topic: String, payload: String = "ready", within seconds: Double = 15) async throws {
        let probe = try await connectAccepted(port: port, "probe-\(UInt32.random(in: 0...UInt32.max))")
        defer { Task { await probe.close() } }
        let deadline = ContinuousClock.now + .seconds(seconds)
        var identifier: UInt16 = 1
        while ContinuousClock.now < deadline {
            let reason = try await probe.publish(topic, payload, qos: .atLeastOnce, packetIdentifier: identifier)
            if reason == .success { return }
            identifier += 1
            try await Task.sleep(for: .milliseconds(50))
        }
        throw InteropError("nobody subscribed to \(topic) within \(seconds) s")
    }

    private func outputFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("databus-interop-\(UUID().uuidString)").path
    }

    private func read(_ path: String) -> String {
        defer { try? FileManager.default.removeItem(atPath: path) }
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }

    @Test("mosquitto_sub receives mosquitto_pub's QoS 0, 1 and 2 messages", arguments: cliVersions)
    func mosquittoQoS(cliVersion: String) async throws {
        try await withBroker { port in
            let output = outputFile()
            let subscriber = try ChildProcess.spawn(
                "mosquitto_sub",
                ["-h", "127.0.0.1", "-p", "\(port)", "-V", cliVersion, "-q", "2", "-t", "interop/#", "-C", "4", "-W", "20", "-F", "%t|%p|%q|%r"],
                outputPath: output
            )
            try await waitForSubscriber(port: port, topic: "interop/ready")
            // QoS 0 last: mosquitto_pub exits before the broker has read a QoS 0 message, so only
            // after the acknowledged ones is its place in the stream certain.
            for (qos, payload) in [(1, "one"), (2, "two"), (0, "zero")] {
                let published = try await runProgram(
                    "mosquitto_pub",
                    ["-h", "127.0.0.1", "-p", "\(port)", "-V", cliVersion, "-q", "\(qos)", "-t", "interop/q\(qos)", "-m", payload]
                )
                #expect(published.status == 0)
            }
            let status = await subscriber.wait(timeout: .seconds(20))
            #expect(status == 0)
            // libmosquitto hands a QoS 2 message over at PUBREL, so print order need not be wire order.
            let lines = read(output).split(separator: "\n").map(String.init).sorted()
            #expect(lines == ["interop/q0|zero|0|0", "interop/q1|one|1|0", "interop/q2|two|2|0", "interop/ready|ready|1|0"])
        }
    }

    @Test("mosquitto_pub -r is retained for a later mosquitto_sub, and -r -n deletes it", arguments: cliVersions)
    func mosquittoRetained(cliVersion: String) async throws {
        try await withBroker { port in
            let base = ["-h", "127.0.0.1", "-p", "\(port)", "-V", cliVersion]
            let published = try await runProgram("mosquitto_pub", base + ["-q", "1", "-r", "-t", "interop/state", "-m", "on"])
            #expect(published.status == 0)
            let subscribed = try await runProgram("mosquitto_sub", base + ["-q", "1", "-t", "interop/+", "-C", "1", "-W", "10", "-F", "%t|%p|%q|%r"])
            #expect(subscribed.status == 0)
            #expect(subscribed.output == "interop/state|on|1|1\n")

            let deleted = try await runProgram("mosquitto_pub", base + ["-q", "1", "-r", "-n", "-t", "interop/state"])
            #expect(deleted.status == 0)
            let later = try await connectAccepted(port: port, "later")
            defer { Task { await later.close() } }
            try await later.subscribe("interop/#", qos: .atLeastOnce)
            try await later.expectNothingPending("the retained message was not deleted")
        }
    }

    @Test("mosquitto_pub sends 5.0 properties that reach mosquitto_sub unchanged")
    func mosquittoProperties() async throws {
        try await withBroker { port in
            let output = outputFile()
            let subscriber = try ChildProcess.spawn(
                "mosquitto_sub",
                ["-h", "127.0.0.1", "-p", "\(port)", "-V", "mqttv5", "-q", "1", "-t", "props/#", "-C", "2", "-W", "20", "-F", "%t|%p|%C|%D|%R|%P"],
                outputPath: output
            )
            try await waitForSubscriber(port: port, topic: "props/ready")
            let published = try await runProgram(
                "mosquitto_pub",
                [
                    "-h", "127.0.0.1", "-p", "\(port)", "-V", "mqttv5", "-q", "1", "-t", "props/request", "-m", "ping",
                    "-D", "publish", "content-type", "text/plain", "-D", "publish", "correlation-data", "req-42",
                    "-D", "publish", "response-topic", "props/reply", "-D", "publish", "user-property", "site", "gate-3",
                ]
            )
            #expect(published.status == 0)
            let status = await subscriber.wait(timeout: .seconds(20))
            #expect(status == 0)
            #expect(read(output) == "props/ready|ready||||\nprops/request|ping|text/plain|req-42|props/reply|site:gate-3\n")
        }
    }

    @Test("mosquitto_sub's will goes out, retained, when it is killed", arguments: cliVersions)
    func mosquittoWill(cliVersion: String) async throws {
        try await withBroker { port in
            let watcher = try await connectAccepted(port: port, "watcher")
            defer { Task { await watcher.close() } }
            try await watcher.subscribe("interop/will/#", qos: .atLeastOnce)

            let subscriber = try ChildProcess.spawn(
                "mosquitto_sub",
                [
                    "-h", "127.0.0.1", "-p", "\(port)", "-V", cliVersion, "-t", "interop/alive", "-W", "30",
                    "--will-topic", "interop/will/sub", "--will-payload", "sub died", "--will-qos", "1", "--will-retain",
                ]
            )
            try await waitForSubscriber(port: port, topic: "interop/alive")
            kill(subscriber.pid, SIGKILL)
            await subscriber.wait()

            let will = try await watcher.receivePublish(within: 10)
            #expect(will.topicName == "interop/will/sub")
            #expect(will.payloadString == "sub died")
            #expect(will.qos == .atLeastOnce)
            try await watcher.acknowledge(will)

            let later = try await connectAccepted(port: port, "later")
            defer { Task { await later.close() } }
            try await later.subscribe("interop/will/#", qos: .atLeastOnce)
            let retained = try await later.receivePublish()
            #expect(retained.retain)
            #expect(retained.payloadString == "sub died")
        }
    }

    @Test("mosquitto_sub -c -i gets the QoS 1 and 2 messages sent while it was away", arguments: cliVersions)
    func mosquittoPersistentSession(cliVersion: String) async throws {
        try await withBroker { port in
            let base = ["-h", "127.0.0.1", "-p", "\(port)", "-V", cliVersion]
            let session = ["-c", "-i", "interop-persistent", "-q", "2", "-t", "interop/queue/#"]
            let first = try await runProgram("mosquitto_sub", base + session + ["-E"])
            #expect(first.status == 0)

            for (qos, payload) in [(1, "first"), (2, "second")] {
                let published = try await runProgram("mosquitto_pub", base + ["-q", "\(qos)", "-t", "interop/queue/\(qos)", "-m", payload])
                #expect(published.status == 0)
            }

            let second = try await runProgram("mosquitto_sub", base + session + ["-C", "2", "-W", "10", "-F", "%t|%p|%q"])
            #expect(second.status == 0)
            #expect(second.output == "interop/queue/1|first|1\ninterop/queue/2|second|2\n")
        }
    }

    @Test("paho-mqtt 3.1.1 clients exchange QoS 0, 1 and 2 messages and a retained one")
    func paho311() async throws {
        try await withBroker { port in
            let script = """
                import sys, threading
                import paho.mqtt.client as mqtt
                port = int(sys.argv[1])
                received = []
                done = threading.Event()
                subscribed = threading.Event()
                def on_message(client, userdata, message):
                    received.append(f"{message.topic}|{message.payload.decode()}|{message.qos}|{int(message.retain)}")
                    if len(received) == 4:
                        done.set()
                def on_subscribe(client, userdata, mid, reason_codes, properties):
                    subscribed.set()
                sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-sub", protocol=mqtt.MQTTv311)
                sub.on_message = on_message
                sub.on_subscribe = on_subscribe
                sub.connect("127.0.0.1", port)
                sub.loop_start()
                pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-pub", protocol=mqtt.MQTTv311)
                pub.connect("127.0.0.1", port)
                pub.loop_start()
                pub.publish("paho/retained", b"kept", qos=1, retain=True).wait_for_publish(5)
                sub.subscribe("paho/#", qos=2)
                if not subscribed.wait(5):
                    sys.exit(2)
                for qos in (0, 1, 2):
                    pub.publish(f"paho/q{qos}", f"payload {qos}".encode(), qos=qos).wait_for_publish(5)
                ok = done.wait(10)
                for line in sorted(received):
                    print(line)
                pub.disconnect(); sub.disconnect()
                pub.loop_stop(); sub.loop_stop()
                sys.exit(0 if ok else 1)
                """
            let result = try await runProgram("python3", ["-c", script, "\(port)"])
            #expect(result.status == 0)
            #expect(result.output == "paho/q0|payload 0|0|0\npaho/q1|payload 1|1|0\npaho/q2|payload 2|2|0\npaho/retained|kept|1|1\n")
        }
    }

    @Test("paho-mqtt 5.0 answers a request on its response topic with the correlation data")
    func paho5RequestResponse() async throws {
        try await withBroker { port in
            let requester = try await connectAccepted(port: port, "app")
            defer { Task { await requester.close() } }
            try await requester.subscribe("app/responses/#", qos: .atLeastOnce)

            let script = """
                import sys, threading
                import paho.mqtt.client as mqtt
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties
                port = int(sys.argv[1])
                answered = threading.Event()
                replies = []
                def on_message(client, userdata, message):
                    if message.topic != "svc/thermostat/get":
                        return
                    properties = Properties(PacketTypes.PUBLISH)
                    properties.CorrelationData = message.properties.CorrelationData
                    properties.UserProperty = [("status", "ok"), ("unit", "C")]
                    properties.ContentType = "text/plain"
                    replies.append(client.publish(message.properties.ResponseTopic, b"21.5", qos=1, properties=properties))
                    answered.set()
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-thermostat", protocol=mqtt.MQTTv5)
                client.on_message = on_message
                client.connect("127.0.0.1", port)
                client.subscribe([("svc/thermostat/get", mqtt.SubscribeOptions(qos=1)), ("svc/ready", mqtt.SubscribeOptions(qos=1))])
                client.loop_start()
                ok = answered.wait(20)
                if ok:
                    replies[0].wait_for_publish(5)
                client.disconnect()
                client.loop_stop()
                sys.exit(0 if ok else 1)
                """
            let responder = try ChildProcess.spawn("python3", ["-c", script, "\(port)"])
            try await waitForSubscriber(port: port, topic: "svc/ready")

            let correlation = bytes([0x00, 0xFF] + Array("req-1".utf8))
            try await requester.publish(
                "svc/thermostat/get",
                "setpoint",
                qos: .atLeastOnce,
                packetIdentifier: 1,
                properties: [.responseTopic("app/responses/thermostat"), .correlationData(correlation)]
            )
            let reply = try await requester.receivePublish(within: 20)
            #expect(reply.topicName == "app/responses/thermostat")
            #expect(reply.payloadString == "21.5")
            #expect(reply.properties.correlationData == correlation)
            #expect(reply.properties.contentType == "text/plain")
            #expect(reply.properties.userProperties.map { "\($0.name)=\($0.value)" } == ["status=ok", "unit=C"])
            try await requester.acknowledge(reply)
            let status = await responder.wait(timeout: .seconds(20))
            #expect(status == 0)
        }
    }

    @Test("paho-mqtt 5.0 receives subscription identifiers and honours no-local")
    func paho5Subscriptions() async throws {
        try await withBroker { port in
            let script = """
                import sys, threading
                import paho.mqtt.client as mqtt
                from paho.mqtt.packettypes import PacketTypes
                from paho.mqtt.properties import Properties
                port = int(sys.argv[1])
                received = []
                done = threading.Event()
                subscribed = threading.Event()
                def on_message(client, userdata, message):
                    identifiers = getattr(message.properties, "SubscriptionIdentifier", [])
                    received.append(f"{message.topic}|{message.payload.decode()}|{sorted(identifiers)}")
                    if message.topic == "paho/end":
                        done.set()
                def on_subscribe(client, userdata, mid, reason_codes, properties):
                    subscribed.set()
                client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-five", protocol=mqtt.MQTTv5)
                client.on_message = on_message
                client.on_subscribe = on_subscribe
                client.connect("127.0.0.1", port)
                client.loop_start()
                properties = Properties(PacketTypes.SUBSCRIBE)
                properties.SubscriptionIdentifier = 5
                client.subscribe([("paho/+", mqtt.SubscribeOptions(qos=1, noLocal=True))], properties=properties)
                if not subscribed.wait(5):
                    sys.exit(2)
                client.publish("paho/own", b"mine", qos=1).wait_for_publish(5)
                other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-other", protocol=mqtt.MQTTv5)
                other.connect("127.0.0.1", port)
                other.loop_start()
                other.publish("paho/other", b"theirs", qos=1).wait_for_publish(5)
                other.publish("paho/end", b"end", qos=1).wait_for_publish(5)
                ok = done.wait(10)
                for line in received:
                    print(line)
                other.disconnect(); client.disconnect()
                other.loop_stop(); client.loop_stop()
                sys.exit(0 if ok else 1)
                """
            let result = try await runProgram("python3", ["-c", script, "\(port)"])
            #expect(result.status == 0)
            #expect(result.output == "paho/other|theirs|[5]\npaho/end|end|[5]\n")
        }
    }
}
