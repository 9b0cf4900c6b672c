import MQTTCore
import NIOCore
import Testing

@testable import MQTTClient

/// The session state machine driven directly, without a connection.
@Suite("Client session state machine", .timeLimit(.minutes(2)))
struct ClientSessionTests {
    static func session(version: MQTTProtocolVersion = .v5, outbox: OutboxConfiguration = OutboxConfiguration()) -> ClientSession {
        ClientSession(version: version, receiveMaximum: 10, topicAliasMaximum: 4, outbox: outbox)
    }

    static func connack(sessionPresent: Bool = false, receiveMaximum: UInt16? = nil) -> ConnAckPacket {
        ConnAckPacket(sessionPresent: sessionPresent, properties: receiveMaximum.map { [.receiveMaximum($0)] } ?? [])
    }

    /// Every packet the session sends while pumping the outbox.
    static func drain(_ session: inout ClientSession) -> [PublishPacket] {
        var sent: [PublishPacket] = []
        while case .publish(.publish(let packet), _, _) = session.nextOutgoing() { sent.append(packet) }
        return sent
    }

    static func enqueue(_ session: inout ClientSession, _ payload: String, qos: QoS = .atLeastOnce) throws -> UInt64 {
        try session.enqueue(topic: "t", payload: ByteBuffer(string: payload), qos: qos, retain: false, properties: []).entry.sequence
    }

    static func sentPackets(_ actions: [ClientSession.Action]) -> [MQTTPacket] {
        actions.compactMap { if case .send(let packet) = $0 { packet } else { nil } }
    }

    static func delivered(_ actions: [ClientSession.Action]) -> [MQTTMessage] {
        actions.compactMap { if case .deliver(let message) = $0 { message } else { nil } }
    }

    @Test("a QoS 2 message sent again before PUBREL is acknowledged but not delivered twice")
    func incomingQoS2ExactlyOnce() {
        var session = Self.session()
        _ = session.connected(Self.connack())
        let publish = MQTTPacket.publish(
            PublishPacket(topicName: "lprserver/alerts", payload: ByteBuffer(string: "ABC123"), qos: .exactlyOnce, packetIdentifier: 7)
        )
        let first = session.receive(publish)
        #expect(Self.delivered(first).map(\.payloadString) == ["ABC123"])
        #expect(Self.sentPackets(first) == [.pubrec(PubRecPacket(packetIdentifier: 7))])

        var again = publish
        if case .publish(var packet) = again {
            packet.dup = true
            again = .publish(packet)
        }
        let second = session.receive(again)
        #expect(Self.delivered(second).isEmpty)
        #expect(Self.sentPackets(second) == [.pubrec(PubRecPacket(packetIdentifier: 7))])

        let release = session.receive(.pubrel(PubRelPacket(packetIdentifier: 7)))
        #expect(Self.sentPackets(release) == [.pubcomp(PubCompPacket(packetIdentifier: 7))])

        // After PUBREL the identifier is free: a new message with it is a new message.
        let third = session.receive(publish)
        #expect(Self.delivered(third).count == 1)
    }

    @Test("the inflight window honours the broker's receive maximum")
    func receiveMaximum() throws {
        var session = Self.session()
        for index in 0..<5 { _ = try Self.enqueue(&session, "\(index)") }
        _ = session.connected(Self.connack(receiveMaximum: 3))
        let sent = Self.drain(&session)
        #expect(sent.map { String(buffer: $0.payload) } == ["0", "1", "2"])
        #expect(session.inflightCount == 3)

        let completed = session.receive(.puback(PubAckPacket(packetIdentifier: sent[0].packetIdentifier!)))
        guard case .publishCompleted(_, .success(let result)) = completed.first else {
            Issue.record("PUBACK did not complete the flow: \(completed)")
            return
        }
        #expect(result.reasonCode == .success)
        #expect(Self.drain(&session).map { String(buffer: $0.payload) } == ["3"])
    }

    @Test("a QoS 0 message queued behind a full window waits its turn")
    func qos0KeepsOrder() throws {
        var session = Self.session()
        _ = try Self.enqueue(&session, "a", qos: .atLeastOnce)
        _ = try Self.enqueue(&session, "b", qos: .atLeastOnce)
        _ = try Self.enqueue(&session, "c", qos: .atMostOnce)
        _ = session.connected(Self.connack(receiveMaximum: 1))
        #expect(Self.drain(&session).map { String(buffer: $0.payload) } == ["a"])
        let identifier = session.outbox.unacknowledged.first!.state.packetIdentifier!
        _ = session.receive(.puback(PubAckPacket(packetIdentifier: identifier)))
        #expect(Self.drain(&session).map { String(buffer: $0.payload) } == ["b", "c"])
    }

    @Test("packet identifiers are unique among flows in progress and skip those in use when they wrap")
    func packetIdentifiers() {
        var allocator = PacketIdentifierAllocator()
        let first = (0..<3).compactMap { _ in allocator.allocate() }
        #expect(first == [1, 2, 3])
        allocator.release(2)
        // Not reused at once: identifiers go round.
        #expect(allocator.allocate() == 4)
        for _ in 5...UInt16.max { _ = allocator.allocate() }
        // Wrapped: 1, 3, 4 and 5...65535 are in use; 2 is the only free one.
        #expect(allocator.allocate() == 2)
        #expect(allocator.allocate() == nil)
    }

    @Test("with the session present, unacknowledged messages are sent again in order with DUP and the same identifiers")
    func resendWithSessionPresent() throws {
        var session = Self.session()
        for payload in ["a", "b", "c"] { _ = try Self.enqueue(&session, payload, qos: .exactlyOnce) }
        _ = session.connected(Self.connack())
        let sent = Self.drain(&session)
        #expect(sent.allSatisfy { !$0.dup })
        // "a" reached PUBREC: on resume its PUBREL goes again, not the PUBLISH.
        _ = session.receive(.pubrec(PubRecPacket(packetIdentifier: sent[0].packetIdentifier!)))
        session.connectionLost()

        let resumed = Self.sentPackets(session.connected(Self.connack(sessionPresent: true)))
        let expected: [MQTTPacket] = [
            .pubrel(PubRelPacket(packetIdentifier: sent[0].packetIdentifier!)),
            .publish(
                PublishPacket(
                    topicName: "t",
                    payload: ByteBuffer(string: "b"),
                    qos: .exactlyOnce,
                    dup: true,
                    packetIdentifier: sent[1].packetIdentifier
                )
            ),
            .publish(
                PublishPacket(
                    topicName: "t",
                    payload: ByteBuffer(string: "c"),
                    qos: .exactlyOnce,
                    dup: true,
                    packetIdentifier: sent[2].packetIdentifier
                )
            ),
        ]
        #expect(resumed == expected)
    }

    @Test("without the session, unacknowledged messages start over in order, PUBREC'd ones complete, subscriptions are made again")
    func startOverWithoutSession() throws {
        var session = Self.session()
        let subscribe = Self.sentPackets(
            session.subscribe(token: 1, [Subscription(topicFilter: "cmd/#", options: SubscriptionOptions(qos: .atLeastOnce))], properties: [])
        )
        #expect(subscribe.isEmpty)  // not connected yet: it waits
        for payload in ["a", "b"] { _ = try Self.enqueue(&session, payload, qos: .exactlyOnce) }
        let connected = Self.sentPackets(session.connected(Self.connack()))
        guard case .subscribe(let packet) = connected.first else {
            Issue.record("the waiting SUBSCRIBE was not sent: \(connected)")
            return
        }
        _ = session.receive(.suback(SubAckPacket(packetIdentifier: packet.packetIdentifier, reasonCodes: [.grantedQoS1])))
        let sent = Self.drain(&session)
        _ = session.receive(.pubrec(PubRecPacket(packetIdentifier: sent[0].packetIdentifier!)))
        session.connectionLost()

        let actions = session.connected(Self.connack(sessionPresent: false))
        let completed = actions.compactMap { if case .publishCompleted(let sequence, .success) = $0 { sequence } else { nil } }
        #expect(completed == [1])
        let resubscribed = Self.sentPackets(actions).compactMap {
            if case .subscribe(let packet) = $0 { packet.subscriptions.map(\.topicFilter) } else { nil }
        }
        #expect(resubscribed == [["cmd/#"]])
        let resent = Self.drain(&session)
        #expect(resent.map { String(buffer: $0.payload) } == ["b"])
        #expect(resent.first?.dup == false)
    }

    @Test("an unsubscribed filter is not made again after the session is lost")
    func unsubscribedNotRestored() throws {
        var session = Self.session()
        _ = session.connected(Self.connack())
        let subscribe = Self.sentPackets(
            session.subscribe(token: 1, [Subscription(topicFilter: "a"), Subscription(topicFilter: "b")], properties: [])
        )
        guard case .subscribe(let packet) = subscribe.first else { return }
        _ = session.receive(.suback(SubAckPacket(packetIdentifier: packet.packetIdentifier, reasonCodes: [.grantedQoS0, .notAuthorized])))
        #expect(session.subscriptions.topicFilters == ["a"])
        _ = session.unsubscribe(token: 2, ["a"], properties: [])
        session.connectionLost()
        let actions = session.connected(Self.connack())
        #expect(!Self.sentPackets(actions).contains { if case .subscribe = $0 { true } else { false } })
    }

    @Test("topic aliases from the broker are resolved, and an alias above our maximum closes the connection")
    func topicAliases() {
        var session = Self.session()
        _ = session.connected(Self.connack())
        let set = session.receive(
            .publish(PublishPacket(topicName: "lprserver/cameras/1/health", payload: ByteBuffer(string: "1"), properties: [.topicAlias(2)]))
        )
        let used = session.receive(.publish(PublishPacket(topicName: "", payload: ByteBuffer(string: "2"), properties: [.topicAlias(2)])))
        #expect((Self.delivered(set) + Self.delivered(used)).map(\.topic) == ["lprserver/cameras/1/health", "lprserver/cameras/1/health"])
        #expect(Self.delivered(used).first?.properties.topicAlias == nil)

        let tooHigh = session.receive(.publish(PublishPacket(topicName: "x", payload: ByteBuffer(), properties: [.topicAlias(5)])))
        guard case .close(let disconnect, .protocolError) = tooHigh.first else {
            Issue.record("an alias above the maximum was accepted: \(tooHigh)")
            return
        }
        #expect(disconnect?.reasonCode == .topicAliasInvalid)
    }

    @Test("the broker's maximum QoS, retain availability and maximum packet size refuse a message before it is sent")
    func brokerLimits() throws {
        var session = Self.session()
        _ = try Self.enqueue(&session, "qos2", qos: .exactlyOnce)
        _ = try session.enqueue(topic: "t", payload: ByteBuffer(string: "retained"), qos: .atMostOnce, retain: true, properties: [])
        _ = try session.enqueue(topic: "t", payload: ByteBuffer(repeating: 0, count: 200), qos: .atMostOnce, retain: false, properties: [])
        _ = session.connected(ConnAckPacket(properties: [.maximumQoS(1), .retainAvailable(0), .maximumPacketSize(100)]))
        var codes: [MQTTClientError.Code] = []
        while let outgoing = session.nextOutgoing() {
            if case .failed(_, let error) = outgoing { codes.append(error.code) }
        }
        #expect(codes == [.qosNotSupported, .retainNotSupported, .packetTooLarge])
        #expect(session.outbox.count == 0)
    }
}
