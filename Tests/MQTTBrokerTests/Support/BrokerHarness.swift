import DatabusTestSupport
import Logging
import MQTTBroker
import MQTTCore
import NIOCore
import Testing

extension BrokerConfiguration {
    /// A broker on a free port of 127.0.0.1 with anonymous clients and no `$SYS` topics, changed by `configure`.
    static func testing(_ configure: (inout BrokerConfiguration) -> Void = { _ in }) -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        configuration.listeners = [.init(port: 0, address: "127.0.0.1")]
        configuration.allowAnonymous = true
        configuration.sysInterval = 0
        configure(&configuration)
        return configuration
    }
}

/// Starts a broker with `configuration`, runs `body` with the port of its first listener and
/// shuts the broker down however `body` ends.
func withBroker(_ configuration: BrokerConfiguration = .testing(), _ body: (Int) async throws -> Void) async throws {
    try await withBroker(configuration) { port, _ in try await body(port) }
}

/// As ``withBroker(_:_:)``, with the broker itself too, on `group` when given.
func withBroker(
    _ configuration: BrokerConfiguration,
    group: (any EventLoopGroup)? = nil,
    _ body: (Int, MQTTBroker) async throws -> Void
) async throws {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
    let broker =
        if let group {
            MQTTBroker(configuration: configuration, logger: logger, eventLoopGroup: group)
        } else {
            MQTTBroker(configuration: configuration, logger: logger)
        }
    let addresses = try await broker.start()
    guard let port = addresses.first?.port else {
        await broker.shutdown()
        throw InteropError("the broker bound no address")
    }
    do {
        try await body(port, broker)
    } catch {
        await broker.shutdown()
        throw error
    }
    await broker.shutdown()
}

/// Opens a connection, sends CONNECT and returns the connection with the CONNACK.
func connect(
    port: Int,
    _ clientIdentifier: String,
    version: MQTTProtocolVersion = .v5,
    cleanStart: Bool = true,
    keepAlive: UInt16 = 30,
    will: ConnectPacket.Will? = nil,
    properties: Properties = []
) async throws -> (CodecConnection, ConnAckPacket) {
    let connection = try await CodecConnection.connect(port: port, version: version)
    try await connection.send(
        .connect(
            ConnectPacket(
                protocolVersion: version,
                clientIdentifier: clientIdentifier,
                cleanStart: cleanStart,
                keepAlive: keepAlive,
                will: will,
                properties: properties
            )
        )
    )
    let packet = try await connection.receive()
    guard case .connack(let connack) = packet else {
        await connection.close()
        throw InteropError("expected CONNACK, got \(packet)")
    }
    return (connection, connack)
}

/// Connects and requires the broker to accept the client.
func connectAccepted(
    port: Int,
    _ clientIdentifier: String,
    version: MQTTProtocolVersion = .v5,
    cleanStart: Bool = true,
    keepAlive: UInt16 = 30,
    will: ConnectPacket.Will? = nil,
    properties: Properties = []
) async throws -> CodecConnection {
    let (connection, connack) = try await connect(
        port: port,
        clientIdentifier,
        version: version,
        cleanStart: cleanStart,
        keepAlive: keepAlive,
        will: will,
        properties: properties
    )
    guard connack.reasonCode == .success else {
        await connection.close()
        throw InteropError("\(clientIdentifier) was refused: \(connack.reasonCode)")
    }
    return connection
}

/// A connection a test drives: ``CodecConnection``, or ``RawConnection`` for bytes no encoder writes.
protocol TestConnection: Sendable {
    func send(_ packet: MQTTPacket) async throws
    func receive(within seconds: Double) async throws -> MQTTPacket
}

extension CodecConnection: TestConnection {}

extension TestConnection {
    /// Receives the next packet and records an issue unless it is `expected`.
    func expectPacket(_ expected: MQTTPacket, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let packet = try await receive(within: 5)
        #expect(packet == expected, sourceLocation: sourceLocation)
    }

    /// Subscribes to `filters` with `options` and returns the SUBACK's reason codes.
    @discardableResult
    func subscribe(
        _ filters: [String],
        options: SubscriptionOptions = .init(qos: .exactlyOnce),
        identifier: Int? = nil,
        packetIdentifier: UInt16 = 1
    ) async throws -> [ReasonCode] {
        try await send(
            .subscribe(
                SubscribePacket(
                    packetIdentifier: packetIdentifier,
                    subscriptions: filters.map { Subscription(topicFilter: $0, options: options) },
                    properties: identifier.map { [.subscriptionIdentifier($0)] } ?? []
                )
            )
        )
        let packet = try await receive(within: 5)
        guard case .suback(let suback) = packet, suback.packetIdentifier == packetIdentifier else {
            throw InteropError("expected SUBACK \(packetIdentifier), got \(packet)")
        }
        return suback.reasonCodes
    }

    /// Subscribes to one filter.
    @discardableResult
    func subscribe(
        _ filter: String,
        qos: QoS = .exactlyOnce,
        identifier: Int? = nil,
        packetIdentifier: UInt16 = 1
    ) async throws -> [ReasonCode] {
        try await subscribe([filter], options: .init(qos: qos), identifier: identifier, packetIdentifier: packetIdentifier)
    }

    /// The next packet, which must be a PUBLISH.
    func receivePublish(within seconds: Double = 5) async throws -> PublishPacket {
        let packet = try await receive(within: seconds)
        guard case .publish(let publish) = packet else { throw InteropError("expected PUBLISH, got \(packet)") }
        return publish
    }

    /// Publishes at QoS 0.
    func publish(_ topic: String, _ payload: String, retain: Bool = false, properties: Properties = []) async throws {
        try await send(.publish(PublishPacket(topicName: topic, payload: ByteBuffer(string: payload), retain: retain, properties: properties)))
    }

    /// Publishes at QoS 1 or 2, runs the whole flow and returns the PUBACK's or PUBREC's reason code.
    @discardableResult
    func publish(
        _ topic: String,
        _ payload: String,
        qos: QoS,
        packetIdentifier: UInt16,
        retain: Bool = false,
        properties: Properties = []
    ) async throws -> ReasonCode {
        try await send(
            .publish(
                PublishPacket(
                    topicName: topic,
                    payload: ByteBuffer(string: payload),
                    qos: qos,
                    retain: retain,
                    packetIdentifier: packetIdentifier,
                    properties: properties
                )
            )
        )
        switch qos {
        case .atMostOnce:
            return .success
        case .atLeastOnce:
            let packet = try await receive(within: 5)
            guard case .puback(let ack) = packet, ack.packetIdentifier == packetIdentifier else {
                throw InteropError("expected PUBACK \(packetIdentifier), got \(packet)")
            }
            return ack.reasonCode
        case .exactlyOnce:
            let packet = try await receive(within: 5)
            guard case .pubrec(let received) = packet, received.packetIdentifier == packetIdentifier else {
                throw InteropError("expected PUBREC \(packetIdentifier), got \(packet)")
            }
            guard !received.reasonCode.isFailure else { return received.reasonCode }
            try await send(.pubrel(PubRelPacket(packetIdentifier: packetIdentifier)))
            let completion = try await receive(within: 5)
            guard case .pubcomp(let complete) = completion, complete.packetIdentifier == packetIdentifier else {
                throw InteropError("expected PUBCOMP \(packetIdentifier), got \(completion)")
            }
            return received.reasonCode
        }
    }

    /// Acknowledges a received PUBLISH as its QoS requires (PUBACK, or PUBREC-PUBREL-PUBCOMP).
    func acknowledge(_ publish: PublishPacket) async throws {
        guard let identifier = publish.packetIdentifier else { return }
        switch publish.qos {
        case .atMostOnce: break
        case .atLeastOnce: try await send(.puback(PubAckPacket(packetIdentifier: identifier)))
        case .exactlyOnce:
            try await send(.pubrec(PubRecPacket(packetIdentifier: identifier)))
            try await expectPacket(.pubrel(PubRelPacket(packetIdentifier: identifier)))
            try await send(.pubcomp(PubCompPacket(packetIdentifier: identifier)))
        }
    }

    /// A round trip through the broker: PINGREQ, and the packets that came before PINGRESP.
    ///
    /// The broker handles one connection's packets in order and hands every packet for a
    /// client to its connection before answering a later one, so after a publisher's round
    /// trip (or its PUBACK) everything it published has been routed; a subscriber's round trip
    /// then returns whatever was routed to it.
    func roundTrip() async throws -> [MQTTPacket] {
        try await send(.pingreq)
        var before: [MQTTPacket] = []
        while true {
            let packet = try await receive(within: 5)
            if packet == .pingresp { return before }
            before.append(packet)
        }
    }

    /// Records an issue if anything arrived before the answer to a PINGREQ.
    func expectNothingPending(_ what: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let pending = try await roundTrip()
        #expect(pending.isEmpty, what ?? "nothing should have arrived", sourceLocation: sourceLocation)
    }

    /// Sends DISCONNECT and waits until the broker has closed the connection, so that the
    /// session is offline before the test goes on.
    func disconnect(_ packet: DisconnectPacket = DisconnectPacket()) async throws {
        try await send(.disconnect(packet))
        _ = try await packetsUntilClosed()
    }

    /// The packets received until the broker closes the connection; throws if it is still open after `seconds`.
    func packetsUntilClosed(within seconds: Double = 5) async throws -> [MQTTPacket] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var packets: [MQTTPacket] = []
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw InteropError("the connection is still open after \(seconds) s") }
            do {
                packets.append(try await receive(within: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18))
            } catch let error as InteropError where error.description.hasPrefix("connection closed") {
                return packets
            }
        }
    }

    /// Waits for the broker to close the connection and returns the DISCONNECT reason it sent
    /// first, if any (3.1.1 has none). Records an issue if anything else arrived.
    func closedByBroker(within seconds: Double = 5, sourceLocation: SourceLocation = #_sourceLocation) async throws -> ReasonCode? {
        let packets = try await packetsUntilClosed(within: seconds)
        var reason: ReasonCode?
        for packet in packets {
            if case .disconnect(let disconnect) = packet, reason == nil {
                reason = disconnect.reasonCode
            } else {
                Issue.record("unexpected \(packet) before the broker closed the connection", sourceLocation: sourceLocation)
            }
        }
        return reason
    }
}

extension PublishPacket {
    var payloadString: String { String(buffer: payload) }
}

/// Bytes as a ByteBuffer.
func bytes(_ values: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: values) }
