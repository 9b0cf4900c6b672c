import DatabusTestSupport
import Foundation
import Logging
import MQTTCore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import MQTTBroker

#if canImport(Glibc)
import Glibc
#endif

/// Parking idle connections (`park_idle_connections`) attacked from outside: real clients,
/// packets that arrive in odd pieces on a parked socket, close requests, races, many
/// connections, both address families, counts and descriptors. Each test checks that
/// connections did park before the step that matters.
@Suite("Parking idle connections, adversarial")
struct ParkingAdversarialTests {
    private static let quiet = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    // MARK: Helpers

    private static func value(_ name: String, in text: String) -> Int { metricValue(name, in: text) }

    private func value(_ broker: MQTTBroker, _ name: String) -> Int {
        metricValue(name, in: String(decoding: broker.prometheusText(), as: UTF8.self))
    }

    /// Waits until `condition` holds; throws naming `what` after `seconds`.
    private func waitUntil(
        _ what: @autoclosure () -> String,
        within seconds: Double = 10,
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw InteropError("after \(seconds) s: \(what())") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func temporaryFile() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("databus-park-\(UUID().uuidString)").path
    }

    /// The broker process's metrics, read from its `metrics_listener`.
    private func scrape(metricsPort: Int) async throws -> String {
        let socket = try PlainSocket.connect(host: "127.0.0.1", port: metricsPort)
        defer { socket.close() }
        return try await socket.httpGet("/metrics")
    }

    /// How many descriptors process `pid` has open.
    private func openDescriptors(_ pid: pid_t) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
    }

    // MARK: Real clients

    // mosquitto_sub (3.1.1 and 5.0, QoS 1 and 2) and paho-mqtt (3.1.1 QoS 2, 5.0 QoS 1) all park
    // between messages that come every second and a half.
    @Test("mosquitto_sub and paho-mqtt subscribers that park between messages get every message once, in order")
    func realClientsParkBetweenMessages() async throws {
        try await withParkingBroker { port, broker in
            let count = 5
            var outputs: [(String, String, ChildProcess)] = []
            for version in ["mqttv311", "mqttv5"] {
                for qos in [1, 2] {
                    let output = temporaryFile()
                    let process = try ChildProcess.spawn(
                        "mosquitto_sub",
                        [
                            "-h", "127.0.0.1", "-p", "\(port)", "-V", version, "-q", "\(qos)", "-k", "60", "-i", "mosq-\(version)-\(qos)",
                            "-t", "park/interop/#", "-C", "\(count)", "-W", "40", "-F", "%p",
                        ],
                        outputPath: output
                    )
                    outputs.append(("mosquitto_sub \(version) QoS \(qos)", output, process))
                }
            }
            let script = """
                import sys, threading
                import paho.mqtt.client as mqtt
                port, count = int(sys.argv[1]), int(sys.argv[2])
                received = {"v311": [], "v5": []}
                done = {"v311": threading.Event(), "v5": threading.Event()}
                def handler(name):
                    def on_message(client, userdata, message):
                        received[name].append(message.payload.decode())
                        if len(received[name]) == count:
                            done[name].set()
                    return on_message
                clients = []
                for name, protocol, qos in (("v311", mqtt.MQTTv311, 2), ("v5", mqtt.MQTTv5, 1)):
                    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-" + name, protocol=protocol)
                    client.on_message = handler(name)
                    client.connect("127.0.0.1", port, keepalive=60)
                    client.subscribe("park/interop/#", qos=qos)
                    client.loop_start()
                    clients.append(client)
                ok = all(event.wait(40) for event in done.values())
                for name in ("v311", "v5"):
                    print(name + ":" + ",".join(received[name]))
                for client in clients:
                    client.disconnect()
                    client.loop_stop()
                sys.exit(0 if ok else 1)
                """
            let pahoOutput = temporaryFile()
            let paho = try ChildProcess.spawn("python3", ["-c", script, "\(port)", "\(count)"], outputPath: pahoOutput)
            defer {
                for (_, output, process) in outputs {
                    process.signal(SIGKILL)
                    try? FileManager.default.removeItem(atPath: output)
                }
                paho.signal(SIGKILL)
                try? FileManager.default.removeItem(atPath: pahoOutput)
            }
            try await waitUntil("6 subscriptions, found \(value(broker, "databus_subscriptions"))", within: 15) {
                value(broker, "databus_subscriptions") == 6
            }
            let publisher = try await connectAccepted(port: port, "interop-publisher", keepAlive: 60)
            for number in 1...count {
                // Every subscriber and the publisher are parked when the message comes.
                try await waitParked(broker, 7)
                #expect(try await publisher.publish("park/interop/m", "m\(number)", qos: .exactlyOnce, packetIdentifier: UInt16(number)) == .success)
            }
            let expected = (1...count).map { "m\($0)" }
            for (name, output, process) in outputs {
                let status = await process.wait(timeout: .seconds(15))
                let lines = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
                #expect(status == 0, "\(name) exited with \(status)")
                #expect(lines == expected, "\(name)")
            }
            let pahoStatus = await paho.wait(timeout: .seconds(15))
            let pahoLines = ((try? String(contentsOfFile: pahoOutput, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            #expect(pahoStatus == 0)
            #expect(pahoLines == ["v311:" + expected.joined(separator: ","), "v5:" + expected.joined(separator: ",")])
            await publisher.close()
        }
    }

    // MARK: Odd input on a parked socket

    @Test("a PINGREQ and a PUBLISH in one write to a parked socket: both answered, the message routed once")
    func pingAndPublishTogether() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "together-sub", keepAlive: 60)
            try await subscriber.subscribe("together/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "together-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            let publish = PublishPacket(topicName: "together/a", payload: ByteBuffer(string: "with ping"), qos: .atLeastOnce, packetIdentifier: 9)
            try await publisher.send([.pingreq, .publish(publish)])
            #expect(try await publisher.receive() == .pingresp)
            #expect(try await publisher.receive() == .puback(PubAckPacket(packetIdentifier: 9)))
            let received = try await subscriber.receivePublish()
            #expect(received.payloadString == "with ping")
            try await subscriber.acknowledge(received)
            #expect(try await subscriber.roundTrip().isEmpty)
            #expect(try await publisher.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a PUBLISH whose first byte reaches a parked socket alone, and a PINGREQ split in two, are read whole")
    func splitPacketsOnParkedSocket() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "split-sub", keepAlive: 60)
            try await subscriber.subscribe("split/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "split-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            var encoded = ByteBuffer()
            let publish = PublishPacket(topicName: "split/a", payload: ByteBuffer(string: "in two"), qos: .atLeastOnce, packetIdentifier: 4)
            try MQTTPacket.publish(publish).write(to: &encoded, version: .v5)
            let bytes = Array(encoded.readableBytesView)
            try await publisher.send(bytes: [bytes[0]])
            try await Task.sleep(for: .milliseconds(300))
            try await publisher.send(bytes: Array(bytes[1...]))
            #expect(try await publisher.receive() == .puback(PubAckPacket(packetIdentifier: 4)))
            #expect(try await subscriber.receivePublish().payloadString == "in two")

            // The same with a PINGREQ: 0xC0 alone to a parked socket, then 0x00.
            try await waitParked(broker, 2)
            try await publisher.send(bytes: [0xC0])
            try await Task.sleep(for: .milliseconds(300))
            try await publisher.send(bytes: [0x00])
            #expect(try await publisher.receive() == .pingresp)
            #expect(try await publisher.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a DISCONNECT sent to a parked connection ends it cleanly: no will, the client no longer counted")
    func disconnectWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "dc-watcher")
            let will = ConnectPacket.Will(topic: "wills/dc", payload: ByteBuffer(string: "must not"), qos: .atLeastOnce)
            let leaving = try await connectAccepted(port: port, "dc-cam", keepAlive: 60, will: will)
            try await waitParked(broker, 2)
            #expect(value(broker, "databus_connections") == 2)
            try await leaving.send(.disconnect(DisconnectPacket()))
            #expect(try await leaving.packetsUntilClosed().isEmpty)
            try await waitUntil("databus_connections is \(value(broker, "databus_connections")), expected 1") {
                value(broker, "databus_connections") == 1
            }
            // Give a will every chance to arrive.
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await watcher.roundTrip().isEmpty, "the will of a client that sent DISCONNECT was published")
            await watcher.close()
        }
    }

    @Test("a 5.0 DISCONNECT 0x04 sent to a parked connection publishes its will")
    func disconnectWithWillWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "dcw-watcher")
            let will = ConnectPacket.Will(topic: "wills/dcw", payload: ByteBuffer(string: "asked for"), qos: .atLeastOnce)
            let leaving = try await connectAccepted(port: port, "dcw-cam", keepAlive: 60, will: will)
            try await waitParked(broker, 2)
            try await leaving.send(.disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage)))
            _ = try await leaving.packetsUntilClosed()
            let publish = try await watcher.receivePublish()
            #expect(publish.topicName == "wills/dcw")
            #expect(publish.payloadString == "asked for")
            await watcher.close()
        }
    }

    @Test("a parked client that half-closes (shutdown write) is closed by the broker and its will published")
    func halfCloseWhileParked() async throws {
        try await withParkingBroker { port, broker in
            let watcher = try await willWatcher(port: port, "hc-watcher")
            let socket = try PlainSocket.connect(host: "127.0.0.1", port: port)
            defer { socket.close() }
            let will = ConnectPacket.Will(topic: "wills/hc", payload: ByteBuffer(string: "half"), qos: .atLeastOnce)
            try socket.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "hc-cam", keepAlive: 60, will: will)))
            guard case .connack = try await socket.receive() else { throw InteropError("no CONNACK") }
            try await waitParked(broker, 2)
            socket.shutdownWrite()
            // The broker closes its side: end of stream.
            try await socket.expectClosed(within: 5)
            let publish = try await watcher.receivePublish()
            #expect(publish.topicName == "wills/hc")
            try await waitUntil("databus_connections is \(value(broker, "databus_connections")), expected 1") {
                value(broker, "databus_connections") == 1
            }
            #expect(parked(broker) <= 1)
            await watcher.close()
        }
    }

    @Test("300 PINGREQs sent quickly to a parked connection get 300 PINGRESPs, and the connection parks again")
    func pingFlood() async throws {
        try await withParkingBroker { port, broker in
            let client = try await connectAccepted(port: port, "pinger", keepAlive: 60)
            try await waitParked(broker, 1)
            for index in 0..<300 {
                try await client.send(bytes: [0xC0, 0x00])
                // Now and then a pause, so that the lot answers some of them alone.
                if index % 25 == 0 { try await Task.sleep(for: .milliseconds(30)) }
            }
            var answers = 0
            while answers < 300 {
                let packet = try await client.receive(within: 5)
                guard packet == .pingresp else {
                    Issue.record("unexpected \(packet) after \(answers) PINGRESPs")
                    break
                }
                answers += 1
            }
            #expect(answers == 300)
            try await waitParked(broker, 1)
            #expect(try await client.roundTrip().isEmpty)
            await client.close()
        }
    }

    @Test("PINGREQs answered while parked keep a 2-second keep alive alive; silence then closes it with 0x8D")
    func lotAnsweredPingsKeepTheConnection() async throws {
        try await withParkingBroker { port, broker in
            let client = try await connectAccepted(port: port, "short-keepalive", keepAlive: 2)
            let started = ContinuousClock.now
            var lastPing = ContinuousClock.now
            while ContinuousClock.now - started < .seconds(7) {
                try await waitParked(broker, 1, within: 3)
                #expect(try await client.roundTrip().isEmpty)
                lastPing = ContinuousClock.now
            }
            #expect(try await client.closedByBroker(within: 6) == .keepAliveTimeout)
            // 1.5 × 2 s after the last PINGREQ, not earlier.
            #expect(ContinuousClock.now - lastPing >= .milliseconds(2_900))
            await client.close()
        }
    }

    @Test("a QoS 2 exchange left half done (PUBREC sent, PUBREL later) across parking completes once, both directions")
    func qos2HalfDoneAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "q2-sub", keepAlive: 60)
            try await subscriber.subscribe("q2/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: port, "q2-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            try await publisher.send(
                .publish(PublishPacket(topicName: "q2/a", payload: ByteBuffer(string: "once"), qos: .exactlyOnce, packetIdentifier: 5))
            )
            #expect(try await publisher.receive() == .pubrec(PubRecPacket(packetIdentifier: 5)))
            let publish = try await subscriber.receivePublish()
            #expect(publish.qos == .exactlyOnce)
            let identifier = try #require(publish.packetIdentifier)
            try await subscriber.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            #expect(try await subscriber.receive() == .pubrel(PubRelPacket(packetIdentifier: identifier)))
            // Both park with their exchange half done.
            try await waitParked(broker, 2)
            try await publisher.send(.pubrel(PubRelPacket(packetIdentifier: 5)))
            #expect(try await publisher.receive() == .pubcomp(PubCompPacket(packetIdentifier: 5)))
            try await waitParked(broker, 2)
            try await subscriber.send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
            #expect(try await subscriber.roundTrip().isEmpty)
            // The same identifier again is a new message.
            #expect(try await publisher.publish("q2/a", "twice", qos: .exactlyOnce, packetIdentifier: 5) == .success)
            let second = try await subscriber.receivePublish()
            #expect(second.payloadString == "twice")
            try await subscriber.acknowledge(second)
            #expect(try await subscriber.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    // MARK: Protocol state kept across parking

    @Test("a parked 5.0 client with receive maximum 1 gets queued messages one at a time as it acknowledges, parking in between")
    func receiveMaximumAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "rm-sub", keepAlive: 60, properties: [.receiveMaximum(1)])
            try await subscriber.subscribe("rm/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "rm-pub", keepAlive: 60)
            try await waitParked(broker, 2)
            for number in 1...3 {
                #expect(try await publisher.publish("rm/x", "q\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number)) == .success)
            }
            for number in 1...3 {
                let publish = try await subscriber.receivePublish()
                #expect(publish.payloadString == "q\(number)")
                // Only one in flight: nothing more comes until this one is acknowledged.
                #expect(try await subscriber.roundTrip().isEmpty)
                try await waitParked(broker, 2)
                try await subscriber.acknowledge(publish)
            }
            #expect(try await subscriber.roundTrip().isEmpty)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("topic aliases, the broker's and the client's, stay valid across parking")
    func topicAliasesAcrossParking() async throws {
        try await withParkingBroker { port, broker in
            let subscriber = try await connectAccepted(port: port, "alias-sub", keepAlive: 60, properties: [.topicAliasMaximum(5)])
            try await subscriber.subscribe("alias/#", qos: .atLeastOnce)
            let publisher = try await connectAccepted(port: port, "alias-pub", keepAlive: 60)
            // The publisher sets alias 3 for its topic, then parks and uses the alias alone.
            #expect(
                try await publisher.publish("alias/long/topic/name", "first", qos: .atLeastOnce, packetIdentifier: 1, properties: [.topicAlias(3)])
                    == .success
            )
            let first = try await subscriber.receivePublish()
            #expect(first.topicName == "alias/long/topic/name")
            let brokerAlias = try #require(first.properties.topicAlias)
            try await subscriber.acknowledge(first)
            try await waitParked(broker, 2)
            #expect(try await publisher.publish("", "second", qos: .atLeastOnce, packetIdentifier: 2, properties: [.topicAlias(3)]) == .success)
            let second = try await subscriber.receivePublish()
            // The broker's alias from before parking, without the topic again.
            #expect(second.topicName.isEmpty)
            #expect(second.properties.topicAlias == brokerAlias)
            #expect(second.payloadString == "second")
            try await subscriber.acknowledge(second)
            await publisher.close()
            await subscriber.close()
        }
    }

    @Test("a shared subscription whose members are parked delivers each message to exactly one of them")
    func sharedSubscriptionMembersParked() async throws {
        try await withParkingBroker { port, broker in
            var members: [CodecConnection] = []
            for index in 0..<3 {
                let member = try await connectAccepted(port: port, "shared-\(index)", keepAlive: 60)
                try await member.subscribe("$share/workers/jobs/#", qos: .atLeastOnce)
                members.append(member)
            }
            let publisher = try await connectAccepted(port: port, "jobs-pub", keepAlive: 60)
            var received: [String] = []
            for number in 1...6 {
                try await waitParked(broker, 4)
                #expect(try await publisher.publish("jobs/x", "j\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number)) == .success)
                // Whoever got it answers; the others stay quiet.
                var got = 0
                for member in members {
                    for packet in try await member.roundTrip() {
                        guard case .publish(let publish) = packet else { continue }
                        received.append(publish.payloadString)
                        try await member.acknowledge(publish)
                        got += 1
                    }
                }
                #expect(got == 1, "j\(number) went to \(got) members")
            }
            #expect(received == (1...6).map { "j\($0)" })
            for member in members { await member.close() }
            await publisher.close()
        }
    }

    // MARK: Close requests while parked

    @Test("a reload that turns allow_anonymous off disconnects parked clients (5.0: 0x87; 3.1.1: closed)")
    func reloadDisconnectsParkedClients() async throws {
        var configuration = BrokerConfiguration.testing { $0.parkIdleConnections = 1 }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        do {
            let v5 = try await connectAccepted(port: port, "anon-parked-5", keepAlive: 60)
            let v3 = try await connectAccepted(port: port, "anon-parked-3", version: .v3_1_1, keepAlive: 60)
            try await waitParked(broker, 2)
            configuration.allowAnonymous = false
            _ = try await broker.reload(configuration)
            #expect(try await v5.closedByBroker(within: 5) == .notAuthorized)
            let v3Reason = try await v3.closedByBroker(within: 5)
            #expect(v3Reason == nil)
            try await waitUntil("databus_connections is \(value(broker, "databus_connections"))") { value(broker, "databus_connections") == 0 }
            await v5.close()
            await v3.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    @Test("a reload whose ACL denies a topic applies to a parked subscriber at once")
    func reloadACLAppliesToParkedSubscriber() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write("acl", "topic readwrite feed/#\n")
        var configuration = BrokerConfiguration.testing {
            $0.parkIdleConnections = 1
            $0.security.aclFile = path
        }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        do {
            let reader = try await connectAccepted(port: port, "acl-reader", keepAlive: 60)
            try await reader.subscribe("feed/#", qos: .atLeastOnce)
            let writer = try await connectAccepted(port: port, "acl-writer", keepAlive: 60)
            try await waitParked(broker, 2)
            _ = try folder.write("acl", "topic readwrite feed/#\ntopic deny feed/b\n")
            configuration.maxInflightMessages = 10
            try await broker.reload(configuration)
            try await waitParked(broker, 2)
            #expect(try await writer.publish("feed/b", "denied", qos: .atLeastOnce, packetIdentifier: 1) == .notAuthorized)
            #expect(try await writer.publish("feed/a", "allowed", qos: .atLeastOnce, packetIdentifier: 2) == .success)
            let publish = try await reader.receivePublish()
            #expect(publish.topicName == "feed/a")
            try await reader.acknowledge(publish)
            #expect(try await reader.roundTrip().isEmpty)
            await reader.close()
            await writer.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    @Test("a parked 3.1.1 connection holding an unacknowledged QoS 1 message, taken over from another event loop: closed, and the message sent again")
    func takeoverFromAnotherLoop() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        defer { group.shutdownGracefully { _ in } }
        try await withParkingBroker(group: group) { port, broker in try await takeover(port: port, broker: broker) }
    }

    private func takeover(port: Int, broker: MQTTBroker) async throws {
        let publisher = try await connectAccepted(port: port, "to-pub", keepAlive: 60)
        // Connections go to the loops in turn: the old and the new one are on different loops.
        let old = try await connectAccepted(port: port, "to-twin", version: .v3_1_1, cleanStart: false, keepAlive: 60)
        try await old.subscribe("to/#", qos: .atLeastOnce)
        #expect(try await publisher.publish("to/x", "unacked", qos: .atLeastOnce, packetIdentifier: 1) == .success)
        let first = try await old.receivePublish()
        #expect(first.payloadString == "unacked")
        try await waitParked(broker, 2)
        let (taker, connack) = try await connect(port: port, "to-twin", version: .v3_1_1, cleanStart: false, keepAlive: 60)
        #expect(connack.sessionPresent)
        let reason = try await old.closedByBroker(within: 5)
        #expect(reason == nil)
        let again = try await taker.receivePublish()
        #expect(again.payloadString == "unacked")
        #expect(again.dup)
        try await taker.acknowledge(again)
        #expect(try await taker.roundTrip().isEmpty)
        try await waitUntil("databus_connections is \(value(broker, "databus_connections")), expected 2") {
            value(broker, "databus_connections") == 2
        }
        await old.close()
        await taker.close()
        await publisher.close()
    }

    @Test("max_connections 2 with parking: parked connections count, a third is refused, and a slot frees when one leaves")
    func maxConnectionsWithParking() async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.listeners[0].maxConnections = 2 }
        try await withParkingBroker(configure) { port, broker in
            let first = try await connectAccepted(port: port, "mc-1", keepAlive: 60)
            try await first.subscribe("mc/#", qos: .atLeastOnce)
            let second = try await connectAccepted(port: port, "mc-2", keepAlive: 60)
            // Park, wake and park again a few times: the count must not drift.
            for round in 1...3 {
                try await waitParked(broker, 2)
                #expect(try await second.publish("mc/x", "r\(round)", qos: .atLeastOnce, packetIdentifier: UInt16(round)) == .success)
                let publish = try await first.receivePublish()
                try await first.acknowledge(publish)
            }
            try await waitParked(broker, 2)
            let third = try await RawConnection.connect(port: port)
            defer { Task { await third.close() } }
            #expect(try await third.packetsUntilClosed().isEmpty, "a third connection got in over max_connections 2")
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()
            var accepted = false
            let deadline = ContinuousClock.now + .seconds(5)
            while !accepted && ContinuousClock.now < deadline {
                if let (fourth, connack) = try? await connect(port: port, "mc-4") {
                    accepted = connack.reasonCode == .success
                    await fourth.close()
                } else {
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(accepted)
            await second.close()
        }
    }

    // MARK: Races

    // Messages come every 0.8–1.7 s: some reach the subscribers just as they park.
    @Test("messages published at random intervals around the parking delay reach QoS 0, 1 and 2 subscribers exactly once, in order")
    func publishAtTheMomentOfParking() async throws {
        try await withParkingBroker { port, broker in
            var subscribers: [(CodecConnection, QoS)] = []
            for qos in QoS.allCases {
                let subscriber = try await connectAccepted(port: port, "race-sub-\(qos.rawValue)", keepAlive: 60)
                try await subscriber.subscribe("race/#", qos: qos)
                subscribers.append((subscriber, qos))
            }
            let publisher = try await connectAccepted(port: port, "race-pub", keepAlive: 60)
            var sent: [String] = []
            var sawParked = 0
            let started = ContinuousClock.now
            var generator = SystemRandomNumberGenerator()
            while ContinuousClock.now - started < .seconds(15), sent.count < 18 {
                try await Task.sleep(for: .milliseconds(Int.random(in: 800...1700, using: &generator)))
                sawParked = max(sawParked, parked(broker))
                let payload = "r\(sent.count)"
                #expect(try await publisher.publish("race/x", payload, qos: .atLeastOnce, packetIdentifier: UInt16(sent.count + 1)) == .success)
                sent.append(payload)
            }
            #expect(sawParked >= 3, "the subscribers never parked")
            for (subscriber, qos) in subscribers {
                var received: [PublishPacket] = []
                while received.count < sent.count {
                    received.append(try await subscriber.receivePublish())
                }
                #expect(received.map(\.payloadString) == sent, "QoS \(qos.rawValue)")
                for publish in received { try await subscriber.acknowledge(publish) }
                #expect(try await subscriber.roundTrip().isEmpty, "QoS \(qos.rawValue): a message arrived twice")
                await subscriber.close()
            }
            await publisher.close()
        }
    }

    @Test("500 parked connections all woken by one message, twice: every one gets both")
    func manyParkAndWakeAtOnce() async throws {
        try await withParkingBroker { port, broker in
            let count = 500
            let subscribers = try await withThrowingTaskGroup(of: (Int, CodecConnection).self) { group in
                var result: [CodecConnection?] = Array(repeating: nil, count: count)
                var next = 0
                // 25 at a time.
                while next < min(25, count) {
                    let index = next
                    group.addTask {
                        let client = try await connectAccepted(port: port, "herd-\(index)", keepAlive: 60)
                        try await client.subscribe("herd/all", qos: .atLeastOnce)
                        return (index, client)
                    }
                    next += 1
                }
                while let (index, client) = try await group.next() {
                    result[index] = client
                    if next < count {
                        let index = next
                        group.addTask {
                            let client = try await connectAccepted(port: port, "herd-\(index)", keepAlive: 60)
                            try await client.subscribe("herd/all", qos: .atLeastOnce)
                            return (index, client)
                        }
                        next += 1
                    }
                }
                return result.compactMap { $0 }
            }
            #expect(subscribers.count == count)
            let publisher = try await connectAccepted(port: port, "herd-pub", keepAlive: 60)
            for round in 1...2 {
                try await waitParked(broker, count + 1, within: 15)
                #expect(try await publisher.publish("herd/all", "round \(round)", qos: .atLeastOnce, packetIdentifier: UInt16(round)) == .success)
                var missing = 0
                for client in subscribers {
                    guard let publish = try? await client.receivePublish(within: 10), publish.payloadString == "round \(round)" else {
                        missing += 1
                        continue
                    }
                    try await client.acknowledge(publish)
                }
                #expect(missing == 0, "round \(round): \(missing) of \(count) parked subscribers did not get the message")
            }
            #expect(value(broker, "databus_connections") == count + 1)
            for client in subscribers { await client.close() }
            await publisher.close()
        }
    }

    // MARK: Listeners

    @Test("a listener without address takes IPv4 and IPv6 clients, and both park and wake")
    func dualStackListener() async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.listeners = [.init(port: 0)] }
        try await withParkingBroker(configure) { port, broker in
            let address = try #require(broker.localAddresses.first)
            #expect(address.protocol == .inet6)
            #expect(address.ipAddress == "::")
            #expect(address.port == port)
            let v4 = try await connectAccepted(port: port, "dual-v4", keepAlive: 60)
            try await v4.subscribe("dual/#", qos: .atLeastOnce)
            let v6 = try PlainSocket.connect(host: "::1", port: port)
            defer { v6.close() }
            try v6.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "dual-v6", keepAlive: 60)))
            guard case .connack(let connack) = try await v6.receive(), connack.reasonCode == .success else {
                throw InteropError("the IPv6 client was not accepted")
            }
            try v6.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "dual/#", options: .init(qos: .atLeastOnce))]))
            )
            guard case .suback = try await v6.receive() else { throw InteropError("no SUBACK on IPv6") }
            try await waitParked(broker, 2)
            // The IPv6 client wakes the IPv4 one, and is woken by its own message.
            try v6.send(
                .publish(PublishPacket(topicName: "dual/six", payload: ByteBuffer(string: "from v6"), qos: .atLeastOnce, packetIdentifier: 2))
            )
            var fromBroker: [MQTTPacket] = []
            for _ in 0..<2 { fromBroker.append(try await v6.receive()) }
            #expect(fromBroker.contains(.puback(PubAckPacket(packetIdentifier: 2))))
            #expect(fromBroker.contains { if case .publish(let p) = $0 { p.payloadString == "from v6" } else { false } })
            let onV4 = try await v4.receivePublish()
            #expect(onV4.payloadString == "from v6")
            try await v4.acknowledge(onV4)
            await v4.close()
        }
    }

    @Test("listener on ::1 with parking: bound to ::1 on the port reported, IPv6 clients park and wake")
    func ipv6LoopbackListener() async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.listeners = [.init(port: 0, address: "::1")] }
        try await withParkingBroker(configure) { port, broker in
            let address = try #require(broker.localAddresses.first)
            #expect(address.protocol == .inet6)
            #expect(address.ipAddress == "::1")
            #expect(port > 0)
            let client = try PlainSocket.connect(host: "::1", port: port)
            defer { client.close() }
            try client.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "six", keepAlive: 60)))
            guard case .connack = try await client.receive() else { throw InteropError("no CONNACK") }
            try client.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "six/#", options: .init(qos: .atLeastOnce))]))
            )
            guard case .suback = try await client.receive() else { throw InteropError("no SUBACK") }
            try await waitParked(broker, 1)
            try client.send(.pingreq)
            #expect(try await client.receive() == .pingresp)
            #expect(parked(broker) == 1)
            let other = try PlainSocket.connect(host: "::1", port: port)
            defer { other.close() }
            try other.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "six-pub", keepAlive: 60)))
            guard case .connack = try await other.receive() else { throw InteropError("no CONNACK") }
            try other.send(
                .publish(PublishPacket(topicName: "six/a", payload: ByteBuffer(string: "v6 only"), qos: .atLeastOnce, packetIdentifier: 3))
            )
            #expect(try await other.receive() == .puback(PubAckPacket(packetIdentifier: 3)))
            guard case .publish(let publish) = try await client.receive() else { throw InteropError("no PUBLISH") }
            #expect(publish.payloadString == "v6 only")
            // Not on IPv4.
            #expect(throws: (any Error).self) { try PlainSocket.connect(host: "127.0.0.1", port: port).close() }
        }
    }

    // MARK: Listeners, continued

    @Test("with a TLS and a plain listener, plain clients park, TLS ones never do, and both get every message")
    func tlsAndPlainListeners() async throws {
        let files = try await OpenSSLCertificates.shared.make()
        let configure: (inout BrokerConfiguration) -> Void = { configuration in
            var tls = BrokerConfiguration.Listener(port: 0, address: "127.0.0.1")
            tls.tls.certFile = files.serverCertificate
            tls.tls.keyFile = files.serverKey
            configuration.listeners.append(tls)
        }
        try await withParkingBroker(configure) { port, broker in
            #expect(broker.localAddresses.count == 2)
            let tlsPort = try #require(broker.localAddresses.last?.port)
            #expect(tlsPort != port)
            let output = temporaryFile()
            defer { try? FileManager.default.removeItem(atPath: output) }
            let options = TLSClientOptions(caFile: files.ca)
            let (program, arguments) = options.command(
                "mosquitto_sub",
                port: tlsPort,
                ["-V", "mqttv5", "-q", "1", "-k", "60", "-i", "tls-sub", "-t", "mix/#", "-C", "3", "-W", "30", "-F", "%p"]
            )
            let tlsSubscriber = try ChildProcess.spawn(program, arguments, outputPath: output)
            defer { tlsSubscriber.signal(SIGKILL) }
            let plain = try await connectAccepted(port: port, "plain-sub", keepAlive: 60)
            try await plain.subscribe("mix/#", qos: .atLeastOnce)
            try await waitUntil("2 subscriptions", within: 15) { value(broker, "databus_subscriptions") == 2 }
            let publisher = try await connectAccepted(port: port, "mix-pub", keepAlive: 60)
            for number in 1...3 {
                // The plain subscriber and the publisher park; the TLS subscriber, as quiet, does not.
                try await waitParked(broker, 2)
                try await Task.sleep(for: .milliseconds(600))
                #expect(parked(broker) == 2)
                #expect(try await publisher.publish("mix/x", "m\(number)", qos: .atLeastOnce, packetIdentifier: UInt16(number)) == .success)
                let publish = try await plain.receivePublish()
                #expect(publish.payloadString == "m\(number)")
                try await plain.acknowledge(publish)
            }
            #expect(await tlsSubscriber.wait(timeout: .seconds(10)) == 0)
            let lines = ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            #expect(lines == ["m1", "m2", "m3"])
            await plain.close()
            await publisher.close()
        }
    }

    // Found by this test: the lot's listeners described their addresses unlike SwiftNIO's (the
    // host left out, or "::" for a listener on ::1).
    @Test("the addresses a parking broker reports read as a broker without parking reports them", arguments: ["127.0.0.1", "::1"])
    func reportedAddressesReadAlike(address: String) async throws {
        var descriptions: [Int: String] = [:]
        for park in [1, 0] {
            let configuration = BrokerConfiguration.testing {
                $0.parkIdleConnections = park
                $0.listeners = [.init(port: 0, address: address)]
            }
            let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
            let bound = try await broker.start()
            await broker.shutdown()
            let first = try #require(bound.first)
            let port = try #require(first.port)
            #expect(first.ipAddress == address)
            descriptions[park] = "\(first)".replacingOccurrences(of: ":\(port)", with: ":PORT")
        }
        #expect(descriptions[1] == descriptions[0])
    }

    // MARK: Descriptors run out, capabilities

    static let hasPrlimit = FileManager.default.isExecutableFile(atPath: "/usr/bin/prlimit")

    // Found by this test: out of descriptors, the lot's thread logged an accept error 20 times a
    // second and slept between them, holding up every parked connection; a listener that cannot
    // accept now leaves the epoll set for 250 ms and the error is logged every 10 s at most.
    @Test(
        "a broker out of descriptors does not log an accept error 20 times a second, and serves waiting connections once descriptors are free",
        .enabled(if: Self.hasPrlimit),
        arguments: [1, 0]
    )
    func outOfDescriptors(parkAfter: Int) async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: "park_idle_connections \(parkAfter)\nsys_interval 0\n") { broker in
            let open = openDescriptors(broker.pid)
            let limited = try await runProgram("/usr/bin/prlimit", ["--pid", "\(broker.pid)", "--nofile=\(open + 4):\(open + 4)"])
            try #require(limited.status == 0)
            var sockets: [PlainSocket] = []
            for _ in 0..<12 { sockets.append(try PlainSocket.connect(host: "127.0.0.1", port: broker.port)) }
            try await Task.sleep(for: .seconds(2))
            let errors = broker.log.split(separator: "\n").filter { $0.contains("cannot accept") }.count
            #expect(errors <= 4, "\(errors) accept errors logged in 2 s")
            for socket in sockets { socket.close() }
            var accepted = false
            let deadline = ContinuousClock.now + .seconds(5)
            while !accepted && ContinuousClock.now < deadline {
                if let (client, connack) = try? await connect(port: broker.port, "after-emfile") {
                    accepted = connack.reasonCode == .success
                    await client.close()
                } else {
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            #expect(accepted)
        }
    }

    static let canRunWithFileCapabilities =
        getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/setcap")
        && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && getpwuid(65_534) != nil

    // Found by this test, two bugs: (1) glibc drops GLIBC_TUNABLES in secure mode (file
    // capabilities, setuid), so the broker ran itself again and again looking for them; it now
    // runs itself again once at most, and never in secure mode. (2) As any user but root, every
    // connection was refused: `.socketOption(.tcp_nodelay)` is SO_DEBUG at the socket level,
    // which only root may set (TCP_NODELAY is `.tcpOption(.tcp_nodelay)`).
    @Test(
        "databus broker installed with file capabilities starts listening instead of running itself again and again",
        .enabled(if: Self.canRunWithFileCapabilities)
    )
    func startsWithFileCapabilities() async throws {
        let folder = try TemporaryDirectory(prefix: "databus-setcap")
        defer { folder.remove() }
        chmod(folder.path, 0o755)
        let binary = folder.file("databus")
        try FileManager.default.copyItem(atPath: DatabusBrokerProcess.executable(), toPath: binary)
        let setcap = try await runProgramCollectingErrors("/usr/sbin/setcap", ["cap_net_bind_service+ep", binary])
        try #require(setcap.status == 0, "setcap: \(setcap.errorOutput)")
        let port = try await Mosquitto.freePort()
        let configuration = try folder.write("databus.conf", "listener \(port) 127.0.0.1\nallow_anonymous true\npark_idle_connections 1\n")
        chmod(configuration, 0o644)
        let process = try ChildProcess.spawn(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", binary, "broker", "-c", configuration],
            errorPath: folder.file("databus.log")
        )
        var accepted = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !accepted && ContinuousClock.now < deadline && process.isRunning {
            if let (client, connack) = try? await connect(port: port, "capable") {
                accepted = connack.reasonCode == .success
                await client.close()
            } else {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        let environment = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(process.pid)/environ"))) ?? Data()
        let tunables =
            String(decoding: environment.map { $0 == 0 ? UInt8(ascii: "\n") : $0 }, as: UTF8.self)
            .split(separator: "\n").first { $0.hasPrefix("GLIBC_TUNABLES=") } ?? ""
        let running = process.isRunning
        await process.terminate()
        let log = (try? String(contentsOfFile: folder.file("databus.log"), encoding: .utf8)) ?? ""
        #expect(
            accepted,
            "not listening after 10 s (running: \(running)); GLIBC_TUNABLES is \(tunables.count) characters: \(tunables.prefix(200)); log: \(log.suffix(500))"
        )
    }

    // MARK: Counts

    @Test("parked clients still count: databus_connections and $SYS/broker/clients/connected")
    func parkedClientsAreCounted() async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.sysInterval = 1 }
        try await withParkingBroker(configure) { port, broker in
            var clients: [CodecConnection] = []
            for index in 0..<3 { clients.append(try await connectAccepted(port: port, "counted-\(index)", keepAlive: 60)) }
            try await waitParked(broker, 3)
            #expect(value(broker, "databus_connections") == 3)
            let monitor = try await connectAccepted(port: port, "counted-monitor", keepAlive: 60)
            try await monitor.subscribe("$SYS/broker/clients/connected", qos: .atMostOnce)
            var connected: String?
            let deadline = ContinuousClock.now + .seconds(5)
            while connected != "4", ContinuousClock.now < deadline {
                connected = try await monitor.receivePublish(within: 5).payloadString
            }
            #expect(connected == "4")
            #expect(parked(broker) == 3)
            for client in clients { await client.close() }
            await monitor.close()
        }
    }

    // MARK: Keep alive and shutdown

    // Found by this test: input on a parked socket did not count as the client's activity, so a
    // lot slow to give the connection back could close a client that was on time (0x8D).
    @Test("a packet that reaches a parked connection before its keep alive runs out is read, even when the lot's thread is slow to give it back")
    func packetInTimeWhileLotBusy() async throws {
        let configuration = BrokerConfiguration.testing {
            $0.parkIdleConnections = 1
            $0.listeners[0].maxConnections = 1
        }
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "slow") { _ in SlowRefusalLogHandler() })
        let port = try #require(try await broker.start().first?.port)
        do {
            let client = try await connectAccepted(port: port, "on-time", keepAlive: 2)
            try await waitParked(broker, 1)
            // Answered by the lot, which notes the client's activity now: 3 s of silence allowed from here.
            #expect(try await client.roundTrip().isEmpty)
            let pinged = ContinuousClock.now
            try await Task.sleep(until: pinged + .milliseconds(2_350))
            #expect(parked(broker) == 1)
            // A connection over max_connections: the lot's thread refuses it and logs, slowly...
            let refused = try PlainSocket.connect(host: "127.0.0.1", port: port)
            defer { refused.close() }
            try await Task.sleep(until: pinged + .milliseconds(2_600))
            // ...while the client publishes, 0.4 s before its keep alive runs out.
            try await client.send(
                .publish(PublishPacket(topicName: "on/time", payload: ByteBuffer(string: "x"), qos: .atLeastOnce, packetIdentifier: 1))
            )
            let answer = try await client.receive(within: 5)
            // PUBACK (0x10: nobody subscribed), not DISCONNECT 0x8D.
            guard case .puback(let ack) = answer else {
                Issue.record("a client heard from in time was closed: \(answer)")
                return
            }
            #expect(ack.packetIdentifier == 1)
            await client.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }

    // Found by this test: parked connections, resumed for their DISCONNECT at shutdown, were
    // left lingering for 5 s instead of being closed as the others are.
    @Test("after shutdown() a parked client's connection is closed, as an unparked one's is, not left lingering")
    func shutdownClosesParkedConnections() async throws {
        let configuration = BrokerConfiguration.testing { $0.parkIdleConnections = 1 }
        let broker = MQTTBroker(configuration: configuration, logger: Self.quiet)
        let port = try #require(try await broker.start().first?.port)
        let parkedClient = try PlainSocket.connect(host: "127.0.0.1", port: port)
        defer { parkedClient.close() }
        try parkedClient.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "linger-parked", keepAlive: 60)))
        guard case .connack = try await parkedClient.receive() else { throw InteropError("no CONNACK") }
        do {
            try await waitParked(broker, 1)
        } catch {
            await broker.shutdown()
            throw error
        }
        // Connected just now: not parked when the broker shuts down.
        let activeClient = try PlainSocket.connect(host: "127.0.0.1", port: port)
        defer { activeClient.close() }
        try activeClient.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "linger-active", keepAlive: 60)))
        guard case .connack = try await activeClient.receive() else { throw InteropError("no CONNACK") }
        await broker.shutdown()
        for (name, client) in [("unparked", activeClient), ("parked", parkedClient)] {
            #expect(try await client.receive() == .disconnect(DisconnectPacket(reasonCode: .serverShuttingDown)), "\(name)")
            // Neither client closes its side: the broker must close the connection itself.
            #expect(try await client.peerFullyClosed(within: 1), "\(name): still open (lingering) after shutdown() returned")
        }
    }

    @Test("a parked client whose connection is reset (RST) has its will published and frees its max_connections slot")
    func resetWhileParked() async throws {
        let configure: (inout BrokerConfiguration) -> Void = { $0.listeners[0].maxConnections = 2 }
        try await withParkingBroker(configure) { port, broker in
            let watcher = try await willWatcher(port: port, "rst-watcher")
            let socket = try PlainSocket.connect(host: "127.0.0.1", port: port)
            let will = ConnectPacket.Will(topic: "wills/rst", payload: ByteBuffer(string: "reset"), qos: .atLeastOnce)
            try socket.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "rst-cam", keepAlive: 60, will: will)))
            guard case .connack = try await socket.receive() else { throw InteropError("no CONNACK") }
            try await waitParked(broker, 2)
            socket.reset()
            let publish = try await watcher.receivePublish()
            #expect(publish.topicName == "wills/rst")
            try await watcher.acknowledge(publish)
            try await waitUntil("databus_connections is \(value(broker, "databus_connections")), expected 1") {
                value(broker, "databus_connections") == 1
            }
            // Its slot is free again (the count of sockets drops when the channel's pipeline is
            // torn down, a moment after the session's end is counted), more than once.
            var freed = false
            let deadline = ContinuousClock.now + .seconds(2)
            while !freed, ContinuousClock.now < deadline {
                if let (next, connack) = try? await connect(port: port, "rst-next"), connack.reasonCode == .success {
                    freed = true
                    try await next.disconnect()
                } else {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(freed)
            for round in 1..<3 {
                let (next, connack) = try await connect(port: port, "rst-next-\(round)")
                #expect(connack.reasonCode == .success, "round \(round)")
                try await next.disconnect()
            }
            await watcher.close()
        }
    }

    // MARK: Broker processes

    @Test("persistent parked subscribers lose nothing acknowledged when the broker is SIGKILLed and restarted")
    func persistentParkedAcrossKill() async throws {
        let metricsPort = try await Mosquitto.freePort()
        let configuration = """
            park_idle_connections 1
            persistence true
            persistence_location {DIRECTORY}/
            sys_interval 0
            metrics_listener \(metricsPort) 127.0.0.1
            """
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let expiry: Properties = [.sessionExpiryInterval(3600)]
            let subscriber = try await connectAccepted(port: broker.port, "durable-sub", cleanStart: false, keepAlive: 60, properties: expiry)
            try await subscriber.subscribe("durable/#", qos: .atLeastOnce)
            let v3 = try await connectAccepted(port: broker.port, "durable-sub-3", version: .v3_1_1, cleanStart: false, keepAlive: 60)
            try await v3.subscribe("durable/#", qos: .exactlyOnce)
            let publisher = try await connectAccepted(port: broker.port, "durable-pub", keepAlive: 60)
            var acknowledged: [String] = []
            for number in 1...4 {
                try await waitUntil("the three clients parked") {
                    Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) == 3
                }
                // Received by the subscribers and never acknowledged by them.
                let payload = "k\(number)"
                #expect(try await publisher.publish("durable/x", payload, qos: .atLeastOnce, packetIdentifier: UInt16(number)) == .success)
                acknowledged.append(payload)
            }
            await broker.kill()
            await subscriber.close()
            await v3.close()
            await publisher.close()
            try await broker.restart()
            for (name, version) in [("durable-sub", MQTTProtocolVersion.v5), ("durable-sub-3", .v3_1_1)] {
                let (again, connack) = try await connect(
                    port: broker.port,
                    name,
                    version: version,
                    cleanStart: false,
                    keepAlive: 60,
                    properties: version == .v5 ? expiry : []
                )
                #expect(connack.sessionPresent, "\(name)")
                var received: Set<String> = []
                while let publish = try? await again.receivePublish(within: 2) {
                    received.insert(publish.payloadString)
                    try await again.acknowledge(publish)
                }
                let missing = Set(acknowledged).subtracting(received)
                #expect(missing.isEmpty, "\(name) lost \(missing.sorted())")
                await again.close()
            }
        }
    }

    // Found by this test (parked or not): shutdown() waited a fixed 50 ms for the DISCONNECTs
    // to leave, too little for 300 connections; it now waits (2 s at most) until every
    // connection has ended, which each does after writing its DISCONNECT.
    @Test(
        "SIGTERM to a broker process with 300 idle 5.0 clients, parked (park_idle_connections 1) or not (0): every one is told 0x8B before the connection closes",
        arguments: [1, 0]
    )
    func sigtermWithManyParked(parkAfter: Int) async throws {
        let metricsPort = try await Mosquitto.freePort()
        let configuration = "park_idle_connections \(parkAfter)\nsys_interval 0\nmetrics_listener \(metricsPort) 127.0.0.1\n"
        let broker = try await DatabusBrokerProcess.start(extraConfiguration: configuration)
        defer { Task { await broker.stop() } }
        let count = 300
        var clients: [CodecConnection] = []
        for index in 0..<count { clients.append(try await connectAccepted(port: broker.port, "term-\(index)", keepAlive: 60)) }
        try await waitUntil("the clients parked", within: 15) {
            Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) == (parkAfter > 0 ? count : 0)
        }
        if parkAfter == 0 { try await Task.sleep(for: .milliseconds(1_500)) }
        broker.signal(SIGTERM)
        var told = 0
        var other: [String] = []
        for client in clients {
            let packets = (try? await client.packetsUntilClosed(within: 10)) ?? []
            if packets == [.disconnect(DisconnectPacket(reasonCode: .serverShuttingDown))] {
                told += 1
            } else if other.count < 5 {
                other.append("\(packets)")
            }
            await client.close()
        }
        #expect(told == count, "\(count - told) clients were not told 0x8B, e.g. \(other)")
    }

    @Test("a broker process's descriptors return to where they were after connections park, wake and end every way")
    func noDescriptorLeak() async throws {
        let metricsPort = try await Mosquitto.freePort()
        let configuration = "park_idle_connections 1\nsys_interval 0\nmetrics_listener \(metricsPort) 127.0.0.1\n"
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let port = broker.port
            // One connection parked and closed first: what a broker process keeps after its first
            // connections (lazily made event loop state) is in the baseline.
            let warmUp = try await connectAccepted(port: port, "warm-up", keepAlive: 60)
            try await waitUntil("warm-up parked") { Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) == 1 }
            try await warmUp.disconnect()
            try await Task.sleep(for: .milliseconds(300))
            let baseline = openDescriptors(broker.pid)
            #expect(baseline > 0)

            let count = 40
            var clients: [CodecConnection] = []
            for index in 0..<count {
                let client = try await connectAccepted(port: port, "fd-\(index)", cleanStart: false, keepAlive: index % 4 == 3 ? 1 : 60)
                try await client.subscribe("fd/\(index)", qos: .atLeastOnce)
                clients.append(client)
            }
            let publisher = try await connectAccepted(port: port, "fd-pub", keepAlive: 60)
            try await waitUntil("the clients parked", within: 15) {
                Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) >= count / 4 * 3
            }
            // Woken by a message each, then ended: DISCONNECT, dropped, taken over, keep alive (index % 4 == 3).
            for index in 0..<count where index % 4 != 3 {
                #expect(try await publisher.publish("fd/\(index)", "x", qos: .atLeastOnce, packetIdentifier: UInt16(index + 1)) == .success)
                let publish = try await clients[index].receivePublish()
                try await clients[index].acknowledge(publish)
            }
            try await waitUntil("the clients parked again", within: 15) {
                Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) >= count / 4 * 3
            }
            var takers: [CodecConnection] = []
            for index in 0..<count {
                switch index % 4 {
                case 0: try await clients[index].send(.disconnect(DisconnectPacket()))
                case 1: await clients[index].close()
                case 2:
                    let (taker, _) = try await connect(port: port, "fd-\(index)", cleanStart: false, keepAlive: 60)
                    takers.append(taker)
                default: break
                }
            }
            for taker in takers { try await taker.disconnect() }
            try await publisher.disconnect()
            // Broker-closed connections linger up to 5 s for the client to read why.
            try await Task.sleep(for: .seconds(2))
            for client in clients { await client.close() }
            try await waitUntil("\(openDescriptors(broker.pid)) descriptors open, \(baseline) before", within: 10) {
                openDescriptors(broker.pid) <= baseline
            }
            #expect(Self.value("databus_connections", in: try await scrape(metricsPort: metricsPort)) == 0)
            #expect(Self.value("databus_connections_parked", in: try await scrape(metricsPort: metricsPort)) == 0)
        }
    }
}

/// Drops every log message, but takes 0.9 s over a refusal for max_connections (a slow log
/// destination), on whatever thread logs it.
private struct SlowRefusalLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.message.description.contains("max_connections") { usleep(900_000) }
    }
}
