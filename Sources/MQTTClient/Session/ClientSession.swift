import MQTTCore
import NIOCore

/// The client's side of an MQTT session as a state machine: outgoing publish flows and the
/// outbox, incoming QoS 2 flows, SUBSCRIBE/UNSUBSCRIBE requests, granted subscriptions and
/// topic aliases. It does no I/O: every method returns the ``Action``s for the client to carry out.
struct ClientSession {
    enum Action {
        /// Write this packet.
        case send(MQTTPacket)
        /// The publish flow of an outbox entry ended.
        case publishCompleted(sequence: UInt64, Result<PublishResult, MQTTClientError>)
        /// A SUBSCRIBE or UNSUBSCRIBE was answered (token 0: the client's own resubscription).
        case requestCompleted(token: UInt64, Result<[ReasonCode], MQTTClientError>)
        /// Hand this message to the application.
        case deliver(MQTTMessage)
        /// These subscriptions are gone: end their message streams.
        case unsubscribed([String])
        /// Close the connection, sending DISCONNECT first when given (MQTT 5).
        case close(DisconnectPacket?, DisconnectReason)
    }

    /// What the next outbox entry turned into.
    enum Outgoing {
        case publish(MQTTPacket, sequence: UInt64, qos: QoS)
        case failed(sequence: UInt64, MQTTClientError)
    }

    /// What the broker allows on the current connection, from CONNACK.
    struct BrokerLimits {
        var receiveMaximum: Int
        var maximumQoS: QoS
        var retainAvailable: Bool
        var maximumPacketSize: Int

        init(_ connack: ConnAckPacket, maximumInflight: Int) {
            let properties = connack.properties
            receiveMaximum = min(Int(properties.receiveMaximum ?? UInt16.max), maximumInflight)
            maximumQoS = properties.maximumQoS.flatMap(QoS.init(rawValue:)) ?? .exactlyOnce
            retainAvailable = properties.retainAvailable != 0
            maximumPacketSize = properties.maximumPacketSize.map(Int.init) ?? maximumVariableByteInteger + 5
        }
    }

    /// A SUBSCRIBE or UNSUBSCRIBE kept until it is acknowledged, sent again after a reconnect.
    struct Request {
        enum Kind {
            case subscribe([Subscription], Properties)
            case unsubscribe([String], Properties)
        }
        let token: UInt64
        let kind: Kind
        var packetIdentifier: UInt16?
    }

    let version: MQTTProtocolVersion
    /// How many QoS 2 messages the client lets the broker have unreleased (our receive maximum).
    let receiveMaximum: Int
    /// The highest topic alias the broker may use towards the client.
    let topicAliasMaximum: UInt16
    /// Our own cap on QoS 1/2 messages in flight to the broker, below its receive maximum.
    let maximumInflight: Int

    private(set) var outbox: Outbox
    private var packetIdentifiers = PacketIdentifierAllocator()
    /// Outgoing QoS 1/2 flows by packet identifier: the outbox entry each belongs to.
    private var inflight: [UInt16: UInt64] = [:]
    /// Incoming QoS 2 messages delivered and waiting for PUBREL.
    private var incomingQoS2: Set<UInt16> = []
    /// Whether the application acknowledges incoming QoS 1/2 messages itself.
    let manualAcknowledgement: Bool
    /// Incoming QoS 2 messages delivered on this connection that the application has not acknowledged yet (manual mode).
    private var awaitingAcknowledgement: Set<UInt16> = []
    private var requests: [Request] = []
    private(set) var subscriptions = SubscriptionRegistry()
    private var topicAliases: [UInt16: String] = [:]
    /// Set while connected.
    private(set) var limits: BrokerLimits?

    init(
        version: MQTTProtocolVersion,
        receiveMaximum: UInt16,
        topicAliasMaximum: UInt16,
        maximumInflight: Int? = nil,
        manualAcknowledgement: Bool = false,
        outbox: OutboxConfiguration
    ) {
        self.manualAcknowledgement = manualAcknowledgement
        self.version = version
        self.maximumInflight = max(1, maximumInflight ?? (version == .v5 ? Int(UInt16.max) : 20))
        self.receiveMaximum = Int(receiveMaximum)
        self.topicAliasMaximum = version == .v5 ? topicAliasMaximum : 0
        self.outbox = Outbox(configuration: outbox)
    }

    var isConnected: Bool { limits != nil }
    var inflightCount: Int { inflight.count }
    var pendingRequestCount: Int { requests.count }

    /// Loads the persisted outbox; entries sent before a restart keep their packet identifiers.
    mutating func restoreOutbox() throws {
        try outbox.restore()
        for entry in outbox.unacknowledged {
            guard let identifier = entry.state.packetIdentifier else { continue }
            packetIdentifiers.reserve(identifier)
            inflight[identifier] = entry.sequence
        }
    }

    // MARK: Connection

    /// CONNACK accepted the connection: resume the session or start over, resubscribe, and
    /// send what waits. The client then pumps the outbox with ``nextOutgoing()``.
    mutating func connected(_ connack: ConnAckPacket) -> [Action] {
        limits = BrokerLimits(connack, maximumInflight: maximumInflight)
        topicAliases.removeAll()
        var actions: [Action] = []
        if connack.sessionPresent {
            // Resend unacknowledged flows in order, as the specification requires (4.4).
            for entry in outbox.unacknowledged {
                switch entry.state {
                case .published(let identifier):
                    actions.append(.send(.publish(publishPacket(entry, packetIdentifier: identifier, dup: true))))
                case .released(let identifier, _):
                    actions.append(.send(.pubrel(PubRelPacket(packetIdentifier: identifier))))
                case .queued:
                    break
                }
            }
        } else {
            // The broker has no session: our half of it goes too. A QoS 2 message the broker
            // acknowledged with PUBREC is its responsibility now; others are sent again as new.
            incomingQoS2.removeAll()
            var requeue: [UInt64] = []
            for (identifier, sequence) in inflight {
                packetIdentifiers.release(identifier)
                if case .released(_, let reasonCode) = outbox[sequence]?.state {
                    outbox.remove(sequence: sequence)
                    actions.append(.publishCompleted(sequence: sequence, .success(PublishResult(reasonCode: reasonCode))))
                } else {
                    requeue.append(sequence)
                }
            }
            inflight.removeAll()
            outbox.requeue(requeue)
            requests.removeAll { $0.token == 0 }
            let resubscriptions = subscriptions.records.map {
                Request(token: 0, kind: .subscribe([$0.subscription], $0.properties))
            }
            requests.insert(contentsOf: resubscriptions, at: 0)
        }
        for index in requests.indices where requests[index].packetIdentifier == nil {
            if let packet = sendableRequest(at: index) { actions.append(.send(packet)) }
        }
        return actions
    }

    /// The connection ended: requests in flight will be sent again on the next one.
    mutating func connectionLost() {
        limits = nil
        topicAliases.removeAll()
        // The broker sends these again when the session resumes; they are delivered again then.
        awaitingAcknowledgement.removeAll()
        for index in requests.indices {
            if let identifier = requests[index].packetIdentifier { packetIdentifiers.release(identifier) }
            requests[index].packetIdentifier = nil
        }
    }

    /// Fails every SUBSCRIBE/UNSUBSCRIBE waiting (the client stops).
    mutating func failRequests(_ error: MQTTClientError) -> [Action] {
        let failed = requests.filter { $0.token != 0 }.map { Action.requestCompleted(token: $0.token, .failure(error)) }
        for request in requests {
            if let identifier = request.packetIdentifier { packetIdentifiers.release(identifier) }
        }
        requests.removeAll()
        return failed
    }

    // MARK: Outgoing

    /// Adds a message to the outbox.
    mutating func enqueue(
        topic: String,
        payload: ByteBuffer,
        qos: QoS,
        retain: Bool,
        properties: Properties
    ) throws(MQTTClientError) -> (entry: OutboxEntry, actions: [Action]) {
        let (entry, dropped) = try outbox.append(topic: topic, payload: payload, qos: qos, retain: retain, properties: properties)
        let actions = dropped.map { droppedEntry in
            Action.publishCompleted(
                sequence: droppedEntry.sequence,
                .failure(
                    MQTTClientError(
                        .droppedFromOutbox,
                        "message \(droppedEntry.sequence) on \(droppedEntry.topic) was dropped to make room in the full outbox"
                    )
                )
            )
        }
        return (entry, actions)
    }

    /// The next outbox entry to send, if the connection and the broker's receive maximum allow one.
    ///
    /// A QoS 0 entry leaves the outbox here; a QoS 1/2 entry stays until its flow completes.
    mutating func nextOutgoing() -> Outgoing? {
        guard let limits, let entry = outbox.firstQueued else { return nil }
        if entry.qos != .atMostOnce && inflight.count >= limits.receiveMaximum { return nil }
        _ = outbox.popQueued()
        if entry.qos > limits.maximumQoS {
            return fail(entry, MQTTClientError(.qosNotSupported, "the broker's maximum QoS is \(limits.maximumQoS.rawValue)"))
        }
        if entry.retain && !limits.retainAvailable {
            return fail(entry, MQTTClientError(.retainNotSupported, "the broker does not support retained messages"))
        }
        var identifier: UInt16?
        if entry.qos != .atMostOnce {
            // The receive maximum (at most 65,535) keeps identifiers from running out.
            identifier = packetIdentifiers.allocate()
        }
        let packet = MQTTPacket.publish(publishPacket(entry, packetIdentifier: identifier, dup: false))
        let size = (try? packet.encodedSize(version: version)) ?? Int.max
        guard size <= limits.maximumPacketSize else {
            if let identifier { packetIdentifiers.release(identifier) }
            return fail(
                entry,
                MQTTClientError(.packetTooLarge, "PUBLISH of \(size) bytes exceeds the broker's maximum packet size \(limits.maximumPacketSize)")
            )
        }
        if let identifier {
            inflight[identifier] = entry.sequence
            outbox.setState(.published(packetIdentifier: identifier), of: entry.sequence)
        } else {
            outbox.remove(sequence: entry.sequence)
        }
        return .publish(packet, sequence: entry.sequence, qos: entry.qos)
    }

    private mutating func fail(_ entry: OutboxEntry, _ error: MQTTClientError) -> Outgoing {
        outbox.remove(sequence: entry.sequence)
        return .failed(sequence: entry.sequence, error)
    }

    private func publishPacket(_ entry: OutboxEntry, packetIdentifier: UInt16?, dup: Bool) -> PublishPacket {
        PublishPacket(
            topicName: entry.topic,
            payload: entry.payload,
            qos: entry.qos,
            retain: entry.retain,
            dup: dup,
            packetIdentifier: packetIdentifier,
            properties: version == .v5 ? entry.properties : []
        )
    }

    /// Registers a SUBSCRIBE; sends it now when connected.
    mutating func subscribe(token: UInt64, _ subscriptionList: [Subscription], properties: Properties) -> [Action] {
        requests.append(Request(token: token, kind: .subscribe(subscriptionList, properties)))
        return sendableRequest(at: requests.count - 1).map { [.send($0)] } ?? []
    }

    /// Registers an UNSUBSCRIBE; sends it now when connected. The filters are forgotten at
    /// once, so they are not made again by a resubscription.
    mutating func unsubscribe(token: UInt64, _ topicFilters: [String], properties: Properties) -> [Action] {
        for filter in topicFilters { subscriptions.remove(filter) }
        requests.append(Request(token: token, kind: .unsubscribe(topicFilters, properties)))
        return sendableRequest(at: requests.count - 1).map { [.send($0)] } ?? []
    }

    private mutating func sendableRequest(at index: Int) -> MQTTPacket? {
        guard isConnected, let identifier = packetIdentifiers.allocate() else { return nil }
        requests[index].packetIdentifier = identifier
        switch requests[index].kind {
        case .subscribe(let list, let properties):
            return .subscribe(
                SubscribePacket(packetIdentifier: identifier, subscriptions: list, properties: version == .v5 ? properties : [])
            )
        case .unsubscribe(let filters, let properties):
            return .unsubscribe(
                UnsubscribePacket(packetIdentifier: identifier, topicFilters: filters, properties: version == .v5 ? properties : [])
            )
        }
    }

    // MARK: Incoming

    /// Handles a packet from the broker (not CONNACK or PINGRESP, which the client handles).
    mutating func receive(_ packet: MQTTPacket) -> [Action] {
        var actions: [Action] = []
        receive(packet, into: &actions)
        return actions
    }

    /// Handles a packet from the broker, adding what to do to `actions` (no array per packet
    /// on the hot path: a burst of PUBACKs fills one).
    mutating func receive(_ packet: MQTTPacket, into actions: inout [Action]) {
        if case .puback(let ack) = packet {
            guard let sequence = inflight[ack.packetIdentifier], outbox[sequence]?.qos == .atLeastOnce else {
                return  // A late duplicate: nothing waits for it.
            }
            actions.append(
                complete(sequence, identifier: ack.packetIdentifier, PublishResult(reasonCode: ack.reasonCode, properties: ack.properties))
            )
            return
        }
        actions += decide(packet)
    }

    private mutating func decide(_ packet: MQTTPacket) -> [Action] {
        switch packet {
        case .publish(let publish):
            return receivePublish(publish)
        case .puback(let ack):
            guard let sequence = inflight[ack.packetIdentifier], outbox[sequence]?.qos == .atLeastOnce else {
                return []  // A late duplicate: nothing waits for it.
            }
            return [complete(sequence, identifier: ack.packetIdentifier, PublishResult(reasonCode: ack.reasonCode, properties: ack.properties))]
        case .pubrec(let rec):
            let identifier = rec.packetIdentifier
            guard let sequence = inflight[identifier], let entry = outbox[sequence], entry.qos == .exactlyOnce else {
                let code: ReasonCode = version == .v5 ? .packetIdentifierNotFound : .success
                return [.send(.pubrel(PubRelPacket(packetIdentifier: identifier, reasonCode: code)))]
            }
            if rec.reasonCode.isFailure {
                return [complete(sequence, identifier: identifier, PublishResult(reasonCode: rec.reasonCode, properties: rec.properties))]
            }
            outbox.setState(.released(packetIdentifier: identifier, reasonCode: rec.reasonCode), of: sequence)
            return [.send(.pubrel(PubRelPacket(packetIdentifier: identifier)))]
        case .pubcomp(let comp):
            guard let sequence = inflight[comp.packetIdentifier],
                case .released(_, let recCode) = outbox[sequence]?.state
            else { return [] }
            let code = comp.reasonCode == .success ? recCode : comp.reasonCode
            return [complete(sequence, identifier: comp.packetIdentifier, PublishResult(reasonCode: code, properties: comp.properties))]
        case .pubrel(let rel):
            let known = incomingQoS2.remove(rel.packetIdentifier) != nil
            let code: ReasonCode = known || version != .v5 ? .success : .packetIdentifierNotFound
            return [.send(.pubcomp(PubCompPacket(packetIdentifier: rel.packetIdentifier, reasonCode: code)))]
        case .suback(let ack):
            return receiveSubAck(ack)
        case .unsuback(let ack):
            guard let index = requests.firstIndex(where: { $0.packetIdentifier == ack.packetIdentifier }),
                case .unsubscribe(let filters, _) = requests[index].kind
            else { return protocolError("UNSUBACK for packet identifier \(ack.packetIdentifier), which no UNSUBSCRIBE holds") }
            let request = requests.remove(at: index)
            packetIdentifiers.release(ack.packetIdentifier)
            let codes = version == .v5 ? ack.reasonCodes : Array(repeating: ReasonCode.success, count: filters.count)
            return [.requestCompleted(token: request.token, .success(codes)), .unsubscribed(filters)]
        case .disconnect(let disconnect):
            return [.close(nil, .serverDisconnected(disconnect.reasonCode, disconnect.properties.reasonString))]
        case .connack, .connect, .subscribe, .unsubscribe, .pingreq, .pingresp, .auth:
            return protocolError("unexpected \(packet.type) from the broker")
        }
    }

    private mutating func receivePublish(_ received: PublishPacket) -> [Action] {
        var publish = received
        if let alias = publish.properties.topicAlias, version == .v5 {
            guard alias != 0, alias <= topicAliasMaximum else {
                return protocolError("topic alias \(alias) is above our maximum \(topicAliasMaximum)", code: .topicAliasInvalid)
            }
            if publish.topicName.isEmpty {
                guard let topic = topicAliases[alias] else {
                    return protocolError("topic alias \(alias) was never set", code: .protocolError)
                }
                publish.topicName = topic
            } else {
                topicAliases[alias] = publish.topicName
            }
            publish.properties.removeAll(.topicAlias)
        }
        let message = MQTTMessage(
            topic: publish.topicName,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
            packetIdentifier: publish.packetIdentifier
        )
        switch publish.qos {
        case .atMostOnce:
            return [.deliver(message)]
        case .atLeastOnce:
            if manualAcknowledgement { return [.deliver(message)] }
            return [.deliver(message), .send(.puback(PubAckPacket(packetIdentifier: publish.packetIdentifier ?? 0)))]
        case .exactlyOnce:
            let identifier = publish.packetIdentifier ?? 0
            let pubrec = Action.send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            // Delivered already and not released yet: the broker sent it again. Do not deliver twice.
            if incomingQoS2.contains(identifier) { return [pubrec] }
            // Delivered and still with the application: it answers when it acknowledges.
            if awaitingAcknowledgement.contains(identifier) { return [] }
            guard incomingQoS2.count + awaitingAcknowledgement.count < receiveMaximum else {
                return protocolError("more than \(receiveMaximum) unreleased QoS 2 messages", code: .receiveMaximumExceeded)
            }
            if manualAcknowledgement {
                awaitingAcknowledgement.insert(identifier)
                return [.deliver(message)]
            }
            incomingQoS2.insert(identifier)
            return [.deliver(message), pubrec]
        }
    }

    /// The application has dealt with an incoming message (manual acknowledgement): PUBACK for
    /// QoS 1, PUBREC for QoS 2. Call it only for messages of the current connection.
    mutating func acknowledge(qos: QoS, packetIdentifier: UInt16) -> [Action] {
        switch qos {
        case .atMostOnce:
            return []
        case .atLeastOnce:
            return [.send(.puback(PubAckPacket(packetIdentifier: packetIdentifier)))]
        case .exactlyOnce:
            guard awaitingAcknowledgement.remove(packetIdentifier) != nil else { return [] }
            incomingQoS2.insert(packetIdentifier)
            return [.send(.pubrec(PubRecPacket(packetIdentifier: packetIdentifier)))]
        }
    }

    private mutating func receiveSubAck(_ ack: SubAckPacket) -> [Action] {
        guard let index = requests.firstIndex(where: { $0.packetIdentifier == ack.packetIdentifier }),
            case .subscribe(let list, let properties) = requests[index].kind
        else { return protocolError("SUBACK for packet identifier \(ack.packetIdentifier), which no SUBSCRIBE holds") }
        guard ack.reasonCodes.count == list.count else {
            return protocolError("SUBACK with \(ack.reasonCodes.count) reason codes for \(list.count) topic filters")
        }
        let request = requests.remove(at: index)
        packetIdentifiers.release(ack.packetIdentifier)
        for (subscription, code) in zip(list, ack.reasonCodes) where !code.isFailure {
            subscriptions.add(subscription, properties: properties)
        }
        return [.requestCompleted(token: request.token, .success(ack.reasonCodes))]
    }

    private mutating func complete(_ sequence: UInt64, identifier: UInt16, _ result: PublishResult) -> Action {
        inflight[identifier] = nil
        packetIdentifiers.release(identifier)
        outbox.remove(sequence: sequence)
        return .publishCompleted(sequence: sequence, .success(result))
    }

    private func protocolError(_ why: String, code: ReasonCode = .protocolError) -> [Action] {
        [.close(version == .v5 ? DisconnectPacket(reasonCode: code) : nil, .protocolError(why))]
    }

    /// What the outbox changed since the last call, for the persistence.
    mutating func takeOutboxChanges() -> OutboxChanges { outbox.takeChanges() }

    /// Brings messages the outbox kept only in the store back into memory.
    mutating func refillOutbox(with entries: [OutboxEntry]) { outbox.refill(with: entries) }
}
