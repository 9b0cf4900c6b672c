import DatabusTestSupport
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

/// CONNECT and CONNACK, client identifiers, sessions present, takeover, keep alive and the
/// connect timeout (MQTT 3.1.1 section 3.1-3.2, MQTT 5.0 section 3.1-3.2).
@Suite("Connect")
struct ConnectTests {
    @Test("a client is accepted with success and no session present", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func accepted(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let (client, connack) = try await connect(port: port, "sensor-1", version: version)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .success)
            #expect(!connack.sessionPresent)
            let pending = try await client.roundTrip()
            #expect(pending.isEmpty)
        }
    }

    @Test("5.0: an empty client identifier gets a unique one, announced in CONNACK with auto_id_prefix")
    func assignedIdentifierV5() async throws {
        try await withBroker(.testing { $0.autoIDPrefix = "gen-" }) { port in
            let (first, firstAck) = try await connect(port: port, "")
            defer { Task { await first.close() } }
            let (second, secondAck) = try await connect(port: port, "")
            defer { Task { await second.close() } }
            #expect(firstAck.reasonCode == .success)
            #expect(secondAck.reasonCode == .success)
            let firstID = try #require(firstAck.properties.assignedClientIdentifier)
            let secondID = try #require(secondAck.properties.assignedClientIdentifier)
            #expect(firstID.hasPrefix("gen-"))
            #expect(secondID.hasPrefix("gen-"))
            #expect(firstID != secondID)
            // Neither took the other over: both still answer.
            let firstPending = try await first.roundTrip()
            let secondPending = try await second.roundTrip()
            #expect(firstPending.isEmpty && secondPending.isEmpty)
        }
    }

    @Test("5.0: a client that names itself gets no assigned client identifier")
    func noAssignedIdentifierWhenNamed() async throws {
        try await withBroker { port in
            let (client, connack) = try await connect(port: port, "named")
            defer { Task { await client.close() } }
            #expect(connack.properties.assignedClientIdentifier == nil)
        }
    }

    @Test("3.1.1: empty client identifiers with clean session are accepted as separate clients")
    func emptyIdentifierCleanSessionV311() async throws {
        try await withBroker { port in
            let (subscriber, subscriberAck) = try await connect(port: port, "", version: .v3_1_1)
            defer { Task { await subscriber.close() } }
            let (publisher, publisherAck) = try await connect(port: port, "", version: .v3_1_1)
            defer { Task { await publisher.close() } }
            #expect(subscriberAck.reasonCode == .success)
            #expect(publisherAck.reasonCode == .success)
            try await subscriber.subscribe("plant/line-1/temperature", qos: .atLeastOnce)
            try await publisher.publish("plant/line-1/temperature", "21.5", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await subscriber.receivePublish()
            #expect(message.payloadString == "21.5")
        }
    }

    @Test("3.1.1: an empty client identifier without clean session is refused with return code 2")
    func emptyIdentifierPersistentV311() async throws {
        try await withBroker { port in
            let (client, connack) = try await connect(port: port, "", version: .v3_1_1, cleanStart: false)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .clientIdentifierNotValid)  // 3.1.1 return code 2, identifier rejected
            #expect(!connack.sessionPresent)
            let reason = try await client.closedByBroker()
            #expect(reason == nil)
        }
    }

    @Test("allow_zero_length_clientid false refuses an empty client identifier", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func zeroLengthIdentifierRefused(version: MQTTProtocolVersion) async throws {
        try await withBroker(.testing { $0.allowZeroLengthClientID = false }) { port in
            let (client, connack) = try await connect(port: port, "", version: version)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .clientIdentifierNotValid)
            _ = try await client.closedByBroker()
        }
    }

    @Test("allow_anonymous false refuses a client without credentials as not authorised", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func anonymousRefused(version: MQTTProtocolVersion) async throws {
        try await withBroker(.testing { $0.allowAnonymous = false }) { port in
            let (client, connack) = try await connect(port: port, "anonymous", version: version)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .notAuthorized)
            _ = try await client.closedByBroker()
        }
    }

    @Test("session present is false after clean start and true when a kept session resumes", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func sessionPresent(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let keep: Properties = version == .v5 ? [.sessionExpiryInterval(60)] : []
            let (first, firstAck) = try await connect(port: port, "gateway", version: version, cleanStart: false, properties: keep)
            #expect(!firstAck.sessionPresent)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()

            let (second, secondAck) = try await connect(port: port, "gateway", version: version, cleanStart: false, properties: keep)
            #expect(secondAck.sessionPresent)
            try await second.send(.disconnect(DisconnectPacket()))
            _ = try await second.packetsUntilClosed()

            let (third, thirdAck) = try await connect(port: port, "gateway", version: version, cleanStart: true, properties: keep)
            defer { Task { await third.close() } }
            #expect(!thirdAck.sessionPresent)
        }
    }

    @Test("clean start discards the kept session and its subscriptions")
    func cleanStartDiscardsSession() async throws {
        try await withBroker { port in
            let first = try await connectAccepted(port: port, "dashboard", cleanStart: false, properties: [.sessionExpiryInterval(60)])
            try await first.subscribe("plant/+/alarm", qos: .atLeastOnce)
            try await first.send(.disconnect(DisconnectPacket()))
            _ = try await first.packetsUntilClosed()

            let publisher = try await connectAccepted(port: port, "plc")
            defer { Task { await publisher.close() } }
            let whileKept = try await publisher.publish("plant/3/alarm", "overheat", qos: .atLeastOnce, packetIdentifier: 1)
            #expect(whileKept == .success)  // queued for the offline session

            let (second, secondAck) = try await connect(port: port, "dashboard", cleanStart: true)
            defer { Task { await second.close() } }
            #expect(!secondAck.sessionPresent)
            let afterCleanStart = try await publisher.publish("plant/3/alarm", "overheat", qos: .atLeastOnce, packetIdentifier: 2)
            #expect(afterCleanStart == .noMatchingSubscribers)
            try await second.expectNothingPending("neither the queued nor the new message may reach the clean session")
        }
    }

    @Test("5.0: taking over a client identifier closes the old connection with DISCONNECT 0x8E")
    func takeoverV5() async throws {
        try await withBroker { port in
            let old = try await connectAccepted(port: port, "kiosk-7")
            defer { Task { await old.close() } }
            let (new, newAck) = try await connect(port: port, "kiosk-7")
            defer { Task { await new.close() } }
            #expect(newAck.reasonCode == .success)
            let reason = try await old.closedByBroker()
            #expect(reason == .sessionTakenOver)
            let pending = try await new.roundTrip()
            #expect(pending.isEmpty)
        }
    }

    @Test("3.1.1: taking over a client identifier closes the old connection")
    func takeoverV311() async throws {
        try await withBroker { port in
            let old = try await connectAccepted(port: port, "kiosk-8", version: .v3_1_1)
            defer { Task { await old.close() } }
            let new = try await connectAccepted(port: port, "kiosk-8", version: .v3_1_1)
            defer { Task { await new.close() } }
            let reason = try await old.closedByBroker()
            #expect(reason == nil)
            let pending = try await new.roundTrip()
            #expect(pending.isEmpty)
        }
    }

    @Test("a takeover without clean start resumes the session: the new connection gets the old subscription's messages")
    func takeoverResumesSession() async throws {
        try await withBroker { port in
            let old = try await connectAccepted(port: port, "kiosk-9", cleanStart: false, properties: [.sessionExpiryInterval(60)])
            defer { Task { await old.close() } }
            try await old.subscribe("kiosk/9/command", qos: .atLeastOnce)

            let (new, newAck) = try await connect(port: port, "kiosk-9", cleanStart: false, properties: [.sessionExpiryInterval(60)])
            defer { Task { await new.close() } }
            #expect(newAck.sessionPresent)
            _ = try await old.closedByBroker()

            let publisher = try await connectAccepted(port: port, "backend")
            defer { Task { await publisher.close() } }
            try await publisher.publish("kiosk/9/command", "reboot", qos: .atLeastOnce, packetIdentifier: 1)
            let message = try await new.receivePublish()
            #expect(message.topicName == "kiosk/9/command")
            #expect(message.payloadString == "reboot")
        }
    }

    @Test("5.0 CONNACK announces receive maximum, topic alias maximum and maximum packet size from the configuration")
    func connackProperties() async throws {
        try await withBroker(
            .testing {
                $0.maxInflightMessages = 7
                $0.maxTopicAlias = 5
                $0.maxPacketSize = 2048
            }
        ) { port in
            let (client, connack) = try await connect(port: port, "props")
            defer { Task { await client.close() } }
            #expect(connack.properties.receiveMaximum == 7)
            #expect(connack.properties.topicAliasMaximum == 5)
            #expect(connack.properties.maximumPacketSize == 2048)
            // Retained messages are available: the property is absent or 1.
            #expect(connack.properties.retainAvailable ?? 1 == 1)
            #expect(connack.properties.maximumQoS ?? 2 == 2)
            #expect(connack.properties.serverKeepAlive == nil)
        }
    }

    @Test("5.0 CONNACK sets server keep alive when the client asks for more than max_keepalive")
    func serverKeepAlive() async throws {
        try await withBroker(.testing { $0.maxKeepalive = 20 }) { port in
            let (greedy, greedyAck) = try await connect(port: port, "greedy", keepAlive: 60)
            defer { Task { await greedy.close() } }
            #expect(greedyAck.reasonCode == .success)
            #expect(greedyAck.properties.serverKeepAlive == 20)

            let (modest, modestAck) = try await connect(port: port, "modest", keepAlive: 10)
            defer { Task { await modest.close() } }
            #expect(modestAck.reasonCode == .success)
            #expect(modestAck.properties.serverKeepAlive == nil)
        }
    }

    @Test("5.0: keep alive 0 while max_keepalive is set gets max_keepalive as server keep alive, as mosquitto does")
    func keepAliveZeroWithMaximum() async throws {
        try await withBroker(.testing { $0.maxKeepalive = 20 }) { port in
            let (client, connack) = try await connect(port: port, "no-pings", keepAlive: 0)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .success)
            #expect(connack.properties.serverKeepAlive == 20)
        }
    }

    @Test("3.1.1: a keep alive above max_keepalive is refused with identifier rejected, as mosquitto documents")
    func keepAboveMaximumV311() async throws {
        try await withBroker(.testing { $0.maxKeepalive = 20 }) { port in
            let (client, connack) = try await connect(port: port, "greedy", version: .v3_1_1, keepAlive: 60)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .clientIdentifierNotValid)
            _ = try await client.closedByBroker()
        }
    }

    @Test("a silent client is closed after one and a half keep alives (5.0: DISCONNECT 0x8D)", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func keepAliveTimeout(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let connection = try await CodecConnection.connect(port: port, version: version)
            defer { Task { await connection.close() } }
            let lastSent = ContinuousClock.now
            try await connection.send(.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "silent", keepAlive: 1)))
            let connack = try await connection.receive()
            guard case .connack(let ack) = connack, ack.reasonCode == .success else {
                Issue.record("expected a successful CONNACK, got \(connack)")
                return
            }
            let reason = try await connection.closedByBroker(within: 10)
            // Causal, not a timing guess: the broker cannot close before 1.5 s after it read our last packet.
            #expect(ContinuousClock.now - lastSent >= .milliseconds(1500))
            if version == .v5 {
                #expect(reason == nil || reason == .keepAliveTimeout)
            }
        }
    }

    @Test("5.0: the server keep alive is the one enforced")
    func serverKeepAliveEnforced() async throws {
        try await withBroker(.testing { $0.maxKeepalive = 1 }) { port in
            let connection = try await CodecConnection.connect(port: port, version: .v5)
            defer { Task { await connection.close() } }
            try await connection.send(.connect(ConnectPacket(protocolVersion: .v5, clientIdentifier: "sleepy", keepAlive: 600)))
            guard case .connack(let ack) = try await connection.receive() else {
                Issue.record("expected CONNACK")
                return
            }
            #expect(ack.properties.serverKeepAlive == 1)
            let reason = try await connection.closedByBroker(within: 10)
            #expect(reason == nil || reason == .keepAliveTimeout)
        }
    }

    @Test("a client that sends PINGREQ within its keep alive stays connected")
    func keepAliveKeptByPings() async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "pinger", keepAlive: 2)
            defer { Task { await client.close() } }
            // Seven pings half a second apart span more than 1.5 × keep alive (3 s).
            for _ in 0..<7 {
                try await Task.sleep(for: .milliseconds(500))
                let pending = try await client.roundTrip()
                #expect(pending.isEmpty)
            }
        }
    }

    @Test("one keep-alive check per event loop: of many connections, only the silent ones are closed, whichever left before")
    func keepAliveSweepOfMany() async throws {
        try await withBroker { port in
            var leaving: [CodecConnection] = []
            var pinging: [CodecConnection] = []
            var silent: [CodecConnection] = []
            // Interleaved, so that those leaving are taken out of the middle of the sweep.
            // Keep alive 1 s for the silent ones, 3 s for the others (setting up twelve connections
            // on a loaded machine may take more than 1.5 s).
            for index in 0..<12 {
                let client = try await connectAccepted(port: port, "sweep-\(index)", keepAlive: index % 3 == 2 ? 1 : 3)
                switch index % 3 {
                case 0: leaving.append(client)
                case 1: pinging.append(client)
                default: silent.append(client)
                }
            }
            for client in leaving {
                try await client.send(.disconnect(DisconnectPacket()))
                await client.close()
            }
            let started = ContinuousClock.now
            // The pingers ping every 400 ms for 5 s, more than 1.5 × their keep alive.
            while ContinuousClock.now - started < .seconds(5) {
                try await Task.sleep(for: .milliseconds(400))
                for client in pinging { #expect(try await client.roundTrip().isEmpty) }
            }
            for client in silent {
                _ = try await client.closedByBroker(within: 10)
                await client.close()
            }
            for client in pinging {
                #expect(try await client.roundTrip().isEmpty)
                await client.close()
            }
        }
    }

    @Test("a socket that never sends CONNECT is closed after connect_timeout")
    func connectTimeout() async throws {
        try await withBroker(.testing { $0.connectTimeout = 1 }) { port in
            let opened = ContinuousClock.now
            let socket = try await RawConnection.connect(port: port)
            defer { Task { await socket.close() } }
            let packets = try await socket.packetsUntilClosed(within: 10)
            #expect(packets.isEmpty)
            #expect(ContinuousClock.now - opened >= .seconds(1))
        }
    }

    @Test("a second CONNECT is a protocol error: 5.0 DISCONNECT 0x82 and close", arguments: [MQTTProtocolVersion.v3_1_1, .v5])
    func secondConnect(version: MQTTProtocolVersion) async throws {
        try await withBroker { port in
            let client = try await connectAccepted(port: port, "twice", version: version)
            defer { Task { await client.close() } }
            try await client.send(.connect(ConnectPacket(protocolVersion: version, clientIdentifier: "twice")))
            let reason = try await client.closedByBroker()
            #expect(reason == (version == .v5 ? .protocolError : nil))
        }
    }

    @Test("an unsupported protocol level is refused with CONNACK return code 1")
    func unsupportedProtocolLevel() async throws {
        try await withBroker { port in
            let socket = try await RawConnection.connect(port: port, version: .v3_1_1)
            defer { Task { await socket.close() } }
            // CONNECT "MQTT" level 3, clean session, keep alive 60, client identifier "old".
            try await socket.send(bytes: [0x10, 0x0F, 0x00, 0x04, 0x4D, 0x51, 0x54, 0x54, 0x03, 0x02, 0x00, 0x3C, 0x00, 0x03, 0x6F, 0x6C, 0x64])
            let packets = try await socket.packetsUntilClosed()
            #expect(packets == [.connack(ConnAckPacket(reasonCode: .unsupportedProtocolVersion))])
        }
    }

    @Test("5.0: an authentication method the broker does not support is refused (0x8C or 0x87) and the connection closed")
    func unsupportedAuthenticationMethod() async throws {
        try await withBroker { port in
            let (client, connack) = try await connect(port: port, "scram-user", properties: [.authenticationMethod("SCRAM-SHA-1")])
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .badAuthenticationMethod || connack.reasonCode == .notAuthorized)
            _ = try await client.closedByBroker()
        }
    }

    @Test("shutdown tells 5.0 clients 0x8B and closes every connection")
    func shutdown() async throws {
        let broker = MQTTBroker(configuration: .testing(), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let addresses = try await broker.start()
        let port = try #require(addresses.first?.port)
        let modern = try await connectAccepted(port: port, "modern")
        let legacy = try await connectAccepted(port: port, "legacy", version: .v3_1_1)
        await broker.shutdown()
        let modernReason = try await modern.closedByBroker()
        let legacyReason = try await legacy.closedByBroker()
        #expect(modernReason == .serverShuttingDown)
        #expect(legacyReason == nil)
        await modern.close()
        await legacy.close()
    }

    @Test("5.0: a retained will while retain_available is false is refused with 0x9A")
    func retainedWillRefused() async throws {
        try await withBroker(.testing { $0.retainAvailable = false }) { port in
            let will = ConnectPacket.Will(topic: "kiosk/1/state", payload: ByteBuffer(string: "gone"), retain: true)
            let (client, connack) = try await connect(port: port, "kiosk-1", will: will)
            defer { Task { await client.close() } }
            #expect(connack.reasonCode == .retainNotSupported)
            _ = try await client.closedByBroker()
        }
    }
}
