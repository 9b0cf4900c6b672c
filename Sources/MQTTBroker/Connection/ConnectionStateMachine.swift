import MQTTCore
import NIOCore

/// The protocol rules of one client connection, without I/O: every event the connection
/// sees goes in, and what to do comes out as an action for ``ConnectionHandler`` to carry out.
///
/// The connection goes through these phases:
///
/// ```
/// awaitingConnect ──CONNECT──▶ authenticating ──admitted, session opened──▶ connected
///        │                           │                                          │
///        └── refused / bad input ────┴──────────── close decided ───────────────┴──▶ closing ──▶ closed
/// ```
///
/// While authenticating, packets the client pipelines behind CONNECT wait (at most
/// ``maximumPendingPackets``). While connected, when the client's messages went to subscribers
/// over their high-water mark (back-pressure), its own flow waits in order (at most
/// ``maximumHeldPackets``, then the connection is no longer read) until they drain, while
/// acknowledgements and pings go on. Once the broker decided to close, nothing the client sends
/// is acted on. The rules for each area live in extensions: CONNECT in
/// `ConnectionStateMachine+Connect.swift`, PUBLISH and its acknowledgements in
/// `+Publish.swift`, SUBSCRIBE/UNSUBSCRIBE in `+Subscribe.swift`, DISCONNECT and what happens
/// when the connection ends in `+Disconnect.swift`.
///
/// What the rules need from the client's session (its ACL, the QoS 2 identifiers it sent
/// that await PUBREL) comes through ``SessionRules``; tests drive the machine with a value of
/// their own.
struct ConnectionStateMachine {
    enum Phase: Equatable {
        case awaitingConnect
        /// The authenticator is deciding; packets that arrive meanwhile wait.
        case authenticating
        case connected
        /// The broker decided to close: input is read and ignored until the connection ends.
        case closing
        case closed
    }

    /// What the connection agreed on at CONNECT and keeps until it ends. (The small fields
    /// last, together: parked connections keep this, and padding between them cost 16 bytes.)
    struct Connected {
        let clientID: String
        var will: ConnectPacket.Will?
        /// Topic aliases the client set (5.0), by alias.
        var topicAliases: [UInt16: String] = [:]
        /// Seconds the session outlives the connection (`UInt32.max`: for ever).
        var sessionExpiry: UInt32
        let version: MQTTProtocolVersion
        /// The client sent DISCONNECT.
        var cleanDisconnect = false
        /// A 3.1/3.1.1 bridge from another broker (protocol level | 0x80): its subscriptions are
        /// no-local and retain-as-published, as mosquitto makes them, so nothing loops back.
        var isBridge = false

        init(
            clientID: String,
            version: MQTTProtocolVersion,
            will: ConnectPacket.Will?,
            sessionExpiry: UInt32,
            isBridge: Bool = false
        ) {
            self.clientID = clientID
            self.version = version
            self.will = will
            self.sessionExpiry = sessionExpiry
            self.isBridge = isBridge
        }
    }

    /// The limits every PUBLISH is checked against, copied from the configuration when the
    /// connection opens (reading them through a shared object on every message would make
    /// every event loop touch the same reference counts).
    struct PublishLimits {
        var maxTopicAlias: UInt16
        var retainAvailable: Bool
        /// Payload bytes; 0: no limit.
        var messageSizeLimit: Int
        /// QoS 2 messages a client may leave unreleased (our receive maximum).
        var receiveMaximum: Int
        /// Whether QoS 1/2 messages are stored before they are acknowledged.
        var persistence: Bool

        init(maxTopicAlias: UInt16, retainAvailable: Bool, messageSizeLimit: Int, receiveMaximum: Int, persistence: Bool) {
            self.maxTopicAlias = maxTopicAlias
            self.retainAvailable = retainAvailable
            self.messageSizeLimit = messageSizeLimit
            self.receiveMaximum = receiveMaximum
            self.persistence = persistence
        }

        init(_ configuration: BrokerConfiguration) {
            self.init(
                maxTopicAlias: configuration.maxTopicAlias,
                retainAvailable: configuration.retainAvailable,
                messageSizeLimit: configuration.messageSizeLimit,
                receiveMaximum: Session.Limits(configuration).maxInflight,
                persistence: configuration.persistence
            )
        }
    }

    /// Packets a client may send behind CONNECT before it is admitted.
    static let maximumPendingPackets = 64
    /// Packets (and their bytes) held while the client waits for subscribers, beyond which the
    /// connection is no longer read (the client is then paced by TCP).
    static let maximumHeldPackets = 64
    static let maximumHeldBytes = 256 << 10

    // The state below is changed only by the machine's own methods (here and in its extensions).
    var phase = Phase.awaitingConnect
    /// Set from the moment the client is admitted until the connection ends.
    var connected: Connected?
    let limits: PublishLimits
    /// What CONNECT asked for, while the authenticator decides. Kept out of line: it is needed
    /// only until the session opens, and inline it would cost every idle connection ~160 bytes.
    var admission: Admission? {
        get { admissionBox?.value }
        set { admissionBox = newValue.map(AdmissionBox.init) }
    }
    private var admissionBox: AdmissionBox?
    var pending: [MQTTPacket] = []
    /// Back-pressure: subscribers this client's messages went to that are over their high-water
    /// mark. While any is, the packets of the client's own flow (PUBLISH, PUBREL, SUBSCRIBE, ...)
    /// wait in ``held``, in order; acknowledgements of the broker's messages and pings are
    /// handled at once, so that the client's own queue keeps draining.
    var waitingForSubscribers = 0
    var held: [MQTTPacket] = []
    var heldBytes = 0

    /// Connected with nothing half done: no packet held back or waiting for the session, and
    /// no subscriber being waited for (a connection may then park).
    var isQuiet: Bool { phase == .connected && pending.isEmpty && held.isEmpty && waitingForSubscribers == 0 }

    /// What a quiet machine is made of while its connection is parked (the rest is empty
    /// then): kept instead of the whole machine, which ``init(resuming:limits:lastActivity:)``
    /// makes again. Neither the limits (the configuration the connection keeps gives them) nor
    /// the last activity (the parking lot keeps it up to date) are in it.
    struct Parked {
        let connected: Connected
        let keepAlive: UInt16
        let receiveMaximumWarned: Bool
    }

    /// The machine as a parked connection keeps it; nil unless it is quiet (``isQuiet``).
    var parked: Parked? {
        guard isQuiet, let connected else { return nil }
        return Parked(connected: connected, keepAlive: keepAlive, receiveMaximumWarned: receiveMaximumWarned)
    }

    /// The machine of a parked connection coming back.
    init(resuming parked: Parked, limits: PublishLimits, lastActivity: NIODeadline) {
        self.limits = limits
        self.lastActivity = lastActivity
        self.phase = .connected
        self.connected = parked.connected
        self.keepAlive = parked.keepAlive
        self.receiveMaximumWarned = parked.receiveMaximumWarned
    }
    /// When the client last sent anything, for keep alive.
    var lastActivity: NIODeadline
    /// Seconds of silence allowed (× 1.5), 0 for none; set at CONNACK.
    var keepAlive: UInt16 = 0
    /// Set once the client went over our receive maximum (it is warned about once).
    var receiveMaximumWarned = false

    init(limits: PublishLimits, now: NIODeadline) {
        self.limits = limits
        self.lastActivity = now
    }

    // MARK: Reading packets

    /// Why and how the broker closes a connection.
    struct Close: Equatable {
        /// The DISCONNECT reason a 5.0 client is told; nil: close without telling.
        var reason: ReasonCode?
        var why: String
    }

    /// What to do with a packet the client sent.
    enum ReadAction {
        /// Closing or closed: nothing the client sends is acted on.
        case ignore
        /// Kept until the client is admitted.
        case wait
        /// Kept until the subscribers the client feeds have drained (back-pressure); stop reading
        /// the connection when ``readingPaused``.
        case hold
        /// The first packet: decide on the CONNECT (see ``connectReceived(_:configuration:assignIdentifier:)``).
        case connect(ConnectPacket)
        /// A protocol error (or too many packets before CONNACK): close.
        case close(Close)
        /// A PUBLISH: route it, or only answer it.
        case publish(PublishAction)
        /// Send this packet (PINGRESP, a PUBREC repeated for a re-sent QoS 2 PUBLISH).
        case send(MQTTPacket)
        /// Send this packet once these changes are on disk (PUBCOMP after the identifier is
        /// forgotten); at once when there are none.
        case sendAfterStoring(MQTTPacket, [StoreOperation])
        /// PUBACK, PUBREC or PUBCOMP for a message the broker sent: the session's outbound
        /// messages move on.
        case outbound(OutboundAcknowledgement)
        case subscribe(SubscribePlan)
        case unsubscribe(UnsubscribePacket)
        /// The client sent DISCONNECT: apply its session expiry (if it changed it) and close.
        case disconnected(sessionExpiry: UInt32?)
    }

    /// An acknowledgement from the client for a message the broker sent it.
    enum OutboundAcknowledgement: Equatable {
        case puback(UInt16)
        case pubrec(UInt16, ReasonCode)
        case pubcomp(UInt16)

        /// What `packet` acknowledges, when it is a PUBACK, PUBREC or PUBCOMP (the client's or,
        /// for a bridge, the remote broker's).
        init?(_ packet: MQTTPacket) {
            switch packet {
            case .puback(let ack): self = .puback(ack.packetIdentifier)
            case .pubrec(let received): self = .pubrec(received.packetIdentifier, received.reasonCode)
            case .pubcomp(let complete): self = .pubcomp(complete.packetIdentifier)
            default: return nil
            }
        }
    }

    /// Decides on one packet from the client.
    mutating func packetReceived(_ packet: MQTTPacket, now: NIODeadline, session: some SessionRules) -> ReadAction {
        lastActivity = now
        switch phase {
        case .closing, .closed:
            return .ignore
        case .awaitingConnect:
            guard case .connect(let connect) = packet else {
                // The decoder lets only CONNECT through first; anything else is a protocol error.
                phase = .closing
                return .close(Close(reason: nil, why: "first packet is \(packet.type), not CONNECT"))
            }
            return .connect(connect)
        case .authenticating:
            // A client may pipeline a few packets behind CONNECT; one that floods before it is
            // admitted is cut off instead of being buffered without bound.
            guard pending.count < Self.maximumPendingPackets else {
                phase = .closing
                return .close(Close(reason: nil, why: "more than \(Self.maximumPendingPackets) packets sent before CONNACK"))
            }
            pending.append(packet)
            return .wait
        case .connected:
            if waitingForSubscribers > 0 || !held.isEmpty, Self.waitsForSubscribers(packet) {
                held.append(packet)
                if case .publish(let publish) = packet { heldBytes += publish.payload.readableBytes }
                return .hold
            }
            return connectedPacketReceived(packet, now: now, session: session)
        }
    }

    /// Whether `packet` belongs to the client's own flow, which waits while subscribers it feeds
    /// drain. Acknowledgements of the broker's messages and pings never wait.
    private static func waitsForSubscribers(_ packet: MQTTPacket) -> Bool {
        switch packet {
        case .puback, .pubrec, .pubcomp, .pingreq: false
        default: true
        }
    }

    // MARK: Back-pressure

    /// The client's last message went to `count` subscribers that are over their high-water mark.
    mutating func subscribersCongested(_ count: Int) {
        waitingForSubscribers += count
    }

    /// One of them drained.
    mutating func subscriberDrained() {
        waitingForSubscribers = max(0, waitingForSubscribers - 1)
    }

    /// Whether the connection should not be read: the held packets are at their bound.
    var readingPaused: Bool {
        held.count >= Self.maximumHeldPackets || heldBytes >= Self.maximumHeldBytes
    }

    /// The next held packet to handle now that no subscriber is waited for; nil while one still
    /// is (or nothing is held). Hand it to ``heldPacketReleased(_:now:session:)``.
    mutating func takeHeld() -> MQTTPacket? {
        guard waitingForSubscribers == 0, phase == .connected, !held.isEmpty else { return nil }
        let packet = held.removeFirst()
        if case .publish(let publish) = packet { heldBytes -= publish.payload.readableBytes }
        return packet
    }

    /// Decides on a packet that was held.
    mutating func heldPacketReleased(_ packet: MQTTPacket, now: NIODeadline, session: some SessionRules) -> ReadAction {
        guard phase == .connected else { return .ignore }
        return connectedPacketReceived(packet, now: now, session: session)
    }

    private mutating func connectedPacketReceived(_ packet: MQTTPacket, now: NIODeadline, session: some SessionRules) -> ReadAction {
        switch packet {
        case .publish(let publish):
            return publishReceived(publish, now: now, session: session)
        case .puback, .pubrec, .pubcomp:
            return OutboundAcknowledgement(packet).map(ReadAction.outbound) ?? .ignore
        case .pubrel(let release):
            return releaseReceived(release, session: session)
        case .subscribe(let subscribe):
            return subscribeReceived(subscribe, session: session)
        case .unsubscribe(let unsubscribe):
            return .unsubscribe(unsubscribe)
        case .pingreq:
            return .send(.pingresp)
        case .disconnect(let disconnect):
            return disconnectReceived(disconnect)
        case .auth:
            return protocolError("AUTH without an authentication method in CONNECT")
        case .connect:
            return protocolError("a second CONNECT")
        case .connack, .suback, .unsuback, .pingresp:
            return protocolError("\(packet.type) is sent by servers only")
        }
    }

    /// Closes with 0x82 (protocol error).
    mutating func protocolError(_ why: String) -> ReadAction {
        close(.protocolError, why)
    }

    /// Closes, telling a 5.0 client `reason`.
    mutating func close(_ reason: ReasonCode, _ why: String) -> ReadAction {
        guard let close = closeDecided(reason: reason, why: why) else { return .ignore }
        return .close(close)
    }

    // MARK: Closing

    /// The broker decided to close (bad input, keep alive, a takeover, shutdown): returns how,
    /// or nil when it is closing already.
    mutating func closeDecided(reason: ReasonCode, why: String) -> Close? {
        switch phase {
        case .closing, .closed:
            return nil
        case .connected:
            phase = .closing
            return Close(reason: connected?.version == .v5 ? reason : nil, why: why)
        case .awaitingConnect, .authenticating:
            phase = .closing
            return Close(reason: nil, why: why)
        }
    }

    /// Bad bytes from the client (the decoder failed).
    enum DecodingErrorAction: Equatable {
        /// A CONNECT of a protocol version we do not speak: answer with a 3.1.1 CONNACK
        /// "unacceptable protocol version", which older clients understand, then close.
        case refuseProtocolVersion(why: String)
        case close(Close)
        case ignore
    }

    mutating func decodingFailed(_ error: MQTTDecodingError) -> DecodingErrorAction {
        if phase == .awaitingConnect && error.kind == .unsupportedProtocolVersion {
            phase = .closing
            return .refuseProtocolVersion(why: error.detail)
        }
        guard let close = closeDecided(reason: error.reasonCode, why: "malformed input: \(error.detail)") else { return .ignore }
        return .close(close)
    }

    // MARK: Keep alive

    /// Called every half keep alive: closes after one and a half keep alives of silence.
    mutating func keepAliveCheck(now: NIODeadline) -> Close? {
        guard phase == .connected, keepAlive > 0 else { return nil }
        guard now - lastActivity > .milliseconds(Int64(keepAlive) * 1500) else { return nil }
        return closeDecided(reason: .keepAliveTimeout, why: "nothing received for 1.5 × keep alive (\(keepAlive) s)")
    }

    // MARK: The end

    /// The connection is gone. Returns what was agreed at CONNECT (with any change the client
    /// made since), so that the session can end as it should; nil when it never got that far.
    mutating func connectionClosed() -> Connected? {
        phase = .closed
        defer { connected = nil }
        return connected
    }
}

/// What the connection's rules consult and change in the client's session: its ACL, and the
/// QoS 2 identifiers the client sent that await PUBREL (kept by the session across connections).
protocol SessionRules {
    /// The client's ACL rules; nil when no ACL is in force.
    var access: ClientAccess? { get }
    /// Records an incoming QoS 2 identifier; false when it awaits PUBREL already (a re-send).
    func beginIncoming(_ identifier: UInt16) -> Bool
    /// Forgets an incoming QoS 2 identifier; false when it was unknown.
    func releaseIncoming(_ identifier: UInt16) -> Bool
    /// Incoming QoS 2 identifiers awaiting PUBREL.
    var incomingAwaitingRelease: Int { get }
}

/// An admission, held by reference while the authenticator decides.
private final class AdmissionBox {
    let value: ConnectionStateMachine.Admission
    init(_ value: ConnectionStateMachine.Admission) { self.value = value }
}
