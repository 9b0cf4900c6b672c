import DatabusTestSupport
import Foundation
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

@Suite("ACL file")
struct AccessControlListTests {
    static let example = """
        # anonymous clients
        topic read lprserver/public/#

        user backend
        topic readwrite lprserver/#
        topic deny lprserver/secret/#
        topic write lprserver/cameras/+/config

        user camera-7
        topic write lprserver/cameras/7/detection
        topic read lprserver/cameras/7/config
        topic deny lprserver/cameras/7/detection/blocked
        topic lprserver/cameras/7/both

        pattern readwrite devices/%c/#
        pattern read users/%u/inbox
        """

    @Test("topic, user and pattern lines: read, write, readwrite, deny and the anonymous section")
    func rules() throws {
        let acl = try AccessControlList(parsing: Self.example)
        let anonymous = acl.access(username: nil, clientID: "anon-1")
        #expect(anonymous.allows(.read, topic: "lprserver/public/notice"))
        #expect(!anonymous.allows(.write, topic: "lprserver/public/notice"))
        #expect(!anonymous.allows(.read, topic: "lprserver/cameras/7/detection"))
        #expect(anonymous.allows(.readWrite, topic: "devices/anon-1/state"))
        #expect(!anonymous.allows(.read, topic: "users//inbox"))

        let backend = acl.access(username: "backend", clientID: "server-1")
        #expect(backend.allows(.readWrite, topic: "lprserver/cameras/7/detection"))
        #expect(!backend.allows(.read, topic: "lprserver/secret/keys"))
        #expect(!backend.allows(.write, topic: "lprserver/secret"))
        #expect(!backend.allows(.read, topic: "lprserver/public/notice") == false)
        #expect(backend.allows(.read, topic: "users/backend/inbox"))
        #expect(!backend.allows(.write, topic: "users/backend/inbox"))
        #expect(!backend.allows(.read, topic: "users/camera-7/inbox"))
        #expect(backend.allows(.write, topic: "devices/server-1/x/y"))
        #expect(!backend.allows(.write, topic: "devices/other/x"))

        let camera = acl.access(username: "camera-7", clientID: "cam7")
        #expect(camera.allows(.write, topic: "lprserver/cameras/7/detection"))
        #expect(!camera.allows(.read, topic: "lprserver/cameras/7/detection"))
        #expect(!camera.allows(.write, topic: "lprserver/cameras/8/detection"))
        #expect(camera.allows(.read, topic: "lprserver/cameras/7/config"))
        #expect(!camera.allows(.write, topic: "lprserver/cameras/7/config"))
        #expect(camera.allows(.readWrite, topic: "lprserver/cameras/7/both"))
        #expect(!camera.allows(.read, topic: "lprserver/public/notice"))
        #expect(!camera.allows(.write, topic: "lprserver/cameras/7/detection/blocked"))

        let stranger = acl.access(username: "stranger", clientID: "s")
        #expect(!stranger.allows(.read, topic: "lprserver/public/notice"))
        #expect(stranger.allows(.read, topic: "users/stranger/inbox"))
    }

    @Test("deny wins wherever it stands in the file")
    func denyWins() throws {
        let before = try AccessControlList(parsing: "topic deny a/b\ntopic readwrite a/#\n").access(username: nil, clientID: "c")
        let after = try AccessControlList(parsing: "topic readwrite a/#\ntopic deny a/b\n").access(username: nil, clientID: "c")
        for access in [before, after] {
            #expect(!access.allows(.read, topic: "a/b"))
            #expect(!access.allows(.write, topic: "a/b"))
            #expect(access.allows(.read, topic: "a/c"))
            #expect(!access.allowsSubscription(to: "a/b"))
            #expect(access.allowsSubscription(to: "a/#"))
        }
    }

    @Test("a subscription is allowed only inside a read rule: wildcards widen, never escape")
    func subscriptions() throws {
        let access = try AccessControlList(parsing: "topic read lpr/cameras/+/detection\ntopic read lpr/status/#\n")
            .access(username: nil, clientID: "c")
        #expect(access.allowsSubscription(to: "lpr/cameras/+/detection"))
        #expect(access.allowsSubscription(to: "lpr/cameras/7/detection"))
        #expect(!access.allowsSubscription(to: "lpr/cameras/#"))
        #expect(!access.allowsSubscription(to: "lpr/#"))
        #expect(!access.allowsSubscription(to: "#"))
        #expect(access.allowsSubscription(to: "lpr/status/#"))
        #expect(access.allowsSubscription(to: "lpr/status"))
        #expect(access.allowsSubscription(to: "lpr/status/+/x"))
        // "#" rules do not reach $SYS.
        let everything = try AccessControlList(parsing: "topic read #\n").access(username: nil, clientID: "c")
        #expect(everything.allowsSubscription(to: "a/b"))
        #expect(!everything.allowsSubscription(to: "$SYS/#"))
        #expect(!everything.allows(.read, topic: "$SYS/broker/uptime"))
    }

    @Test("%c and %u fill whole levels only, and never with values that hold / + or #")
    func patterns() throws {
        let acl = try AccessControlList(parsing: "pattern readwrite devices/%c/#\npattern read users/%u/inbox\n")
        #expect(acl.access(username: "u", clientID: "a/b").allows(.write, topic: "devices/a/b/x") == false)
        #expect(acl.access(username: "u+", clientID: "c").allows(.read, topic: "users/u+/inbox") == false)
        #expect(acl.access(username: nil, clientID: "c").allows(.read, topic: "users/%u/inbox") == false)
        #expect(acl.access(username: "u", clientID: "c").allows(.write, topic: "devices/c"))
    }

    @Test(
        "a malformed ACL line is an error naming the line",
        arguments: [("topic\n", 1), ("user backend\nsubscribe a\n", 2), ("topic read a/#/b\n", 1), ("user\n", 1)]
    )
    func malformed(text: String, line: Int) {
        #expect {
            try AccessControlList(parsing: text, file: "acl")
        } throws: { error in
            (error as? ConfigurationError)?.line == line
        }
    }
}

@Suite("ACL in the broker", .serialized)
struct BrokerAccessControlTests {
    /// A broker with anonymous clients allowed (usernames taken as given) and `acl` as its ACL file.
    private func withACL(_ acl: String, _ body: (Int, TemporaryDirectory) async throws -> Void) async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write("acl", acl)
        try await withBroker(.testing { $0.security.aclFile = path }) { port in try await body(port, folder) }
    }

    private func subscribe(_ connection: CodecConnection, _ filters: [String], qos: QoS = .atLeastOnce) async throws -> [ReasonCode] {
        try await connection.send(
            .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: filters.map { .init(topicFilter: $0, options: .init(qos: qos)) }))
        )
        let packet = try await connection.receive()
        guard case .suback(let suback) = packet else { throw InteropError("expected SUBACK, got \(packet)") }
        return suback.reasonCodes
    }

    private func publish(
        _ connection: CodecConnection,
        _ topic: String,
        _ text: String,
        qos: QoS = .atLeastOnce,
        retain: Bool = false,
        id: UInt16 = 1
    )
        async throws -> ReasonCode?
    {
        try await connection.send(
            .publish(
                PublishPacket(
                    topicName: topic,
                    payload: ByteBuffer(string: text),
                    qos: qos,
                    retain: retain,
                    packetIdentifier: qos == .atMostOnce ? nil : id
                )
            )
        )
        guard qos != .atMostOnce else { return nil }
        let packet = try await connection.receive()
        switch packet {
        case .puback(let ack): return ack.reasonCode
        case .pubrec(let received): return received.reasonCode
        default: throw InteropError("expected an acknowledgement, got \(packet)")
        }
    }

    /// The topics of the PUBLISH packets that arrive within `seconds`.
    private func received(_ connection: CodecConnection, within seconds: Double = 0.5) async -> [String] {
        var topics: [String] = []
        while let packet = try? await connection.receive(within: seconds) {
            if case .publish(let publish) = packet {
                topics.append(publish.topicName)
                if let identifier = publish.packetIdentifier, publish.qos == .atLeastOnce {
                    try? await connection.send(.puback(PubAckPacket(packetIdentifier: identifier)))
                }
            }
        }
        return topics
    }

    @Test("publish: v5 gets 0x87 in PUBACK and PUBREC, v3.1.1 is acknowledged and dropped; nothing reaches subscribers")
    func publishDenied() async throws {
        try await withACL("topic read #\nuser camera\ntopic write cams/1\n") { port, _ in
            let (listener, _) = try await connectWithCredentials(port: port, "listener")
            let outcome1 = try await subscribe(listener, ["cams/#"])
            #expect(outcome1 == [.grantedQoS1])

            let (v5, _) = try await connectWithCredentials(port: port, "cam-v5", username: "camera")
            let allowed = try await publish(v5, "cams/1", "ok")
            #expect(allowed == .success)
            let denied = try await publish(v5, "cams/2", "no")
            #expect(denied == .notAuthorized)
            let deniedQoS2 = try await publish(v5, "cams/2", "no", qos: .exactlyOnce, id: 2)
            #expect(deniedQoS2 == .notAuthorized)

            let (v3, _) = try await connectWithCredentials(port: port, "cam-v3", username: "camera", version: .v3_1_1)
            let silent = try await publish(v3, "cams/3", "no")
            #expect(silent == .success)
            let silentQoS2 = try await publish(v3, "cams/3", "no", qos: .exactlyOnce, id: 3)
            #expect(silentQoS2 == .success)
            try await v3.send(.pubrel(PubRelPacket(packetIdentifier: 3)))
            try await v3.expectNext(.pubcomp(PubCompPacket(packetIdentifier: 3)))

            let topics = await received(listener)
            #expect(topics == ["cams/1"])
            for connection in [listener, v5, v3] { await connection.close() }
        }
    }

    @Test("subscribe: SUBACK 0x80 in v3.1.1 and 0x87 in v5 for filters outside the read rules")
    func subscribeDenied() async throws {
        try await withACL("user ops\ntopic read status/#\ntopic deny status/private\n") { port, _ in
            let (v3, _) = try await connectWithCredentials(port: port, "ops-3", username: "ops", version: .v3_1_1)
            #expect(
                try await subscribe(v3, ["status/#", "#", "status/private", "status/+/x"]) == [
                    .grantedQoS1, .unspecifiedError, .unspecifiedError, .grantedQoS1,
                ]
            )
            let (v5, _) = try await connectWithCredentials(port: port, "ops-5", username: "ops")
            let outcome2 = try await subscribe(v5, ["other/#", "$share/g/status/#", "$share/g/#"])
            #expect(outcome2 == [.notAuthorized, .grantedQoS1, .notAuthorized])
            await v3.close()
            await v5.close()
        }
    }

    @Test("deliveries are checked one by one: a deny inside a granted subscription, retained messages and wills")
    func deliveriesFiltered() async throws {
        let acl = """
            user reader
            topic read lpr/#
            topic deny lpr/secret
            user writer
            topic write lpr/#
            topic write other/#
            """
        try await withACL(acl) { port, _ in
            let (writer, _) = try await connectWithCredentials(port: port, "writer", username: "writer")
            // Retained messages, one the reader may see and one it may not.
            _ = try await publish(writer, "lpr/open", "r1", retain: true, id: 1)
            _ = try await publish(writer, "lpr/secret", "r2", retain: true, id: 2)

            let (reader, _) = try await connectWithCredentials(port: port, "reader", username: "reader")
            let outcome3 = try await subscribe(reader, ["lpr/#"])
            #expect(outcome3 == [.grantedQoS1])
            let outcome4 = await received(reader)
            #expect(outcome4 == ["lpr/open"])

            _ = try await publish(writer, "lpr/secret", "live", id: 3)
            _ = try await publish(writer, "lpr/open", "live", id: 4)
            let outcome5 = await received(reader)
            #expect(outcome5 == ["lpr/open"])

            // A will on a topic the reader may not read is not delivered to it; one it may read is.
            let secretWill = ConnectPacket.Will(topic: "lpr/secret", payload: ByteBuffer(string: "gone"), qos: .atLeastOnce)
            let (dying, connack) = try await connectWithCredentials(port: port, "dying", username: "writer", will: secretWill)
            #expect(connack.reasonCode == .success)
            await dying.close()
            let openWill = ConnectPacket.Will(topic: "lpr/open", payload: ByteBuffer(string: "gone"), qos: .atLeastOnce)
            let (dying2, _) = try await connectWithCredentials(port: port, "dying2", username: "writer", will: openWill)
            await dying2.close()
            let outcome6 = await received(reader, within: 1)
            #expect(outcome6 == ["lpr/open"])
            await reader.close()
            await writer.close()
        }
    }

    @Test("a will on a topic the client may not write, or on $SYS, is dropped when it would go out (as in mosquitto)")
    func willNotWritable() async throws {
        try await withACL("user camera\ntopic write cams/7/#\nuser ops\ntopic read #\ntopic read $SYS/#\n") { port, _ in
            let (ops, _) = try await connectWithCredentials(port: port, "ops", username: "ops")
            let granted = try await subscribe(ops, ["cams/#", "$SYS/#"])
            #expect(granted == [.grantedQoS1, .grantedQoS1])
            for (index, topic) in ["cams/8/state", "$SYS/fake", "cams/7/state"].enumerated() {
                for version in [MQTTProtocolVersion.v5, .v3_1_1] {
                    let will = ConnectPacket.Will(topic: topic, payload: ByteBuffer(string: "offline"), qos: .atLeastOnce)
                    let (camera, connack) = try await connectWithCredentials(
                        port: port,
                        "camera-\(index)-\(version)",
                        username: "camera",
                        version: version,
                        will: will
                    )
                    #expect(connack.reasonCode == .success)
                    await camera.close()  // no DISCONNECT: the will is due
                }
            }
            let topics = await received(ops, within: 1)
            #expect(topics == ["cams/7/state", "cams/7/state"])
            await ops.close()
        }
    }

    @Test("patterns: %c and %u per client, in the broker")
    func patternsInBroker() async throws {
        try await withACL("pattern readwrite devices/%c/#\npattern read inbox/%u\ntopic write inbox/#\nuser admin\ntopic write inbox/#\n") {
            port,
            _ in
            let (alice, _) = try await connectWithCredentials(port: port, "dev-a", username: "alice")
            #expect(
                try await subscribe(alice, ["devices/dev-a/in/#", "devices/dev-b/#", "inbox/alice", "inbox/bob"]) == [
                    .grantedQoS1, .notAuthorized, .grantedQoS1, .notAuthorized,
                ]
            )
            let outcome7 = try await publish(alice, "devices/dev-a/state", "x")
            #expect(outcome7 == .noMatchingSubscribers)  // allowed; nobody listens there
            let outcome8 = try await publish(alice, "devices/dev-b/state", "x", id: 2)
            #expect(outcome8 == .notAuthorized)
            let (admin, _) = try await connectWithCredentials(port: port, "admin-1", username: "admin")
            let outcome9 = try await publish(admin, "inbox/alice", "hello")
            #expect(outcome9 == .success)
            let outcome10 = await received(alice)
            #expect(outcome10 == ["inbox/alice"])
            await alice.close()
            await admin.close()
        }
    }

    @Test("a reload applies a changed ACL to connected clients")
    func reloadAppliesToConnectedClients() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let path = try folder.write("acl", "topic readwrite feed/#\n")
        var configuration = BrokerConfiguration.testing { $0.security.aclFile = path }
        let broker = MQTTBroker(configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let port = try await broker.start()[0].port!
        do {
            let (reader, _) = try await connectWithCredentials(port: port, "reader")
            let outcome11 = try await subscribe(reader, ["feed/#"])
            #expect(outcome11 == [.grantedQoS1])
            let (writer, _) = try await connectWithCredentials(port: port, "writer")
            let outcome12 = try await publish(writer, "feed/a", "1")
            #expect(outcome12 == .success)
            let outcome13 = await received(reader)
            #expect(outcome13 == ["feed/a"])

            _ = try folder.write("acl", "topic readwrite feed/#\ntopic deny feed/b\n")
            configuration.maxInflightMessages = 10
            try await broker.reload(configuration)
            let outcome14 = try await publish(writer, "feed/b", "2", id: 2)
            #expect(outcome14 == .notAuthorized)
            let outcome15 = try await publish(writer, "feed/a", "3", id: 3)
            #expect(outcome15 == .success)
            let outcome16 = await received(reader)
            #expect(outcome16 == ["feed/a"])

            // A broken ACL on reload keeps the one in force.
            _ = try folder.write("acl", "bogus line\n")
            var refused = false
            do { try await broker.reload(configuration) } catch { refused = true }
            #expect(refused)
            let outcome17 = try await publish(writer, "feed/b", "4", id: 4)
            #expect(outcome17 == .notAuthorized)
            await reader.close()
            await writer.close()
        } catch {
            await broker.shutdown()
            throw error
        }
        await broker.shutdown()
    }
}

@Suite("ACL and persistent sessions", .serialized)
struct PersistentSessionAccessTests {
    private func connectPersistent(port: Int, _ clientID: String, username: String) async throws -> (CodecConnection, ConnAckPacket) {
        let connection = try await CodecConnection.connect(port: port, version: .v5)
        try await connection.send(
            .connect(
                ConnectPacket(
                    protocolVersion: .v5,
                    clientIdentifier: clientID,
                    cleanStart: false,
                    keepAlive: 30,
                    username: username,
                    properties: [.sessionExpiryInterval(3600)]
                )
            )
        )
        guard case .connack(let connack) = try await connection.receive() else { throw InteropError("expected CONNACK") }
        return (connection, connack)
    }

    @Test("messages queued for a session restored after a restart are checked when its client logs in again")
    func restoredSessionQueue() async throws {
        let folder = try TemporaryDirectory()
        defer { folder.remove() }
        let acl = try folder.write("acl", "user reader\ntopic read lpr/#\ntopic deny lpr/secret\nuser writer\ntopic write lpr/#\n")
        let configuration = "persistence true\npersistence_location {DIRECTORY}/\nacl_file \(acl)\n"
        try await DatabusBrokerProcess.with(extraConfiguration: configuration) { broker in
            let (reader, _) = try await connectPersistent(port: broker.port, "reader-1", username: "reader")
            try await reader.send(
                .subscribe(SubscribePacket(packetIdentifier: 1, subscriptions: [.init(topicFilter: "lpr/#", options: .init(qos: .atLeastOnce))]))
            )
            _ = try await reader.receive()
            try await reader.send(.disconnect(DisconnectPacket()))
            await reader.close()

            // The broker restarts with the session on disk; nobody has logged in as reader-1 since.
            try await broker.restart()
            let (writer, _) = try await connectWithCredentials(port: broker.port, "writer-1", username: "writer")
            for (index, topic) in ["lpr/secret", "lpr/open"].enumerated() {
                try await writer.send(
                    .publish(
                        PublishPacket(topicName: topic, payload: ByteBuffer(string: "x"), qos: .atLeastOnce, packetIdentifier: UInt16(index + 1))
                    )
                )
                _ = try await writer.receive()
            }
            let (again, connack) = try await connectPersistent(port: broker.port, "reader-1", username: "reader")
            #expect(connack.sessionPresent)
            var topics: [String] = []
            while let packet = try? await again.receive(within: 1) {
                if case .publish(let publish) = packet {
                    topics.append(publish.topicName)
                    try await again.send(.puback(PubAckPacket(packetIdentifier: publish.packetIdentifier!)))
                }
            }
            #expect(topics == ["lpr/open"])
            await again.close()
            await writer.close()
        }
    }
}
