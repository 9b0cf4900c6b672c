import NIOCore

/// CONNECT: the first packet a client sends (3.1.1 section 3.1, 5.0 section 3.1).
public struct ConnectPacket: Sendable, Hashable {
    /// The will message the server publishes when the connection ends abnormally.
    public struct Will: Sendable, Hashable {
        public var topic: String
        public var payload: ByteBuffer
        public var qos: QoS
        public var retain: Bool
        /// Will properties (5.0 only): will delay interval, message expiry, content type, ...
        public var properties: Properties

        public init(topic: String, payload: ByteBuffer, qos: QoS = .atMostOnce, retain: Bool = false, properties: Properties = []) {
            self.topic = topic
            self.payload = payload
            self.qos = qos
            self.retain = retain
            self.properties = properties
        }
    }

    public var protocolVersion: MQTTProtocolVersion
    /// May be empty: the server then assigns one (5.0, or 3.1.1 with a clean session).
    public var clientIdentifier: String
    /// "Clean session" in 3.1.1, "clean start" in 5.0.
    public var cleanStart: Bool
    /// Seconds; 0 turns keep alive off.
    public var keepAlive: UInt16
    public var username: String?
    public var password: ByteBuffer?
    public var will: Will?
    public var properties: Properties
    /// The client is a bridge from another broker (mosquitto's `try_private`): 3.1 and 3.1.1
    /// CONNECTs carry it as bit 0x80 of the protocol level; 5.0 has no such bit.
    public var isBridge = false

    public init(
        protocolVersion: MQTTProtocolVersion = .v5,
        clientIdentifier: String,
        cleanStart: Bool = true,
        keepAlive: UInt16 = 60,
        username: String? = nil,
        password: ByteBuffer? = nil,
        will: Will? = nil,
        properties: Properties = []
    ) {
        self.protocolVersion = protocolVersion
        self.clientIdentifier = clientIdentifier
        self.cleanStart = cleanStart
        self.keepAlive = keepAlive
        self.username = username
        self.password = password
        self.will = will
        self.properties = properties
    }
}

extension ConnectPacket {
    private enum Flag {
        static let reserved: UInt8 = 0x01
        static let cleanStart: UInt8 = 0x02
        static let will: UInt8 = 0x04
        static let willRetain: UInt8 = 0x20
        static let password: UInt8 = 0x40
        static let username: UInt8 = 0x80
    }

    static func read(from buffer: inout ByteBuffer) throws(MQTTDecodingError) -> ConnectPacket {
        let protocolName = try buffer.readMQTTString()
        let rawLevel = try buffer.readMQTTByte()
        // Bit 0x80 on 3.1 and 3.1.1 marks a bridge, as mosquitto's bridges send it.
        let isBridge = rawLevel & 0x80 != 0 && (rawLevel & 0x7F == 3 || rawLevel & 0x7F == 4)
        let level = isBridge ? rawLevel & 0x7F : rawLevel
        guard protocolName == "MQTT" || protocolName == "MQIsdp" else {
            throw MQTTDecodingError(.invalidProtocolName, "protocol name \"\(protocolName)\" is not \"MQTT\" or \"MQIsdp\"")
        }
        // mosquitto's rule: "MQIsdp" goes with level 3 only, "MQTT" with levels 4 and 5.
        guard let version = MQTTProtocolVersion(rawValue: level), version.protocolName == protocolName else {
            throw MQTTDecodingError(
                .unsupportedProtocolVersion,
                "protocol \"\(protocolName)\" level \(level) is not 3 (MQIsdp, 3.1), 4 (MQTT, 3.1.1) or 5 (MQTT, 5.0)"
            )
        }
        let flags = try buffer.readMQTTByte()
        // 3.1 does not reserve bit 0, and mosquitto does not check it there.
        guard flags & Flag.reserved == 0 || version == .v3_1 else {
            throw MQTTDecodingError(.invalidConnectFlags, "reserved CONNECT flag bit 0 is set")
        }
        let hasWill = flags & Flag.will != 0
        let willQoSBits = (flags >> 3) & 0x03
        guard let willQoS = QoS(rawValue: willQoSBits) else {
            throw MQTTDecodingError(.invalidQoS, "will QoS 3")
        }
        if !hasWill && (willQoSBits != 0 || flags & Flag.willRetain != 0) {
            throw MQTTDecodingError(.invalidConnectFlags, "will QoS or will retain set without a will")
        }
        let hasUsername = flags & Flag.username != 0
        let hasPassword = flags & Flag.password != 0
        if version == .v3_1_1 && hasPassword && !hasUsername {
            throw MQTTDecodingError(.invalidConnectFlags, "password flag set without user name flag")
        }
        let keepAlive = try buffer.readMQTTUInt16()
        let properties = version == .v5 ? try Properties.read(from: &buffer, context: .connect) : []
        let clientIdentifier = try buffer.readMQTTString()
        var will: Will?
        if hasWill {
            let willProperties = version == .v5 ? try Properties.read(from: &buffer, context: .will) : []
            let topic = try buffer.readMQTTTopicName()
            guard !topic.isEmpty else { throw MQTTDecodingError(.emptyTopicName, "empty will topic") }
            let payload = try buffer.readMQTTBinary()
            will = Will(topic: topic, payload: payload, qos: willQoS, retain: flags & Flag.willRetain != 0, properties: willProperties)
        }
        let username = hasUsername ? try buffer.readMQTTString() : nil
        let password = hasPassword ? try buffer.readMQTTBinary() : nil
        var packet = ConnectPacket(
            protocolVersion: version,
            clientIdentifier: clientIdentifier,
            cleanStart: flags & Flag.cleanStart != 0,
            keepAlive: keepAlive,
            username: username,
            password: password,
            will: will,
            properties: properties
        )
        packet.isBridge = isBridge
        return packet
    }

    func bodySize() throws(MQTTEncodingError) -> Int {
        var size = 2 + protocolVersion.protocolName.utf8.count + 1 + 1 + 2  // name, level, flags, keep alive
        if protocolVersion == .v5 { size += try properties.encodedSize() }
        size += try EncodedSize.string(clientIdentifier, "client identifier")
        if let will {
            if protocolVersion == .v5 { size += try will.properties.encodedSize() }
            size += try EncodedSize.string(will.topic, "will topic")
            size += try EncodedSize.binary(will.payload, "will payload")
        }
        if let username { size += try EncodedSize.string(username, "user name") }
        if let password { size += try EncodedSize.binary(password, "password") }
        return size
    }

    func writeBody(to buffer: inout ByteBuffer) {
        buffer.writeMQTTString(protocolVersion.protocolName)
        buffer.writeInteger(protocolVersion.rawValue | (isBridge && protocolVersion != .v5 ? 0x80 : 0))
        var flags: UInt8 = cleanStart ? Flag.cleanStart : 0
        if let will {
            flags |= Flag.will | (will.qos.rawValue << 3)
            if will.retain { flags |= Flag.willRetain }
        }
        if username != nil { flags |= Flag.username }
        if password != nil { flags |= Flag.password }
        buffer.writeInteger(flags)
        buffer.writeInteger(keepAlive)
        if protocolVersion == .v5 { properties.write(to: &buffer) }
        buffer.writeMQTTString(clientIdentifier)
        if let will {
            if protocolVersion == .v5 { will.properties.write(to: &buffer) }
            buffer.writeMQTTString(will.topic)
            buffer.writeMQTTBinary(will.payload)
        }
        if let username { buffer.writeMQTTString(username) }
        if let password { buffer.writeMQTTBinary(password) }
    }
}
