import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

/// The incoming QoS 2 identifiers as the bridge's session keeps them.
private final class IncomingIdentifiers: SessionRules {
    var incoming: Set<UInt16> = []
    var access: ClientAccess? { nil }
    func beginIncoming(_ identifier: UInt16) -> Bool { incoming.insert(identifier).inserted }
    func releaseIncoming(_ identifier: UInt16) -> Bool { incoming.remove(identifier) != nil }
    var incomingAwaitingRelease: Int { incoming.count }
}

/// One connection of a bridge to its remote broker, driven packet by packet without I/O.
@Suite("Bridge connection state machine")
struct BridgeConnectionStateMachineTests {
    private let now = NIODeadline.uptimeNanoseconds(5_000_000_000_000)

    private func machine(_ lines: String, persistence: Bool = true) throws -> BridgeConnectionStateMachine {
        let configuration = try MosquittoConfigParser.parse("connection central\naddress h\n" + lines)
        return BridgeConnectionStateMachine(
            settings: .init(configuration.bridges[0], hostname: "edge1", persistence: persistence),
            now: now
        )
    }

    @Test("CONNECT: remote client id NAME.HOSTNAME, kept session, keep alive, credentials, bridge bit, will '0' on the notification topic")
    func connectPacket() throws {
        let bridge = try machine("topic lpr/# out 1\nremote_username edge\nremote_password secret\nkeepalive_interval 30")
        let connect = bridge.connectPacket(tryPrivate: true, password: ByteBuffer(string: "secret"))
        #expect(connect.protocolVersion == .v3_1_1)
        #expect(connect.isBridge)
        #expect(connect.clientIdentifier == "central.edge1")
        #expect(!connect.cleanStart)
        #expect(connect.keepAlive == 30)
        #expect(connect.username == "edge" && connect.password == ByteBuffer(string: "secret"))
        #expect(
            connect.will
                == ConnectPacket.Will(
                    topic: "$SYS/broker/connection/central.edge1/state",
                    payload: ByteBuffer(string: "0"),
                    qos: .atLeastOnce,
                    retain: true
                )
        )
        #expect(!bridge.connectPacket(tryPrivate: false, password: nil).isBridge)
    }

    @Test("CONNECT without notifications has no will; 5.0 keeps its session with the longest expiry")
    func connectVariants() throws {
        let quiet = try machine("topic # out\nnotifications false")
        #expect(quiet.connectPacket(tryPrivate: true, password: nil).will == nil)
        let localOnly = try machine("topic # out\nnotifications_local_only true")
        #expect(localOnly.connectPacket(tryPrivate: true, password: nil).will == nil)
        let five = try machine("topic # out\nbridge_protocol_version mqttv50")
        let connect = five.connectPacket(tryPrivate: true, password: nil)
        #expect(!connect.isBridge)
        #expect(connect.properties.sessionExpiryInterval == UInt32.max)
    }

    @Test("CONNACK accepted: '1' on the notification topic, SUBSCRIBE for in/both lines, UNSUBSCRIBE for out-only lines")
    func connAccepted() throws {
        var bridge = try machine("topic lpr/# out 1 \"\" site7/\ntopic config/# in 2 \"\" central/\ntopic health/# both 1")
        let action = bridge.packetReceived(.connack(ConnAckPacket(sessionPresent: true)), now: now, session: IncomingIdentifiers())
        guard case .connected(let negotiated, let packets) = action else {
            Issue.record("not connected: \(action)")
            return
        }
        #expect(negotiated.sessionPresent)
        #expect(negotiated.receiveMaximum == 65_535)
        #expect(
            packets == [
                .publish(
                    PublishPacket(
                        topicName: "$SYS/broker/connection/central.edge1/state",
                        payload: ByteBuffer(string: "1"),
                        qos: .atMostOnce,
                        retain: true
                    )
                ),
                .subscribe(
                    SubscribePacket(
                        packetIdentifier: 1,
                        subscriptions: [
                            Subscription(topicFilter: "central/config/#", options: .init(qos: .exactlyOnce)),
                            Subscription(topicFilter: "health/#", options: .init(qos: .atLeastOnce)),
                        ]
                    )
                ),
                .unsubscribe(UnsubscribePacket(packetIdentifier: 2, topicFilters: ["site7/lpr/#"])),
            ]
        )
        #expect(bridge.phase == .connected)
    }

    @Test("5.0: remote subscriptions are no-local and retain-as-published; the CONNACK's limits are kept")
    func connAccepted5() throws {
        var bridge = try machine("topic # both 2\nbridge_protocol_version mqttv50\nbridge_attempt_unsubscribe false")
        let connack = ConnAckPacket(properties: [
            .receiveMaximum(10), .maximumPacketSize(4096), .maximumQoS(1), .retainAvailable(0), .topicAliasMaximum(5),
        ])
        guard case .connected(let negotiated, let packets) = bridge.packetReceived(.connack(connack), now: now, session: IncomingIdentifiers()) else {
            Issue.record("not connected")
            return
        }
        #expect(
            negotiated
                == .init(
                    sessionPresent: false,
                    receiveMaximum: 10,
                    maximumPacketSize: 4096,
                    retainAvailable: false,
                    maximumQoS: .atLeastOnce,
                    topicAliasMaximum: 5
                )
        )
        let subscribe = packets.compactMap { if case .subscribe(let s) = $0 { s } else { nil } }.first
        #expect(
            subscribe?.subscriptions == [Subscription(topicFilter: "#", options: .init(qos: .atLeastOnce, noLocal: true, retainAsPublished: true))]
        )
        // The remote broker has no retained messages: the notification goes without the flag.
        #expect(
            packets.contains(
                .publish(
                    PublishPacket(
                        topicName: "$SYS/broker/connection/central.edge1/state",
                        payload: ByteBuffer(string: "1"),
                        qos: .atMostOnce,
                        retain: false
                    )
                )
            )
        )
    }

    @Test("CONNACK refused: closes; 'unacceptable protocol version' is told apart (try_private)")
    func connRefused() throws {
        var bridge = try machine("topic # out")
        guard
            case .refused(_, _, let protocolVersion) = bridge.packetReceived(
                .connack(ConnAckPacket(reasonCode: .unsupportedProtocolVersion)),
                now: now,
                session: IncomingIdentifiers()
            )
        else {
            Issue.record("not refused")
            return
        }
        #expect(protocolVersion)
        var other = try machine("topic # out")
        guard
            case .refused(let reason, _, let version) = other.packetReceived(
                .connack(ConnAckPacket(reasonCode: .notAuthorized)),
                now: now,
                session: IncomingIdentifiers()
            )
        else {
            Issue.record("not refused")
            return
        }
        #expect(reason == .notAuthorized && !version)
    }

    @Test("a message from the remote broker: topic mapped back, published under the local client id, stored first at QoS 1/2")
    func incomingPublish() throws {
        var bridge = try machine("topic config/# in 2 edge/ central/")
        let session = IncomingIdentifiers()
        _ = bridge.packetReceived(.connack(ConnAckPacket()), now: now, session: session)
        let publish = PublishPacket(
            topicName: "central/config/cam1",
            payload: ByteBuffer(string: "{}"),
            qos: .exactlyOnce,
            retain: true,
            packetIdentifier: 7
        )
        guard case .route(let inbound) = bridge.packetReceived(.publish(publish), now: now, session: session) else {
            Issue.record("not routed")
            return
        }
        #expect(inbound.message.topic == "edge/config/cam1")
        #expect(inbound.message.retain)
        #expect(inbound.message.publisherID == "local.central.edge1")
        #expect(inbound.durable)
        #expect(inbound.acknowledgement?.packet(.success) == .pubrec(PubRecPacket(packetIdentifier: 7)))
        guard case .putIncoming("local.central.edge1", 7)? = inbound.storeOperations.first else {
            Issue.record("the incoming identifier is not stored: \(inbound.storeOperations)")
            return
        }
        // Sent again before PUBREL: acknowledged, not published twice.
        guard case .send(.pubrec(let again)) = bridge.packetReceived(.publish(publish), now: now, session: session) else {
            Issue.record("a duplicate was routed")
            return
        }
        #expect(again.packetIdentifier == 7)
        // PUBREL: PUBCOMP once the identifier is forgotten on disk.
        guard
            case .sendAfterStoring(.pubcomp(let complete), let operations) = bridge.packetReceived(
                .pubrel(PubRelPacket(packetIdentifier: 7)),
                now: now,
                session: session
            )
        else {
            Issue.record("no PUBCOMP")
            return
        }
        #expect(complete.packetIdentifier == 7 && operations.count == 1)
        #expect(session.incoming.isEmpty)
    }

    @Test("without persistence nothing waits for the disk; QoS 0 is never durable")
    func incomingWithoutPersistence() throws {
        var bridge = try machine("topic # in 1", persistence: false)
        _ = bridge.packetReceived(.connack(ConnAckPacket()), now: now, session: IncomingIdentifiers())
        guard
            case .route(let inbound) = bridge.packetReceived(
                .publish(PublishPacket(topicName: "a", payload: ByteBuffer(), qos: .atLeastOnce, packetIdentifier: 1)),
                now: now,
                session: IncomingIdentifiers()
            )
        else {
            Issue.record("not routed")
            return
        }
        #expect(!inbound.durable)
        #expect(inbound.acknowledgement?.packet(.success) == .puback(PubAckPacket(packetIdentifier: 1)))
    }

    @Test("acknowledgements of forwarded messages go to the session")
    func outboundAcknowledgements() throws {
        var bridge = try machine("topic # out 2")
        let session = IncomingIdentifiers()
        _ = bridge.packetReceived(.connack(ConnAckPacket()), now: now, session: session)
        guard case .outbound(.puback(3)) = bridge.packetReceived(.puback(PubAckPacket(packetIdentifier: 3)), now: now, session: session) else {
            Issue.record("PUBACK lost")
            return
        }
        guard case .outbound(.pubrec(4, .success)) = bridge.packetReceived(.pubrec(PubRecPacket(packetIdentifier: 4)), now: now, session: session)
        else {
            Issue.record("PUBREC lost")
            return
        }
        guard case .outbound(.pubcomp(4)) = bridge.packetReceived(.pubcomp(PubCompPacket(packetIdentifier: 4)), now: now, session: session) else {
            Issue.record("PUBCOMP lost")
            return
        }
    }

    @Test("a refused subscription is reported by filter")
    func subscriptionRefused() throws {
        var bridge = try machine("topic a/# in 1\ntopic b/# in 1")
        let session = IncomingIdentifiers()
        _ = bridge.packetReceived(.connack(ConnAckPacket()), now: now, session: session)
        guard
            case .subscriptionsRefused(let filters) = bridge.packetReceived(
                .suback(SubAckPacket(packetIdentifier: 1, reasonCodes: [.grantedQoS1, .unspecifiedError])),
                now: now,
                session: session
            )
        else {
            Issue.record("the refusal was not reported")
            return
        }
        #expect(filters == ["b/#"])
    }

    @Test("keep alive: PINGREQ every keep alive; closed after two without anything; no CONNACK within one closes")
    func keepAlive() throws {
        var waiting = try machine("topic # out\nkeepalive_interval 10")
        guard case .none = waiting.tick(now: now + .seconds(9)) else {
            Issue.record("gave up on the CONNACK too early")
            return
        }
        guard case .close = waiting.tick(now: now + .seconds(10)) else {
            Issue.record("no CONNACK did not close")
            return
        }
        var bridge = try machine("topic # out\nkeepalive_interval 10")
        _ = bridge.packetReceived(.connack(ConnAckPacket()), now: now, session: IncomingIdentifiers())
        guard case .none = bridge.tick(now: now + .seconds(5)) else {
            Issue.record("pinged too early")
            return
        }
        guard case .send(.pingreq) = bridge.tick(now: now + .seconds(10)) else {
            Issue.record("no PINGREQ")
            return
        }
        _ = bridge.packetReceived(.pingresp, now: now + .seconds(10), session: IncomingIdentifiers())
        guard case .send(.pingreq) = bridge.tick(now: now + .seconds(20)) else {
            Issue.record("no second PINGREQ")
            return
        }
        guard case .close = bridge.tick(now: now + .seconds(30)) else {
            Issue.record("a silent remote broker was not given up")
            return
        }
    }

    @Test("a remote broker that sends what servers do not send, or a topic alias we did not allow, is closed on")
    func protocolErrors() throws {
        var bridge = try machine("topic # in 1")
        guard case .close = bridge.packetReceived(.pingreq, now: now, session: IncomingIdentifiers()) else {
            Issue.record("a packet before CONNACK was accepted")
            return
        }
        var aliased = try machine("topic # in 1\nbridge_protocol_version mqttv50")
        _ = aliased.packetReceived(.connack(ConnAckPacket()), now: now, session: IncomingIdentifiers())
        let publish = PublishPacket(topicName: "a", payload: ByteBuffer(), qos: .atMostOnce, properties: [.topicAlias(1)])
        guard case .close = aliased.packetReceived(.publish(publish), now: now, session: IncomingIdentifiers()) else {
            Issue.record("a topic alias was accepted")
            return
        }
    }
}
