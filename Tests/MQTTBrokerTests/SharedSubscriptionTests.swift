import DatabusTestSupport
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// Starts a broker on a free loopback port for one test.
private func withSharedTestBroker(_ body: (Int) async throws -> Void) async throws {
    var configuration = BrokerConfiguration()
    configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
    configuration.allowAnonymous = true
    configuration.sysInterval = 0
    let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test.shared"))
    let addresses = try await broker.start()
    do {
        try await body(addresses[0].port!)
    } catch {
        await broker.shutdown()
        throw error
    }
    await broker.shutdown()
}

private func subscribe(_ connection: CodecConnection, _ filter: String, qos: QoS = .atLeastOnce) async throws {
    try await connection.send(
        .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: filter, options: .init(qos: qos))]))
    )
    try await connection.expectNext(.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.granted(qos)])))
}

/// Receives `count` PUBLISH packets, acknowledging QoS 1 ones when `acknowledge` is set.
private func receivePublishes(_ connection: CodecConnection, count: Int, acknowledge: Bool = true) async throws -> [PublishPacket] {
    var received: [PublishPacket] = []
    while received.count < count {
        let packet = try await connection.receive()
        guard case .publish(let publish) = packet else { continue }
        received.append(publish)
        if acknowledge, publish.qos == .atLeastOnce, let identifier = publish.packetIdentifier {
            try await connection.send(.puback(PubAckPacket(packetIdentifier: identifier)))
        }
    }
    return received
}

/// Publishes QoS 1 messages "1", "2", ... on lpr/plates, each with its number as packet
/// identifier, waiting for each PUBACK.
private func publishNumbered(_ camera: CodecConnection, _ numbers: ClosedRange<Int>) async throws {
    for number in numbers {
        try await camera.send(
            .publish(
                PublishPacket(topicName: "lpr/plates", payload: ByteBuffer(string: "\(number)"), qos: .atLeastOnce, packetIdentifier: UInt16(number))
            )
        )
        _ = try await camera.receive()
    }
}

/// The payloads of the PUBLISH packets `connection` receives (QoS 1 ones acknowledged), until
/// `count` have come or none comes for `seconds`.
private func receivePayloads(_ connection: CodecConnection, upTo count: Int, within seconds: Double = 5) async -> [String] {
    var payloads: [String] = []
    while payloads.count < count {
        guard let packet = try? await connection.receive(within: seconds) else { break }
        guard case .publish(let publish) = packet else { continue }
        payloads.append(String(buffer: publish.payload))
        if publish.qos == .atLeastOnce, let identifier = publish.packetIdentifier {
            try? await connection.send(.puback(PubAckPacket(packetIdentifier: identifier)))
        }
    }
    return payloads
}

/// What `connection` receives in the next `seconds`: its packets, and why it ended if it did
/// (a packet from the broker that does not decode, for example).
private func packets(from connection: CodecConnection, within seconds: Double) async -> (packets: [MQTTPacket], ended: String?) {
    var packets: [MQTTPacket] = []
    let deadline = ContinuousClock.now + .seconds(seconds)
    while ContinuousClock.now < deadline {
        do {
            packets.append(try await connection.receive(within: 0.1))
        } catch let error as InteropError where error.description.hasPrefix("no packet") {
            continue
        } catch {
            return (packets, "\(error)")
        }
    }
    return (packets, nil)
}

@Suite("Shared subscriptions")
struct SharedSubscriptionTests {
    @Test("each message goes to one member of the group, in turn, and to every non-shared subscriber", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func roundRobin(version: MQTTProtocolVersion) async throws {
        try await withSharedTestBroker { port in
            let first = try await CodecConnection.connect(port: port, version: version)
            let second = try await CodecConnection.connect(port: port, version: version)
            let watcher = try await CodecConnection.connect(port: port, version: version)
            let camera = try await CodecConnection.connect(port: port, version: version)
            defer { Task { for c in [first, second, watcher, camera] { await c.close() } } }
            for (connection, name) in [(first, "server-a"), (second, "server-b"), (watcher, "dashboard"), (camera, "camera-1")] {
                _ = try await connection.handshake(clientIdentifier: name)
            }
            try await subscribe(first, "$share/ingest/lprserver/cameras/+/detection")
            try await subscribe(second, "$share/ingest/lprserver/cameras/+/detection")
            try await subscribe(watcher, "lprserver/cameras/+/detection")

            for number in 1...10 {
                try await camera.send(
                    .publish(
                        PublishPacket(
                            topicName: "lprserver/cameras/1/detection",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(number)
                        )
                    )
                )
                _ = try await camera.receive()
            }
            let toFirst = try await receivePublishes(first, count: 5).map { String(buffer: $0.payload) }
            let toSecond = try await receivePublishes(second, count: 5).map { String(buffer: $0.payload) }
            let toWatcher = try await receivePublishes(watcher, count: 10).map { String(buffer: $0.payload) }
            #expect(Set(toFirst).isDisjoint(with: toSecond))
            #expect(Set(toFirst + toSecond) == Set((1...10).map(String.init)))
            #expect(toWatcher == (1...10).map(String.init))
        }
    }

    @Test("QoS 1 messages a member did not acknowledge go to another member when it disconnects")
    func redeliveryToAnotherMember() async throws {
        try await withSharedTestBroker { port in
            let silent = try await CodecConnection.connect(port: port, version: .v5)
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await camera.close() } }
            _ = try await silent.handshake(clientIdentifier: "server-silent")
            _ = try await camera.handshake(clientIdentifier: "camera-2")
            try await subscribe(silent, "$share/ingest/lpr/#")

            for number in 1...4 {
                try await camera.send(
                    .publish(
                        PublishPacket(
                            topicName: "lpr/plates",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(number)
                        )
                    )
                )
                _ = try await camera.receive()
            }
            // The only member receives all four and acknowledges none.
            let unacknowledged = try await receivePublishes(silent, count: 4, acknowledge: false)
            #expect(unacknowledged.count == 4)

            let other = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await other.close() } }
            _ = try await other.handshake(clientIdentifier: "server-other")
            try await subscribe(other, "$share/ingest/lpr/#")
            await silent.close()

            let redelivered = try await receivePublishes(other, count: 4).map { String(buffer: $0.payload) }
            #expect(redelivered.sorted() == ["1", "2", "3", "4"])
        }
    }

    @Test("a group's only member that keeps its session gets what it did not acknowledge again when it reconnects")
    func onlyMemberKeepsItsMessages() async throws {
        try await withSharedTestBroker { port in
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await camera.close() } }
            _ = try await camera.handshake(clientIdentifier: "camera-3")
            let persistent: Properties = [.sessionExpiryInterval(300)]
            let solo = try await joinGroup(port: port, "server-solo", properties: persistent)

            try await publishNumbered(camera, 1...4)
            // Received, not acknowledged, then the connection drops.
            #expect(try await receivePublishes(solo, count: 4, acknowledge: false).count == 4)
            await solo.close()
            // Two more while it is away.
            try await publishNumbered(camera, 5...6)

            let back = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await back.close() } }
            let connack = try await back.handshake(clientIdentifier: "server-solo", cleanStart: false, properties: persistent)
            #expect(connack.sessionPresent)
            let again = try await receivePublishes(back, count: 6).map { String(buffer: $0.payload) }
            #expect(again.sorted() == ["1", "2", "3", "4", "5", "6"])
        }
    }

    @Test("copies waiting for a member whose session expires go to another member of the group")
    func expiredMembersCopiesMove() async throws {
        try await withSharedTestBroker { port in
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await camera.close() } }
            _ = try await camera.handshake(clientIdentifier: "camera-4")
            let shortLived = try await joinGroup(port: port, "server-short", properties: [.sessionExpiryInterval(1)])
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let keeper = try await joinGroup(port: port, "server-keeper", properties: lasting)
            await shortLived.close()
            await keeper.close()

            // Both away: the group's copies wait with one member or the other, in turn.
            try await publishNumbered(camera, 1...6)
            // The short-lived session expires: its copies go to the member that remains.
            try await Task.sleep(for: .seconds(2))
            let back = try await resumeSession(port: port, "server-keeper", properties: lasting)
            defer { Task { await back.close() } }
            let received = try await receivePublishes(back, count: 6).map { String(buffer: $0.payload) }
            #expect(received.sorted() == ["1", "2", "3", "4", "5", "6"])
        }
    }

    @Test("without persistence too, a member that comes back gets the copies that waited for an absent member")
    func returningMemberGathersWithoutStore() async throws {
        try await withSharedTestBroker { port in
            let lasting: Properties = [.sessionExpiryInterval(3_600)]
            for name in ["server-gone", "server-back"] { await (try await joinGroup(port: port, name, properties: lasting)).close() }
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await camera.close() } }
            _ = try await camera.handshake(clientIdentifier: "camera-13")
            try await publishNumbered(camera, 1...6)
            let back = try await resumeSession(port: port, "server-back", properties: lasting)
            defer { Task { await back.close() } }
            let received = try await receivePublishes(back, count: 6).map { String(buffer: $0.payload) }
            #expect(received.sorted() == ["1", "2", "3", "4", "5", "6"])
        }
    }

    @Test("copies gathered from an absent member that the returning member has no room for stay with the absent one, not dropped")
    func gatheringKeepsWhatDoesNotFit() async throws {
        // Each member's own queue holds its half; the returning member's queue cannot hold both.
        try await withBroker(.testing { $0.maxQueuedMessages = 30 }) { port in
            let lasting: Properties = [.sessionExpiryInterval(3_600)]
            for name in ["server-gone", "server-back"] { await (try await joinGroup(port: port, name, properties: lasting)).close() }
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await camera.close() } }
            _ = try await camera.handshake(clientIdentifier: "camera-14")
            try await publishNumbered(camera, 1...60)

            let back = try await resumeSession(port: port, "server-back", properties: lasting)
            var received = await receivePayloads(back, upTo: 60, within: 2)
            await back.close()
            let gone = try await resumeSession(port: port, "server-gone", properties: lasting)
            defer { Task { await gone.close() } }
            received += await receivePayloads(gone, upTo: 60 - received.count, within: 2)
            #expect(received.sorted { Int($0) ?? 0 < Int($1) ?? 0 } == (1...60).map(String.init), "received \(received.count) of 60")
        }
    }

    @Test("copies gathered from an absent member are not dropped because the member that joins may not read them")
    func gatheringRespectsTheJoiningMembersACL() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let acl = try folder.write(
            "acl",
            """
            user server-all
            topic read lpr/#
            user server-limited
            topic read lpr/#
            topic deny lpr/restricted/#
            user camera
            topic write lpr/#
            """
        )
        try await withBroker(.testing { $0.security.aclFile = acl }) { port in
            let lasting: Properties = [.sessionExpiryInterval(3_600)]
            func connect(_ name: String, cleanStart: Bool = true, properties: Properties = []) async throws -> CodecConnection {
                let connection = try await CodecConnection.connect(port: port, version: .v5)
                try await connection.send(
                    .connect(ConnectPacket(clientIdentifier: name, cleanStart: cleanStart, keepAlive: 30, username: name, properties: properties))
                )
                guard case .connack(let connack) = try await connection.receive(), connack.reasonCode == .success else {
                    throw InteropError("\(name) was not admitted")
                }
                return connection
            }
            let all = try await connect("server-all", cleanStart: false, properties: lasting)
            try await subscribe(all, "$share/ingest/lpr/#")
            await all.close()
            // The group's only member is away: the copies wait for it.
            let camera = try await connect("camera")
            defer { Task { await camera.close() } }
            for number in 1...5 {
                try await camera.send(
                    .publish(
                        PublishPacket(
                            topicName: "lpr/restricted/plates",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(number)
                        )
                    )
                )
                _ = try await camera.receive()
            }
            // A member that may not read them joins the group.
            let limited = try await connect("server-limited")
            defer { Task { await limited.close() } }
            try await subscribe(limited, "$share/ingest/lpr/#")
            let toLimited = await receivePayloads(limited, upTo: 5, within: 1)
            #expect(toLimited.isEmpty)

            let back = try await connect("server-all", cleanStart: false, properties: lasting)
            defer { Task { await back.close() } }
            let received = await receivePayloads(back, upTo: 5, within: 2)
            #expect(received.sorted() == ["1", "2", "3", "4", "5"], "received \(received.count) of 5")
        }
    }

    @Test("no-local on a shared subscription is a protocol error, an invalid share name is refused")
    func invalidSharedSubscriptions() async throws {
        try await withSharedTestBroker { port in
            let client = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await client.close() } }
            _ = try await client.handshake(clientIdentifier: "bad-share")
            try await client.send(.subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "$share/g+/a")])))
            try await client.expectNext(.suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.topicFilterInvalid])))
            try await client.send(
                .subscribe(
                    SubscribePacket(packetIdentifier: 2, subscriptions: [Subscription(topicFilter: "$share/g/a", options: .init(noLocal: true))])
                )
            )
            try await client.expectNext(.disconnect(DisconnectPacket(reasonCode: .protocolError)))
        }
    }

    @Test("retained messages are not sent for a new shared subscription")
    func noRetainedForShared() async throws {
        try await withSharedTestBroker { port in
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            let server = try await CodecConnection.connect(port: port, version: .v5)
            defer {
                Task {
                    await camera.close()
                    await server.close()
                }
            }
            _ = try await camera.handshake(clientIdentifier: "camera-3")
            _ = try await server.handshake(clientIdentifier: "server-3")
            try await camera.send(.publish(PublishPacket(topicName: "lpr/status", payload: ByteBuffer(string: "up"), retain: true)))
            // A round trip, so the retained message is stored before the subscription is made.
            try await camera.send(.pingreq)
            try await camera.expectNext(.pingresp)
            try await subscribe(server, "$share/g/lpr/#")
            try await server.send(.pingreq)
            // The PINGRESP comes first: no retained PUBLISH was queued before it.
            try await server.expectNext(.pingresp)
        }
    }
}

@Suite("Shared subscriptions with paho-mqtt")
struct SharedSubscriptionPahoTests {
    @Test("two paho-mqtt 5.0 members of a group share the messages paho publishes, each once")
    func pahoMembers() async throws {
        try await withSharedTestBroker { port in
            let script = """
                import sys, time, threading
                import paho.mqtt.client as mqtt
                from paho.mqtt.subscribeoptions import SubscribeOptions
                port = int(sys.argv[1])
                def make(name):
                    if hasattr(mqtt, "CallbackAPIVersion"):
                        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
                    return mqtt.Client(client_id=name, protocol=mqtt.MQTTv5)
                received = {"a": [], "b": []}
                subscribed = threading.Semaphore(0)
                members = []
                for name in ["a", "b"]:
                    client = make("paho-" + name)
                    client.on_message = lambda c, u, m, name=name: received[name].append(m.payload.decode())
                    client.on_subscribe = lambda *args: subscribed.release()
                    client.connect("127.0.0.1", port)
                    client.loop_start()
                    client.subscribe("$share/ingest/lprserver/cameras/+/detection", options=SubscribeOptions(qos=1))
                    members.append(client)
                for _ in members:
                    subscribed.acquire(timeout=5)
                camera = make("paho-camera")
                camera.connect("127.0.0.1", port)
                camera.loop_start()
                for number in range(1, 21):
                    camera.publish("lprserver/cameras/4/detection", str(number), qos=1).wait_for_publish(5)
                deadline = time.time() + 5
                while len(received["a"]) + len(received["b"]) < 20 and time.time() < deadline:
                    time.sleep(0.05)
                for client in members + [camera]:
                    client.disconnect()
                    client.loop_stop()
                print(",".join(received["a"]))
                print(",".join(received["b"]))
                """
            let result = try await runProgram("python3", ["-c", script, "\(port)"])
            #expect(result.status == 0)
            let lines = result.output.split(separator: "\n", omittingEmptySubsequences: false).map { $0.split(separator: ",").map(String.init) }
            try #require(lines.count >= 2)
            let (first, second) = (lines[0], lines[1])
            #expect(!first.isEmpty && !second.isEmpty, "both members should get messages: \(first) / \(second)")
            #expect(Set(first).isDisjoint(with: second))
            #expect((first + second).sorted { Int($0)! < Int($1)! } == (1...20).map(String.init))
        }
    }
}

/// `databus broker` with persistence, otherwise at default settings.
private let persistentBroker = """
    persistence true
    persistence_location {DIRECTORY}/store
    sys_interval 0
    """

/// A 5.0 client `name` that resumes its session with `properties` (nothing else).
private func resumeSession(port: Int, _ name: String, properties: Properties) async throws -> CodecConnection {
    let connection = try await CodecConnection.connect(port: port, version: .v5)
    _ = try await connection.handshake(clientIdentifier: name, cleanStart: false, properties: properties)
    return connection
}

/// `member` joins the group `ingest` with a session that lasts `expiry` seconds and leaves;
/// then `camera` publishes `numbers` (see ``publishNumbered(_:_:)``), which wait for it.
private func publishWhileAway(port: Int, camera name: String, member: String, expiry: UInt32, _ numbers: ClosedRange<Int>) async throws {
    let camera = try await CodecConnection.connect(port: port, version: .v5)
    _ = try await camera.handshake(clientIdentifier: name)
    let away = try await joinGroup(port: port, member, properties: [.sessionExpiryInterval(expiry)])
    await away.close()
    try await publishNumbered(camera, numbers)
    await camera.close()
}

/// A 5.0 client `name` that resumes its session with `properties` and joins the group `ingest` on lpr/#.
private func joinGroup(port: Int, _ name: String, properties: Properties, qos: QoS = .atLeastOnce) async throws -> CodecConnection {
    let member = try await resumeSession(port: port, name, properties: properties)
    try await subscribe(member, "$share/ingest/lpr/#", qos: qos)
    return member
}

@Suite("Shared subscriptions with persistence", .serialized)
struct SharedSubscriptionPersistenceTests {
    @Test("copies waiting in the store for a member whose session expires go to another member, across a SIGKILL of the broker")
    func waitingCopiesMoveAcrossRestart() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-5")
            let shortLived = try await joinGroup(port: broker.port, "server-short", properties: [.sessionExpiryInterval(2)])
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let keeper = try await joinGroup(port: broker.port, "server-keeper", properties: lasting)
            await shortLived.close()
            await keeper.close()

            // Both away: each acknowledged copy waits in the store for one member or the other.
            try await publishNumbered(camera, 1...6)
            await camera.close()
            await broker.kill()
            try await broker.restart()
            // The restart counts as the short-lived member's disconnection: it expires 2 s later.
            try await Task.sleep(for: .seconds(3))

            let back = try await CodecConnection.connect(port: broker.port, version: .v5)
            let connack = try await back.handshake(clientIdentifier: "server-keeper", cleanStart: false, properties: lasting)
            #expect(connack.sessionPresent)
            let received = try await receivePublishes(back, count: 6).map { String(buffer: $0.payload) }
            #expect(received.sorted() == ["1", "2", "3", "4", "5", "6"])
            await back.close()
        }
    }

    @Test("copies that waited for an absent member go to a member that comes back, without waiting for the absent one to return or expire")
    func returningMemberGathersTheGroupsCopies() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let lasting: Properties = [.sessionExpiryInterval(86_400)]
            for name in ["server-gone", "server-back"] { await (try await joinGroup(port: broker.port, name, properties: lasting)).close() }
            // Nobody in the group is connected: the copies wait, half for each member.
            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-12")
            try await publishNumbered(camera, 1...10)
            await camera.close()
            await broker.kill()
            try await broker.restart()

            // One member comes back; the other is gone for good (its session lasts a day).
            let back = try await resumeSession(port: broker.port, "server-back", properties: lasting)
            let received = await receivePayloads(back, upTo: 10)
            #expect(received.sorted { Int($0) ?? 0 < Int($1) ?? 0 } == (1...10).map(String.init), "received \(received.count) of 10")
            await back.close()
        }
    }

    @Test("copies a member received but did not acknowledge keep their group across a restart, and reach another member durably")
    func unacknowledgedCopiesKeepTheirGroup() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-6")
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let keeper = try await joinGroup(port: broker.port, "server-keeper", properties: lasting)
            await keeper.close()
            let shortLived = try await joinGroup(port: broker.port, "server-short", properties: [.sessionExpiryInterval(2)])

            // The connected member receives all four and acknowledges none; then the broker dies.
            try await publishNumbered(camera, 1...4)
            #expect(try await receivePublishes(shortLived, count: 4, acknowledge: false).count == 4)
            await camera.close()
            await broker.kill()
            try await broker.restart()
            // The short-lived session expires 2 s after the restart: its four copies go to the
            // member that remains, which is away; then the broker dies again.
            try await Task.sleep(for: .seconds(3))
            await broker.kill()
            try await broker.restart()

            let back = try await resumeSession(port: broker.port, "server-keeper", properties: lasting)
            let received = try await receivePublishes(back, count: 4).map { String(buffer: $0.payload) }
            #expect(received.sorted() == ["1", "2", "3", "4"])
            await back.close()
        }
    }

    @Test("copies moved to a member whose session ends in the same moment go on to the member that remains")
    func movedCopiesOutliveTheirReceiversEnd() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-7")
            // Short, but long enough for the set-up below on a loaded machine.
            let shortLived: Properties = [.sessionExpiryInterval(3)]
            let lasting: Properties = [.sessionExpiryInterval(300)]
            // The first member is alone when the messages come: they wait in the store for it.
            let first = try await joinGroup(port: broker.port, "server-first", properties: shortLived)
            await first.close()
            // All at once, then their PUBACKs.
            try await camera.send(
                (1...50).map { number in
                    .publish(
                        PublishPacket(
                            topicName: "lpr/plates",
                            payload: ByteBuffer(string: "\(number)"),
                            qos: .atLeastOnce,
                            packetIdentifier: UInt16(number)
                        )
                    )
                }
            )
            for _ in 1...50 { _ = try await camera.receive() }
            await camera.close()
            // Two more members join and leave: the second keeps its session as briefly as the
            // first, the keeper for longer. The second holds no copies of its own.
            let second = try await joinGroup(port: broker.port, "server-second", properties: shortLived)
            await second.close()
            let keeper = try await joinGroup(port: broker.port, "server-keeper", properties: lasting)
            await keeper.close()

            // The restart counts as every member's disconnection: the first and the second
            // expire together 3 s later, and the first one's copies must not end with the second.
            await broker.kill()
            try await broker.restart()
            try await Task.sleep(for: .seconds(4))

            let back = try await CodecConnection.connect(port: broker.port, version: .v5)
            let connack = try await back.handshake(clientIdentifier: "server-keeper", cleanStart: false, properties: lasting)
            #expect(connack.sessionPresent)
            let received = await receivePayloads(back, upTo: 50)
            #expect(received.sorted { Int($0) ?? 0 < Int($1) ?? 0 } == (1...50).map(String.init), "the keeper received \(received.count) of 50")
            await back.close()
        }
    }

    @Test("copies moved to a member subscribed at QoS 0 reach it once, and not again after a restart")
    func copiesMovedAtQoS0AreNotKept() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            try await publishWhileAway(port: broker.port, camera: "camera-8", member: "server-first", expiry: 2, 1...4)
            // A member that keeps its session but takes the group's messages at QoS 0.
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let member = try await joinGroup(port: broker.port, "server-qos0", properties: lasting, qos: .atMostOnce)

            // The first member's session expires: its copies reach the member that remains, at QoS 0.
            let moved = await receivePayloads(member, upTo: 4, within: 5)
            #expect(moved.sorted() == ["1", "2", "3", "4"])
            await member.close()
            await broker.kill()
            try await broker.restart()

            let back = try await resumeSession(port: broker.port, "server-qos0", properties: lasting)
            // Nothing is due any more: a QoS 0 copy is never kept for a client.
            let again = await packets(from: back, within: 2)
            #expect(again.packets.isEmpty && again.ended == nil, "after the restart: \(again)")
            await back.close()
        }
    }

    @Test("copies waiting in the store for a member whose session expires go to a member that keeps no session")
    func waitingCopiesReachAMemberWithoutSession() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            try await publishWhileAway(port: broker.port, camera: "camera-9", member: "server-first", expiry: 2, 1...4)
            // The group's other member is connected, and its session ends with its connection.
            let worker = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await worker.handshake(clientIdentifier: "server-worker")
            try await subscribe(worker, "$share/ingest/lpr/#")

            // The first member's session expires 2 s after it left: its copies go to the worker.
            let received = await receivePayloads(worker, upTo: 4, within: 5)
            #expect(received.sorted() == ["1", "2", "3", "4"])
            await worker.close()
        }
    }

    @Test("copies re-sent to a member that took its session over stay with it when its old connection ends")
    func takeoverKeepsTheCopiesItWasResent() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let other = try await joinGroup(port: broker.port, "server-other", properties: lasting)
            await other.close()
            let old = try await joinGroup(port: broker.port, "server-keeper", properties: lasting)
            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-11")
            try await publishNumbered(camera, 1...4)
            await camera.close()
            #expect(try await receivePublishes(old, count: 4, acknowledge: false).count == 4)

            // The client comes back on a new connection and takes its session over: the four are
            // sent again there. Its old connection ends (as the client closes it) before it has
            // acknowledged them on the new one.
            let again = try await CodecConnection.connect(port: broker.port, version: .v5)
            let connack = try await again.handshake(clientIdentifier: "server-keeper", cleanStart: false, properties: lasting)
            #expect(connack.sessionPresent)
            await old.close()
            try await Task.sleep(for: .milliseconds(500))
            let resent = await receivePayloads(again, upTo: 4)
            #expect(resent.sorted() == ["1", "2", "3", "4"])
            try await Task.sleep(for: .milliseconds(200))
            await again.close()

            // The client had them all: nothing is for the other member.
            let otherBack = try await resumeSession(port: broker.port, "server-other", properties: lasting)
            let toOther = await packets(from: otherBack, within: 1)
            #expect(toOther.packets.isEmpty, "the other member received: \(toOther.packets)")
            await otherBack.close()
        }
    }

    @Test("a QoS 2 message a member was receiving when its connection broke is completed with that member, not sent to another (5.0 4.8.2)")
    func inflightQoS2StaysWithItsMember() async throws {
        try await DatabusBrokerProcess.with(extraConfiguration: persistentBroker) { broker in
            let lasting: Properties = [.sessionExpiryInterval(300)]
            let other = try await joinGroup(port: broker.port, "server-other", properties: lasting, qos: .exactlyOnce)
            await other.close()
            let chosen = try await joinGroup(port: broker.port, "server-chosen", properties: lasting, qos: .exactlyOnce)

            let camera = try await CodecConnection.connect(port: broker.port, version: .v5)
            _ = try await camera.handshake(clientIdentifier: "camera-10")
            let message = PublishPacket(topicName: "lpr/plates", payload: ByteBuffer(string: "once"), qos: .exactlyOnce, packetIdentifier: 1)
            try await camera.send(.publish(message))
            try await camera.expectNext(.pubrec(PubRecPacket(packetIdentifier: 1)))
            try await camera.send(.pubrel(PubRelPacket(packetIdentifier: 1)))
            try await camera.expectNext(.pubcomp(PubCompPacket(packetIdentifier: 1)))
            await camera.close()
            // The connected member receives it; its connection breaks before it answers PUBREC.
            let sent = try await receivePublishes(chosen, count: 1, acknowledge: false)
            #expect(sent.first?.qos == .exactlyOnce)
            await chosen.close()
            try await Task.sleep(for: .milliseconds(500))

            // The other member comes back first: the message is not for it.
            let otherBack = try await resumeSession(port: broker.port, "server-other", properties: lasting)
            let toOther = await packets(from: otherBack, within: 1)
            #expect(toOther.packets.isEmpty, "the other member received: \(toOther.packets)")
            await otherBack.close()
            // The chosen member reconnects: the delivery is completed with it.
            let chosenBack = try await resumeSession(port: broker.port, "server-chosen", properties: lasting)
            let resent = await packets(from: chosenBack, within: 2).packets
            let again: PublishPacket? = if case .publish(let publish)? = resent.first { publish } else { nil }
            #expect(again?.dup == true && again?.qos == .exactlyOnce, "the chosen member received: \(resent)")
            await chosenBack.close()
        }
    }
}

@Suite("Topic aliases towards the client")
struct OutgoingTopicAliasTests {
    @Test("a 5.0 client with a topic alias maximum gets the topic once, then the alias alone")
    func outgoingAliases() async throws {
        try await withSharedTestBroker { port in
            let server = try await CodecConnection.connect(port: port, version: .v5)
            let camera = try await CodecConnection.connect(port: port, version: .v5)
            defer {
                Task {
                    await camera.close()
                    await server.close()
                }
            }
            _ = try await server.handshake(clientIdentifier: "alias-server", properties: [.topicAliasMaximum(4)])
            _ = try await camera.handshake(clientIdentifier: "alias-camera")
            try await subscribe(server, "lprserver/#", qos: .atMostOnce)
            for payload in ["a", "b"] {
                try await camera.send(.publish(PublishPacket(topicName: "lprserver/cameras/9/detection", payload: ByteBuffer(string: payload))))
            }
            let received = try await receivePublishes(server, count: 2)
            #expect(received[0].topicName == "lprserver/cameras/9/detection")
            #expect(received[0].properties.topicAlias == 1)
            #expect(received[1].topicName == "")
            #expect(received[1].properties.topicAlias == 1)
            #expect(received.map { String(buffer: $0.payload) } == ["a", "b"])
        }
    }
}
