import MQTTCore
import NIOCore
import Testing

@testable import MQTTBroker

/// The session as a test plays it: an ACL and the incoming QoS 2 identifiers.
private final class RecordingSession: SessionRules {
    var access: ClientAccess?
    var incoming: Set<UInt16> = []

    init(acl: String? = nil) throws {
        if let acl { access = try AccessControlList(parsing: acl).access(username: nil, clientID: "camera-1") }
    }

    func beginIncoming(_ identifier: UInt16) -> Bool { incoming.insert(identifier).inserted }
    func releaseIncoming(_ identifier: UInt16) -> Bool { incoming.remove(identifier) != nil }
    var incomingAwaitingRelease: Int { incoming.count }
}

private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

private func limits(
    maxTopicAlias: UInt16 = 10,
    retainAvailable: Bool = true,
    messageSizeLimit: Int = 0,
    receiveMaximum: Int = 20,
    persistence: Bool = false
) -> ConnectionStateMachine.PublishLimits {
    .init(
        maxTopicAlias: maxTopicAlias,
        retainAvailable: retainAvailable,
        messageSizeLimit: messageSizeLimit,
        receiveMaximum: receiveMaximum,
        persistence: persistence
    )
}

private func configuration(_ change: (inout BrokerConfiguration) -> Void = { _ in }) -> BrokerConfiguration {
    var configuration = BrokerConfiguration.standalone
    change(&configuration)
    return configuration
}

/// A machine whose client is connected (CONNECT accepted, session opened).
private func connectedMachine(
    version: MQTTProtocolVersion = .v5,
    cleanStart: Bool = true,
    sessionExpiry: UInt32 = 0,
    will: ConnectPacket.Will? = nil,
    limits: ConnectionStateMachine.PublishLimits = limits()
) throws -> ConnectionStateMachine {
    var machine = ConnectionStateMachine(limits: limits, now: start)
    let properties: Properties = version == .v5 && sessionExpiry != 0 ? [.sessionExpiryInterval(sessionExpiry)] : []
    let connect = ConnectPacket(protocolVersion: version, clientIdentifier: "camera-1", cleanStart: cleanStart, will: will, properties: properties)
    guard case .connect = machine.packetReceived(.connect(connect), now: start, session: try RecordingSession()) else {
        throw TestFailure("CONNECT was not taken as CONNECT")
    }
    guard case .authenticate = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "auto-1" }) else {
        throw TestFailure("CONNECT was refused")
    }
    guard case .openSession(let request) = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: configuration())
    else {
        throw TestFailure("the client was not admitted")
    }
    _ = machine.sessionOpened(present: false, sessionExpiry: request.sessionExpiry, configuration: configuration())
    return machine
}

private struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

private func publish(
    _ topic: String,
    qos: QoS = .atLeastOnce,
    identifier: UInt16? = 1,
    retain: Bool = false,
    payload: String = "plate",
    properties: Properties = []
) -> MQTTPacket {
    .publish(
        PublishPacket(
            topicName: topic,
            payload: ByteBuffer(string: payload),
            qos: qos,
            retain: retain,
            packetIdentifier: qos == .atMostOnce ? nil : identifier,
            properties: properties
        )
    )
}

/// The message a PUBLISH is routed as, or nil when it is not routed.
private func routed(_ action: ConnectionStateMachine.ReadAction) -> ConnectionStateMachine.InboundMessage? {
    guard case .publish(.route(let inbound)) = action else { return nil }
    return inbound
}

/// The answer to a PUBLISH that is not routed.
private func answered(_ action: ConnectionStateMachine.ReadAction) -> (MQTTPacket?, DropReason?)? {
    guard case .publish(.answer(let packet, let drop, _)) = action else { return nil }
    return (packet, drop)
}

private func closed(_ action: ConnectionStateMachine.ReadAction) -> ConnectionStateMachine.Close? {
    guard case .close(let close) = action else { return nil }
    return close
}

@Suite("Connection state machine: CONNECT")
struct ConnectionStateMachineConnectTests {
    @Test("a first packet that is not CONNECT closes the connection without a reason")
    func firstPacketMustBeConnect() throws {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let action = machine.packetReceived(.pingreq, now: start, session: try RecordingSession())
        #expect(closed(action)?.reason == nil)
        #expect(machine.phase == .closing)
        guard case .ignore = machine.packetReceived(.pingreq, now: start, session: try RecordingSession()) else {
            Issue.record("a packet after the close was acted on")
            return
        }
    }

    @Test("packets sent before CONNACK wait, in order, and more than 64 close the connection")
    func pendingBeforeConnack() throws {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(clientIdentifier: "camera-1")
        _ = machine.packetReceived(.connect(connect), now: start, session: try RecordingSession())
        _ = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "x" })
        for number in 1...64 {
            guard case .wait = machine.packetReceived(publish("lpr/\(number)"), now: start, session: try RecordingSession()) else {
                Issue.record("packet \(number) did not wait")
                return
            }
        }
        let flood = machine.packetReceived(.pingreq, now: start, session: try RecordingSession())
        #expect(closed(flood) != nil)
        #expect(machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: configuration()) == nil)
    }

    @Test("waiting packets are handed back after CONNACK in the order they came")
    func pendingReplayedInOrder() throws {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(clientIdentifier: "camera-1")
        _ = machine.packetReceived(.connect(connect), now: start, session: try RecordingSession())
        _ = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "x" })
        _ = machine.packetReceived(publish("lpr/1"), now: start, session: try RecordingSession())
        _ = machine.packetReceived(.pingreq, now: start, session: try RecordingSession())
        _ = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: configuration())
        _ = machine.sessionOpened(present: false, sessionExpiry: 0, configuration: configuration())
        #expect(machine.takePending() == [publish("lpr/1"), .pingreq])
        #expect(machine.takePending().isEmpty)
    }

    @Test("3.1.1: an empty client identifier without clean session is refused with identifier rejected")
    func emptyIdentifierPersistent() {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "", cleanStart: false)
        guard case .refuse(let connack, .v3_1_1, _) = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "x" })
        else {
            Issue.record("not refused")
            return
        }
        #expect(connack.reasonCode == .clientIdentifierNotValid)
        #expect(machine.phase == .closing)
    }

    @Test("5.0: an empty client identifier gets one assigned, named in CONNACK")
    func assignedIdentifier() {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(clientIdentifier: "")
        guard case .authenticate(let admission) = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "auto-7" })
        else {
            Issue.record("refused")
            return
        }
        #expect(admission.clientID == "auto-7" && admission.assigned)
        _ = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: configuration())
        let connack = machine.sessionOpened(present: false, sessionExpiry: 0, configuration: configuration())
        #expect(connack.properties.assignedClientIdentifier == "auto-7")
        #expect(connack.properties.receiveMaximum == 20)
    }

    @Test("5.0: a keep alive above max_keepalive, or 0, becomes max_keepalive as server keep alive", arguments: [UInt16(0), 60])
    func serverKeepAlive(keepAlive: UInt16) {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(clientIdentifier: "camera-1", keepAlive: keepAlive)
        let rules = configuration { $0.maxKeepalive = 20 }
        guard case .authenticate(let admission) = machine.connectReceived(connect, configuration: rules, assignIdentifier: { "x" }) else {
            Issue.record("refused")
            return
        }
        #expect(admission.serverKeepAlive == 20)
        _ = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: rules)
        let connack = machine.sessionOpened(present: false, sessionExpiry: 0, configuration: rules)
        #expect(connack.properties.serverKeepAlive == 20)
        #expect(machine.keepAlive == 20)
    }

    @Test("3.1.1: keep alive 0 under max_keepalive is accepted without keep alive, as in mosquitto 2.0.11; above it, refused with 2")
    func keepAliveV311() {
        let rules = configuration { $0.maxKeepalive = 60 }
        var none = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "paho", keepAlive: 0)
        guard case .authenticate(let admission) = none.connectReceived(connect, configuration: rules, assignIdentifier: { "x" }) else {
            Issue.record("keep alive 0 was refused")
            return
        }
        #expect(admission.serverKeepAlive == nil)
        _ = none.authenticated(.accepted(username: nil, method: "anonymous"), configuration: rules)
        let connack = none.sessionOpened(present: false, sessionExpiry: 0, configuration: rules)
        #expect(connack.reasonCode == .success && connack.properties.isEmpty)
        #expect(none.keepAlive == 0)
        #expect(none.keepAliveCheck(now: start + .seconds(3600)) == nil)

        var greedy = ConnectionStateMachine(limits: limits(), now: start)
        let tooLong = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "paho", keepAlive: 61)
        guard case .refuse(let refusal, .v3_1_1, _) = greedy.connectReceived(tooLong, configuration: rules, assignIdentifier: { "x" }) else {
            Issue.record("keep alive 61 was accepted")
            return
        }
        #expect(refusal.reasonCode == .clientIdentifierNotValid)
    }

    @Test("an authentication method (5.0) is refused with 0x8C, a retained will without retain_available with 0x9A")
    func refusedBeforeAuthentication() {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let withMethod = ConnectPacket(clientIdentifier: "c", properties: [.authenticationMethod("SCRAM-SHA-1")])
        guard case .refuse(let connack, _, _) = machine.connectReceived(withMethod, configuration: configuration(), assignIdentifier: { "x" }) else {
            Issue.record("an authentication method was not refused")
            return
        }
        #expect(connack.reasonCode == .badAuthenticationMethod)

        var second = ConnectionStateMachine(limits: limits(), now: start)
        let will = ConnectPacket.Will(topic: "lpr/status", payload: ByteBuffer(string: "gone"), retain: true)
        let retainedWill = ConnectPacket(clientIdentifier: "c", will: will)
        let rules = configuration { $0.retainAvailable = false }
        guard case .refuse(let refusal, _, _) = second.connectReceived(retainedWill, configuration: rules, assignIdentifier: { "x" }) else {
            Issue.record("a retained will was not refused")
            return
        }
        #expect(refusal.reasonCode == .retainNotSupported)
    }

    @Test("a refusal from the authenticator is a CONNACK with its reason, and the connection closes")
    func authenticatorRefuses() {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "camera-1")
        _ = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "x" })
        guard case .refuse(let connack, .v3_1_1, _)? = machine.authenticated(.refused(.notAuthorized, why: "no"), configuration: configuration())
        else {
            Issue.record("not refused")
            return
        }
        #expect(connack.reasonCode == .notAuthorized)
        #expect(machine.phase == .closing)
    }

    @Test("session expiry: 3.1.1 clean session 0, persistent for ever or persistent_client_expiration; 5.0 from CONNECT")
    func sessionExpiry() {
        func expiry(_ connect: ConnectPacket, _ rules: BrokerConfiguration = configuration()) -> UInt32? {
            var machine = ConnectionStateMachine(limits: limits(), now: start)
            _ = machine.connectReceived(connect, configuration: rules, assignIdentifier: { "x" })
            guard case .openSession(let request)? = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: rules) else {
                return nil
            }
            return request.sessionExpiry
        }
        #expect(expiry(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: true)) == 0)
        #expect(expiry(ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: false)) == UInt32.max)
        #expect(
            expiry(
                ConnectPacket(protocolVersion: .v3_1_1, clientIdentifier: "c", cleanStart: false),
                configuration { $0.persistentClientExpiration = .seconds(3600) }
            )
                == 3600
        )
        #expect(expiry(ConnectPacket(clientIdentifier: "c", cleanStart: false, properties: [.sessionExpiryInterval(90)])) == 90)
        #expect(expiry(ConnectPacket(clientIdentifier: "c", cleanStart: false)) == 0)
    }

    @Test("a CONNECT of a protocol version we do not speak is answered with the 3.1.1 refusal; later bad input only closes")
    func unsupportedVersion() {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let error = MQTTDecodingError(.unsupportedProtocolVersion, "protocol level 3")
        guard case .refuseProtocolVersion = machine.decodingFailed(error) else {
            Issue.record("not refused with the 3.1.1 CONNACK")
            return
        }
        #expect(machine.decodingFailed(MQTTDecodingError(.variableByteIntegerTooLong, "x")) == .ignore)
    }
}

@Suite("Connection state machine: PUBLISH")
struct ConnectionStateMachinePublishTests {
    @Test("a topic alias above our maximum closes with 0x94; an alias never set with 0x82; a set alias names the topic")
    func topicAliases() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine(limits: limits(maxTopicAlias: 5))
        let set = machine.packetReceived(publish("lpr/cam-1/plate", properties: [.topicAlias(3)]), now: start, session: session)
        #expect(routed(set)?.message.topic == "lpr/cam-1/plate")
        let used = machine.packetReceived(publish("", identifier: 2, properties: [.topicAlias(3)]), now: start, session: session)
        #expect(routed(used)?.message.topic == "lpr/cam-1/plate")
        #expect(routed(used)?.message.properties.topicAlias == nil)

        var unknown = try connectedMachine()
        #expect(closed(unknown.packetReceived(publish("", properties: [.topicAlias(4)]), now: start, session: session))?.reason == .protocolError)

        let over = machine.packetReceived(publish("lpr/x", properties: [.topicAlias(6)]), now: start, session: session)
        #expect(closed(over)?.reason == .topicAliasInvalid)
        #expect(machine.phase == .closing)
    }

    @Test("a retained PUBLISH while retain_available is false closes with 0x9A")
    func retainNotAvailable() throws {
        var machine = try connectedMachine(limits: limits(retainAvailable: false))
        let action = machine.packetReceived(publish("lpr/x", retain: true), now: start, session: try RecordingSession())
        #expect(closed(action)?.reason == .retainNotSupported)
    }

    @Test("a PUBLISH the ACL forbids is dropped: 5.0 learns 0x87, 3.1.1 is acknowledged (QoS 2 holds its identifier for PUBREL)")
    func forbiddenByACL() throws {
        let acl = "topic read lpr/#\n"
        var v5 = try connectedMachine()
        let refused = answered(v5.packetReceived(publish("lpr/x"), now: start, session: try RecordingSession(acl: acl)))
        #expect(refused?.0 == .puback(PubAckPacket(packetIdentifier: 1, reasonCode: .notAuthorized)))
        #expect(refused?.1 == .notAuthorized)

        let session = try RecordingSession(acl: acl)
        var v311 = try connectedMachine(version: .v3_1_1)
        let acknowledged = answered(v311.packetReceived(publish("lpr/x", qos: .exactlyOnce, identifier: 9), now: start, session: session))
        #expect(acknowledged?.0 == .pubrec(PubRecPacket(packetIdentifier: 9)))
        #expect(session.incoming == [9])
    }

    @Test("a QoS 2 PUBLISH re-sent before PUBREL is acknowledged again and not routed")
    func duplicateQoS2() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine()
        #expect(routed(machine.packetReceived(publish("lpr/x", qos: .exactlyOnce, identifier: 4), now: start, session: session)) != nil)
        guard case .send(let packet) = machine.packetReceived(publish("lpr/x", qos: .exactlyOnce, identifier: 4), now: start, session: session) else {
            Issue.record("the re-sent PUBLISH was not answered with PUBREC alone")
            return
        }
        #expect(packet == .pubrec(PubRecPacket(packetIdentifier: 4)))
    }

    @Test("more unreleased QoS 2 messages than our receive maximum are taken, as mosquitto 2.0 does, with one warning")
    func receiveMaximumExceeded() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine(limits: limits(receiveMaximum: 2))
        for identifier: UInt16 in 1...2 {
            let within = machine.packetReceived(publish("a", qos: .exactlyOnce, identifier: identifier), now: start, session: session)
            #expect(routed(within)?.warning == nil)
        }
        let third = machine.packetReceived(publish("a", qos: .exactlyOnce, identifier: 3), now: start, session: session)
        #expect(closed(third) == nil)
        #expect(routed(third)?.warning?.contains("receive maximum (2)") == true)
        let fourth = machine.packetReceived(publish("a", qos: .exactlyOnce, identifier: 4), now: start, session: session)
        #expect(routed(fourth) != nil)
        #expect(routed(fourth)?.warning == nil, "warned once per connection")
    }

    @Test("a payload over message_size_limit is dropped with 0x97 (5.0) and a QoS 2 identifier is released")
    func tooLarge() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine(limits: limits(messageSizeLimit: 4))
        let answer = answered(
            machine.packetReceived(publish("lpr/x", qos: .exactlyOnce, identifier: 5, payload: "12345"), now: start, session: session)
        )
        #expect(answer?.0 == .pubrec(PubRecPacket(packetIdentifier: 5, reasonCode: .quotaExceeded)))
        #expect(answer?.1 == .tooLarge)
        #expect(session.incoming.isEmpty)
    }

    @Test("a PUBLISH to $SYS is acknowledged and dropped")
    func sysTopic() throws {
        var machine = try connectedMachine()
        let answer = answered(machine.packetReceived(publish("$SYS/broker/uptime"), now: start, session: try RecordingSession()))
        #expect(answer?.0 == .puback(PubAckPacket(packetIdentifier: 1)))
        #expect(answer?.1 == .forbiddenTopic)
    }

    @Test("with persistence, QoS 1/2 messages are stored first; a persistent session's QoS 2 identifier is stored with the message")
    func durability() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine(sessionExpiry: 60, limits: limits(persistence: true))
        #expect(routed(machine.packetReceived(publish("a", qos: .atMostOnce), now: start, session: session))?.durable == false)
        #expect(routed(machine.packetReceived(publish("a", qos: .atLeastOnce), now: start, session: session))?.durable == true)
        let exactlyOnce = routed(machine.packetReceived(publish("a", qos: .exactlyOnce, identifier: 7), now: start, session: session))
        #expect(exactlyOnce?.durable == true)
        guard case .putIncoming(let clientID, let identifier)? = exactlyOnce?.storeOperations.first else {
            Issue.record("the incoming identifier is not stored")
            return
        }
        #expect(clientID == "camera-1" && identifier == 7)

        var clean = try connectedMachine(limits: limits(persistence: true))
        let fresh = try RecordingSession()
        #expect(
            routed(clean.packetReceived(publish("a", qos: .exactlyOnce, identifier: 7), now: start, session: fresh))?.storeOperations.isEmpty == true
        )
    }

    @Test("the acknowledgement says what routing came to: 0x97 when a copy could not be queued, 0x10 when nobody subscribed (5.0)")
    func acknowledgementReasons() {
        let v5 = ConnectionStateMachine.Acknowledgement(kind: .puback, packetIdentifier: 3, version: .v5)
        #expect(v5.answer(for: RouteOutcome(deliveries: 2)).packet == .puback(PubAckPacket(packetIdentifier: 3)))
        #expect(v5.answer(for: RouteOutcome(deliveries: 0)).packet == .puback(PubAckPacket(packetIdentifier: 3, reasonCode: .noMatchingSubscribers)))
        #expect(
            v5.answer(for: RouteOutcome(deliveries: 2, notQueued: 1)).packet == .puback(PubAckPacket(packetIdentifier: 3, reasonCode: .quotaExceeded))
        )
        let qos2 = ConnectionStateMachine.Acknowledgement(kind: .pubrec, packetIdentifier: 3, version: .v5)
        #expect(qos2.answer(for: RouteOutcome(deliveries: 1, notQueued: 1)).releasesIdentifier)
        #expect(!qos2.answer(for: RouteOutcome(deliveries: 0)).releasesIdentifier)
        let v311 = ConnectionStateMachine.Acknowledgement(kind: .puback, packetIdentifier: 3, version: .v3_1_1)
        #expect(v311.answer(for: RouteOutcome(deliveries: 0, notQueued: 1)).packet == .puback(PubAckPacket(packetIdentifier: 3)))
        #expect(v5.storeFailed == .answer(.puback(PubAckPacket(packetIdentifier: 3, reasonCode: .unspecifiedError))))
        #expect(v311.storeFailed == .close(.unspecifiedError))
    }

    @Test("PUBREL: PUBCOMP for a known identifier (after the store forgets it for a persistent session), 0x92 otherwise")
    func release() throws {
        let session = try RecordingSession()
        session.incoming = [8]
        var machine = try connectedMachine(sessionExpiry: 60, limits: limits(persistence: true))
        guard
            case .sendAfterStoring(let pubcomp, let operations) = machine.packetReceived(
                .pubrel(PubRelPacket(packetIdentifier: 8)),
                now: start,
                session: session
            )
        else {
            Issue.record("PUBCOMP does not wait for the store")
            return
        }
        #expect(pubcomp == .pubcomp(PubCompPacket(packetIdentifier: 8)))
        #expect(operations.count == 1)
        guard case .send(let unknown) = machine.packetReceived(.pubrel(PubRelPacket(packetIdentifier: 8)), now: start, session: session) else {
            Issue.record("an unknown PUBREL was not answered at once")
            return
        }
        #expect(unknown == .pubcomp(PubCompPacket(packetIdentifier: 8, reasonCode: .packetIdentifierNotFound)))
    }

    @Test("server-only packets, AUTH and a second CONNECT are protocol errors (0x82); nothing after is acted on")
    func protocolErrors() throws {
        for packet: MQTTPacket in [.pingresp, .connack(ConnAckPacket()), .connect(ConnectPacket(clientIdentifier: "x"))] {
            var machine = try connectedMachine()
            #expect(closed(machine.packetReceived(packet, now: start, session: try RecordingSession()))?.reason == .protocolError)
            guard case .ignore = machine.packetReceived(publish("a"), now: start, session: try RecordingSession()) else {
                Issue.record("a PUBLISH after the protocol error was acted on")
                continue
            }
        }
        var v311 = try connectedMachine(version: .v3_1_1)
        #expect(closed(v311.packetReceived(.pingresp, now: start, session: try RecordingSession()))?.reason == nil)
    }
}

@Suite("Connection state machine: SUBSCRIBE, DISCONNECT, keep alive, the end")
struct ConnectionStateMachineSessionTests {
    @Test("SUBSCRIBE: invalid filters and ACL refusals get their codes, the rest are granted, in order")
    func subscribePlan() throws {
        var machine = try connectedMachine()
        let subscribe = SubscribePacket(
            packetIdentifier: 3,
            subscriptions: [
                Subscription(topicFilter: "lpr/#", options: .init(qos: .atLeastOnce)),
                Subscription(topicFilter: "lpr/#/x", options: .init(qos: .atLeastOnce)),
                Subscription(topicFilter: "admin/#", options: .init(qos: .exactlyOnce)),
            ],
            properties: [.subscriptionIdentifier(12)]
        )
        guard
            case .subscribe(let plan) = machine.packetReceived(
                .subscribe(subscribe),
                now: start,
                session: try RecordingSession(acl: "topic read lpr/#\n")
            )
        else {
            Issue.record("no plan")
            return
        }
        #expect(plan.identifier == 12)
        #expect(plan.suback == .suback(SubAckPacket(packetIdentifier: 3, reasonCodes: [.grantedQoS1, .topicFilterInvalid, .notAuthorized])))
    }

    @Test("no-local on a shared subscription is a protocol error; 3.1.1 subscriptions keep only their QoS")
    func subscribeOptions() throws {
        var machine = try connectedMachine()
        let noLocal = SubscribePacket(
            packetIdentifier: 1,
            subscriptions: [Subscription(topicFilter: "$share/g/lpr/#", options: .init(qos: .atMostOnce, noLocal: true))]
        )
        #expect(closed(machine.packetReceived(.subscribe(noLocal), now: start, session: try RecordingSession()))?.reason == .protocolError)

        var v311 = try connectedMachine(version: .v3_1_1)
        let options = SubscriptionOptions(qos: .atLeastOnce, noLocal: true, retainAsPublished: true, retainHandling: .doNotSend)
        let subscribe = SubscribePacket(packetIdentifier: 1, subscriptions: [Subscription(topicFilter: "lpr/#", options: options)])
        guard case .subscribe(let plan) = v311.packetReceived(.subscribe(subscribe), now: start, session: try RecordingSession()),
            case .subscribe(let subscription) = plan.items.first
        else {
            Issue.record("no subscription")
            return
        }
        #expect(subscription.options == SubscriptionOptions(qos: .atLeastOnce))
    }

    @Test("retained messages go out as retain handling says, never for shared subscriptions")
    func retainHandling() throws {
        typealias Plan = ConnectionStateMachine.SubscribePlan.Subscription
        #expect(Plan(filter: "a", shared: nil, options: .init(qos: .atMostOnce, retainHandling: .sendOnSubscribe)).sendsRetained(existed: true))
        #expect(!Plan(filter: "a", shared: nil, options: .init(qos: .atMostOnce, retainHandling: .sendOnNewSubscribe)).sendsRetained(existed: true))
        #expect(Plan(filter: "a", shared: nil, options: .init(qos: .atMostOnce, retainHandling: .sendOnNewSubscribe)).sendsRetained(existed: false))
        #expect(!Plan(filter: "a", shared: nil, options: .init(qos: .atMostOnce, retainHandling: .doNotSend)).sendsRetained(existed: false))
        let shared = try SharedSubscription.parse("$share/g/a")
        #expect(!Plan(filter: "$share/g/a", shared: shared, options: .init(qos: .atMostOnce)).sendsRetained(existed: false))
    }

    @Test("UNSUBACK carries a code per filter in 5.0 and none in 3.1.1")
    func unsuback() throws {
        let unsubscribe = UnsubscribePacket(packetIdentifier: 4, topicFilters: ["a", "b"])
        #expect(
            try connectedMachine().unsuback(unsubscribe, existed: [true, false])
                == .unsuback(UnsubAckPacket(packetIdentifier: 4, reasonCodes: [.success, .noSubscriptionExisted]))
        )
        #expect(
            try connectedMachine(version: .v3_1_1).unsuback(unsubscribe, existed: [true, false]) == .unsuback(UnsubAckPacket(packetIdentifier: 4))
        )
    }

    @Test("DISCONNECT: 5.0 may not raise a session expiry of 0 (0x82), 0x04 keeps the will, 3.1.1 drops it")
    func disconnect() throws {
        let will = ConnectPacket.Will(topic: "lpr/status", payload: ByteBuffer(string: "offline"))
        var zero = try connectedMachine()
        let raise = zero.packetReceived(
            .disconnect(DisconnectPacket(properties: [.sessionExpiryInterval(60)])),
            now: start,
            session: try RecordingSession()
        )
        #expect(closed(raise)?.reason == .protocolError)

        var keeping = try connectedMachine(sessionExpiry: 30, will: will)
        let action = keeping.packetReceived(
            .disconnect(DisconnectPacket(reasonCode: .disconnectWithWillMessage, properties: [.sessionExpiryInterval(90)])),
            now: start,
            session: try RecordingSession()
        )
        guard case .disconnected(let expiry) = action else {
            Issue.record("not a clean disconnect")
            return
        }
        #expect(expiry == 90)
        let ending = keeping.connectionClosed()
        #expect(ending?.will != nil && ending?.cleanDisconnect == true && ending?.sessionExpiry == 90)

        var v311 = try connectedMachine(version: .v3_1_1, will: will)
        _ = v311.packetReceived(.disconnect(DisconnectPacket()), now: start, session: try RecordingSession())
        #expect(v311.connectionClosed()?.will == nil)
    }

    @Test("keep alive: silence of one and a half keep alives closes (5.0: 0x8D); any packet resets it")
    func keepAlive() throws {
        var machine = ConnectionStateMachine(limits: limits(), now: start)
        let connect = ConnectPacket(clientIdentifier: "camera-1", keepAlive: 10)
        _ = machine.packetReceived(.connect(connect), now: start, session: try RecordingSession())
        _ = machine.connectReceived(connect, configuration: configuration(), assignIdentifier: { "x" })
        _ = machine.authenticated(.accepted(username: nil, method: "anonymous"), configuration: configuration())
        _ = machine.sessionOpened(present: false, sessionExpiry: 0, configuration: configuration())
        #expect(machine.keepAliveCheck(now: start + .seconds(14)) == nil)
        _ = machine.packetReceived(.pingreq, now: start + .seconds(14), session: try RecordingSession())
        #expect(machine.keepAliveCheck(now: start + .seconds(28)) == nil)
        #expect(machine.keepAliveCheck(now: start + .milliseconds(29_001))?.reason == .keepAliveTimeout)
        #expect(machine.keepAliveCheck(now: start + .seconds(60)) == nil)
    }

    @Test("while subscribers it feeds drain, the client's own flow waits in order; acknowledgements and pings do not")
    func heldWhileSubscribersDrain() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine()
        machine.subscribersCongested(2)
        guard case .hold = machine.packetReceived(publish("lpr/1", identifier: 1), now: start, session: session),
            case .hold = machine.packetReceived(.pubrel(PubRelPacket(packetIdentifier: 9)), now: start, session: session)
        else {
            Issue.record("the flow did not wait")
            return
        }
        guard case .outbound(.puback(4)) = machine.packetReceived(.puback(PubAckPacket(packetIdentifier: 4)), now: start, session: session),
            case .send(.pingresp) = machine.packetReceived(.pingreq, now: start, session: session)
        else {
            Issue.record("an acknowledgement or a ping waited")
            return
        }
        machine.subscriberDrained()
        #expect(machine.takeHeld() == nil, "one subscriber is still full")
        machine.subscriberDrained()
        #expect(machine.takeHeld() == publish("lpr/1", identifier: 1))
        #expect(machine.takeHeld() == .pubrel(PubRelPacket(packetIdentifier: 9)))
        #expect(machine.takeHeld() == nil)
    }

    @Test("reading stops once 64 packets are held")
    func readingPausedWhenHoldIsFull() throws {
        let session = try RecordingSession()
        var machine = try connectedMachine()
        machine.subscribersCongested(1)
        for number in 1...63 { _ = machine.packetReceived(publish("lpr/\(number)", qos: .atMostOnce), now: start, session: session) }
        #expect(!machine.readingPaused)
        _ = machine.packetReceived(publish("lpr/64", qos: .atMostOnce), now: start, session: session)
        #expect(machine.readingPaused)
        machine.subscriberDrained()
        while machine.takeHeld() != nil {}
        #expect(!machine.readingPaused)
    }

    @Test("a close requested while closing already is not repeated")
    func closeOnce() throws {
        var machine = try connectedMachine()
        #expect(machine.closeDecided(reason: .sessionTakenOver, why: "takeover")?.reason == .sessionTakenOver)
        #expect(machine.closeDecided(reason: .serverShuttingDown, why: "shutdown") == nil)
    }

    @Test("at the end: will now, after its delay or not at all; the session ends, expires later or stays")
    func ending() {
        typealias Machine = ConnectionStateMachine
        let will = ConnectPacket.Will(topic: "t", payload: ByteBuffer(), properties: [.willDelayInterval(30)])
        let immediate = ConnectPacket.Will(topic: "t", payload: ByteBuffer())
        func connected(_ version: MQTTProtocolVersion, _ will: ConnectPacket.Will?, expiry: UInt32) -> Machine.Connected {
            Machine.Connected(clientID: "c", version: version, will: will, sessionExpiry: expiry)
        }
        #expect(
            Machine.ending(connected(.v5, immediate, expiry: 0), stillOwner: true, sessionEnded: false) == .init(will: .publishNow, session: .end)
        )
        #expect(
            Machine.ending(connected(.v5, will, expiry: 60), stillOwner: true, sessionEnded: false)
                == .init(will: .publishAfter(seconds: 30), session: .expireAfter(seconds: 60))
        )
        // The session ends with the connection: a delayed will goes out at once.
        #expect(Machine.ending(connected(.v5, will, expiry: 0), stillOwner: true, sessionEnded: false) == .init(will: .publishNow, session: .end))
        // Taken over without clean start: the new connection suppresses a delayed will.
        #expect(Machine.ending(connected(.v5, will, expiry: 60), stillOwner: false, sessionEnded: false) == .init(will: .none, session: .keep))
        // Taken over with a clean start: the old session ended, its will goes out.
        #expect(Machine.ending(connected(.v5, will, expiry: 60), stillOwner: false, sessionEnded: true) == .init(will: .publishNow, session: .keep))
        // 3.1.1 persistent: no delay, kept for ever.
        #expect(
            Machine.ending(connected(.v3_1_1, will, expiry: .max), stillOwner: true, sessionEnded: false) == .init(will: .publishNow, session: .keep)
        )
    }
}
