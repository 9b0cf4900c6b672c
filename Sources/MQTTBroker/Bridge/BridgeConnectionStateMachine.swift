import MQTTCore
import NIOCore

/// The protocol rules of one connection of a bridge to its remote broker, where the bridge is
/// the client, without I/O: the CONNECT it sends, what the CONNACK decides, what each packet
/// from the remote broker leads to, and keep alive. ``Bridge`` carries the actions out.
///
/// ```
/// awaitingConnAck ──CONNACK 0──▶ connected ──DISCONNECT, protocol error, silence──▶ closing
///        └──── refused, timeout, protocol error ─────────────────────────────────▶ closing
/// ```
///
/// Messages the bridge forwards are the bridge's session's outbound messages (in flight and
/// queued, in the store with persistence on): their acknowledgements go back to the session
/// (``Action/outbound(_:)``). Messages from the remote broker are published here under the
/// bridge's local client identifier, so that the bridge's own no-local subscriptions do not
/// send them back.
struct BridgeConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingConnAck
        case connected
        case closing
    }

    /// What this connection needs from the bridge's configuration.
    struct Settings {
        var version: MQTTProtocolVersion
        var remoteClientID: String
        var localClientID: String
        var username: String?
        var cleanSession: Bool
        var keepAlive: UInt16
        var topics: BridgeTopicMap
        /// The topic of the remote 1/0 notifications (the will, and "1" once connected); nil
        /// when notifications are off or local only.
        var remoteNotificationTopic: String?
        var attemptUnsubscribe: Bool
        /// Whether QoS 1/2 messages from the remote broker are stored before they are acknowledged.
        var persistence: Bool

        init(_ configuration: BridgeConfiguration, hostname: String, persistence: Bool) {
            version = configuration.protocolVersion
            remoteClientID = configuration.remoteClientID(hostname: hostname)
            localClientID = configuration.localClientID(hostname: hostname)
            username = configuration.remoteUsername
            cleanSession = configuration.cleanSession
            keepAlive = UInt16(clamping: configuration.keepaliveInterval)
            topics = BridgeTopicMap(configuration.topics)
            remoteNotificationTopic =
                configuration.notifications && !configuration.notificationsLocalOnly
                ? configuration.notificationTopic(hostname: hostname) : nil
            attemptUnsubscribe = configuration.attemptUnsubscribe
            self.persistence = persistence
        }
    }

    /// What the remote broker's CONNACK granted.
    struct Negotiated: Equatable {
        var sessionPresent: Bool
        /// QoS 1/2 messages the remote broker takes in flight (its 5.0 receive maximum).
        var receiveMaximum: Int
        /// The largest packet it accepts (5.0), if it said.
        var maximumPacketSize: Int?
        var retainAvailable: Bool
        var maximumQoS: QoS
        /// Topic aliases it accepts from us (5.0).
        var topicAliasMaximum: UInt16
    }

    enum Action {
        case none
        /// The remote broker accepted: send `packets` (notification, SUBSCRIBE, UNSUBSCRIBE),
        /// then bind the bridge's session to the connection.
        case connected(Negotiated, send: [MQTTPacket])
        /// The remote broker refused; close. `protocolVersion`: it refused the protocol level
        /// (the bridge bit, with try_private).
        case refused(ReasonCode, why: String, protocolVersion: Bool)
        /// Publish `message` here (stored first when `durable`), then send `acknowledgement`'s answer.
        case route(ConnectionStateMachine.InboundMessage)
        case send(MQTTPacket)
        /// Send the packet once these changes are on disk (PUBCOMP once an incoming QoS 2
        /// identifier is forgotten there too).
        case sendAfterStoring(MQTTPacket, [StoreOperation])
        /// The remote broker acknowledged a message the bridge forwarded.
        case outbound(ConnectionStateMachine.OutboundAcknowledgement)
        /// The remote broker refused subscriptions: log them.
        case subscriptionsRefused([String])
        /// Close the connection.
        case close(why: String)
    }

    let settings: Settings
    private(set) var phase = Phase.awaitingConnAck
    private(set) var negotiated: Negotiated?
    /// When the connection was opened (CONNACK must come within one keep alive).
    private let openedAt: NIODeadline
    private(set) var lastReceived: NIODeadline
    private var lastPing: NIODeadline
    /// The keep alive in force (the remote broker's server keep alive, if it set one).
    private(set) var keepAlive: UInt16
    /// SUBSCRIBE identifiers awaiting SUBACK, with their filters.
    private var pendingSubscriptions: [UInt16: [String]] = [:]
    private var lastPacketIdentifier: UInt16 = 0

    init(settings: Settings, now: NIODeadline) {
        self.settings = settings
        self.openedAt = now
        self.lastReceived = now
        self.lastPing = now
        self.keepAlive = settings.keepAlive
    }

    // MARK: CONNECT

    /// The CONNECT to send: the will publishes "0" (retained) on the notification topic when
    /// the connection dies; `tryPrivate` marks it as a bridge's (3.1/3.1.1).
    func connectPacket(tryPrivate: Bool, password: ByteBuffer?) -> ConnectPacket {
        var connect = ConnectPacket(
            protocolVersion: settings.version,
            clientIdentifier: settings.remoteClientID,
            cleanStart: settings.cleanSession,
            keepAlive: settings.keepAlive,
            username: settings.username,
            password: password
        )
        connect.isBridge = tryPrivate && settings.version != .v5
        if let topic = settings.remoteNotificationTopic {
            connect.will = ConnectPacket.Will(topic: topic, payload: ByteBuffer(string: "0"), qos: .atLeastOnce, retain: true)
        }
        if settings.version == .v5 && !settings.cleanSession {
            // 5.0: the remote broker keeps the session (subscriptions, queued messages) for ever.
            connect.properties.append(.sessionExpiryInterval(UInt32.max))
        }
        return connect
    }

    // MARK: Packets from the remote broker

    mutating func packetReceived(_ packet: MQTTPacket, now: NIODeadline, session: some SessionRules) -> Action {
        lastReceived = now
        switch phase {
        case .closing:
            return .none
        case .awaitingConnAck:
            guard case .connack(let connack) = packet else {
                return close("the remote broker sent \(packet.type) before CONNACK")
            }
            return connAckReceived(connack)
        case .connected:
            break
        }
        switch packet {
        case .publish(let publish):
            return publishReceived(publish, now: now, session: session)
        case .puback, .pubrec, .pubcomp:
            return ConnectionStateMachine.OutboundAcknowledgement(packet).map(Action.outbound) ?? .none
        case .pubrel(let release):
            let storedFor = settings.persistence ? settings.localClientID : nil
            let (pubcomp, operations) = ConnectionStateMachine.release(release, session: session, storedFor: storedFor)
            return operations.isEmpty ? .send(pubcomp) : .sendAfterStoring(pubcomp, operations)
        case .suback(let suback):
            let filters = pendingSubscriptions.removeValue(forKey: suback.packetIdentifier) ?? []
            let refused = zip(filters, suback.reasonCodes).filter { $0.1.isFailure }.map(\.0)
            return refused.isEmpty ? .none : .subscriptionsRefused(refused)
        case .unsuback, .pingresp:
            return .none
        case .disconnect(let disconnect):
            return close("the remote broker disconnected (\(disconnect.reasonCode))")
        case .connect, .connack, .subscribe, .unsubscribe, .pingreq, .auth:
            return close("the remote broker sent \(packet.type), which a server does not send")
        }
    }

    private mutating func connAckReceived(_ connack: ConnAckPacket) -> Action {
        guard connack.reasonCode == .success else {
            phase = .closing
            // 3.1.1 return code 1 (and 5.0's 0x84): the protocol level (with the bridge bit) was refused.
            let protocolVersion = connack.reasonCode == .unsupportedProtocolVersion
            return .refused(
                connack.reasonCode,
                why: "the remote broker refused the connection: \(connack.reasonCode)",
                protocolVersion: protocolVersion
            )
        }
        phase = .connected
        let properties = connack.properties
        let negotiated = Negotiated(
            sessionPresent: connack.sessionPresent,
            receiveMaximum: Int(properties.receiveMaximum ?? UInt16.max),
            maximumPacketSize: properties.maximumPacketSize.map { Int($0) },
            retainAvailable: properties.retainAvailable.map { $0 != 0 } ?? true,
            maximumQoS: properties.maximumQoS.flatMap { QoS(rawValue: $0) } ?? .exactlyOnce,
            topicAliasMaximum: properties.topicAliasMaximum ?? 0
        )
        self.negotiated = negotiated
        if let serverKeepAlive = properties.serverKeepAlive { keepAlive = serverKeepAlive }
        var packets: [MQTTPacket] = []
        if let topic = settings.remoteNotificationTopic {
            // QoS 0: the bridge's session owns the QoS 1/2 packet identifiers.
            packets.append(
                .publish(PublishPacket(topicName: topic, payload: ByteBuffer(string: "1"), qos: .atMostOnce, retain: negotiated.retainAvailable))
            )
        }
        var subscriptions: [Subscription] = []
        var unsubscriptions: [String] = []
        for line in settings.topics.topics {
            if line.direction.isIncoming {
                var options = SubscriptionOptions(qos: min(line.qos, negotiated.maximumQoS))
                if settings.version == .v5 {
                    // Nothing the bridge sends comes back; retained messages keep their flag.
                    options.noLocal = true
                    options.retainAsPublished = true
                }
                if !subscriptions.contains(where: { $0.topicFilter == line.remoteFilter }) {
                    subscriptions.append(Subscription(topicFilter: line.remoteFilter, options: options))
                }
            } else if settings.attemptUnsubscribe && !unsubscriptions.contains(line.remoteFilter) {
                unsubscriptions.append(line.remoteFilter)
            }
        }
        // An out-only line whose remote filter an incoming line subscribes to is not unsubscribed.
        unsubscriptions.removeAll { filter in subscriptions.contains { $0.topicFilter == filter } }
        if !subscriptions.isEmpty {
            let identifier = nextPacketIdentifier()
            pendingSubscriptions[identifier] = subscriptions.map(\.topicFilter)
            packets.append(.subscribe(SubscribePacket(packetIdentifier: identifier, subscriptions: subscriptions)))
        }
        if !unsubscriptions.isEmpty {
            packets.append(.unsubscribe(UnsubscribePacket(packetIdentifier: nextPacketIdentifier(), topicFilters: unsubscriptions)))
        }
        return .connected(negotiated, send: packets)
    }

    /// A message from the remote broker: its topic mapped to ours, duplicates of QoS 2
    /// messages awaiting PUBREL answered without publishing again.
    private mutating func publishReceived(_ publish: PublishPacket, now: NIODeadline, session: some SessionRules) -> Action {
        if publish.properties.topicAlias != nil {
            return close("the remote broker used a topic alias, which the bridge did not allow")
        }
        let version = settings.version
        let acknowledgement = publish.packetIdentifier.map {
            ConnectionStateMachine.Acknowledgement(kind: publish.qos == .exactlyOnce ? .pubrec : .puback, packetIdentifier: $0, version: version)
        }
        var storeOperations: [StoreOperation] = []
        if publish.qos == .exactlyOnce, let identifier = publish.packetIdentifier {
            guard session.beginIncoming(identifier) else {
                return .send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            }
            if settings.persistence {
                storeOperations.append(.putIncoming(clientID: settings.localClientID, packetIdentifier: identifier))
            }
        }
        var mapped = publish
        mapped.topicName = settings.topics.localTopic(forRemote: publish.topicName)
        mapped.dup = false
        let message = ApplicationMessage(publish: mapped, publisherID: settings.localClientID, now: now)
        return .route(
            ConnectionStateMachine.InboundMessage(
                message: message,
                receivedAt: now,
                acknowledgement: acknowledgement,
                durable: settings.persistence && publish.qos != .atMostOnce,
                storeOperations: storeOperations
            )
        )
    }

    // MARK: Keep alive

    /// Called every second: a PINGREQ every keep alive; the connection is dead when nothing
    /// came for two keep alives (or no CONNACK within one).
    mutating func tick(now: NIODeadline) -> Action {
        let interval = TimeAmount.seconds(Int64(max(keepAlive, 1)))
        switch phase {
        case .closing:
            return .none
        case .awaitingConnAck:
            guard now - openedAt >= interval else { return .none }
            return close("no CONNACK within \(keepAlive) s")
        case .connected:
            guard keepAlive > 0 else { return .none }
            if now - lastReceived >= interval * 2 {
                return close("nothing received from the remote broker for \(2 * Int(keepAlive)) s")
            }
            guard now - lastPing >= interval else { return .none }
            lastPing = now
            return .send(.pingreq)
        }
    }

    /// The bridge closes the connection.
    mutating func close(_ why: String) -> Action {
        guard phase != .closing else { return .none }
        phase = .closing
        return .close(why: why)
    }

    private mutating func nextPacketIdentifier() -> UInt16 {
        lastPacketIdentifier = lastPacketIdentifier == UInt16.max ? 1 : lastPacketIdentifier + 1
        return lastPacketIdentifier
    }
}
