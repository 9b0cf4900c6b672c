import NIOCore

/// The identifier byte of an MQTT 5.0 property (specification section 2.2.2.2).
public enum PropertyIdentifier: UInt8, Sendable, Hashable, CaseIterable {
    case payloadFormatIndicator = 0x01
    case messageExpiryInterval = 0x02
    case contentType = 0x03
    case responseTopic = 0x08
    case correlationData = 0x09
    case subscriptionIdentifier = 0x0B
    case sessionExpiryInterval = 0x11
    case assignedClientIdentifier = 0x12
    case serverKeepAlive = 0x13
    case authenticationMethod = 0x15
    case authenticationData = 0x16
    case requestProblemInformation = 0x17
    case willDelayInterval = 0x18
    case requestResponseInformation = 0x19
    case responseInformation = 0x1A
    case serverReference = 0x1C
    case reasonString = 0x1F
    case receiveMaximum = 0x21
    case topicAliasMaximum = 0x22
    case topicAlias = 0x23
    case maximumQoS = 0x24
    case retainAvailable = 0x25
    case userProperty = 0x26
    case maximumPacketSize = 0x27
    case wildcardSubscriptionAvailable = 0x28
    case subscriptionIdentifierAvailable = 0x29
    case sharedSubscriptionAvailable = 0x2A

    /// How the value is laid out on the wire.
    public enum WireType: Sendable {
        case byte, twoByteInteger, fourByteInteger, variableByteInteger, utf8String, binaryData, utf8StringPair
    }

    /// The wire type of this property's value.
    public var wireType: WireType {
        switch self {
        case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation, .maximumQoS,
            .retainAvailable, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable,
            .sharedSubscriptionAvailable:
            .byte
        case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias: .twoByteInteger
        case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize: .fourByteInteger
        case .subscriptionIdentifier: .variableByteInteger
        case .contentType, .responseTopic, .assignedClientIdentifier, .authenticationMethod, .responseInformation,
            .serverReference, .reasonString:
            .utf8String
        case .correlationData, .authenticationData: .binaryData
        case .userProperty: .utf8StringPair
        }
    }

    /// The places this property may appear in.
    public var allowedIn: PropertyContext {
        switch self {
        case .payloadFormatIndicator, .messageExpiryInterval, .contentType, .responseTopic, .correlationData:
            [.publish, .will]
        case .subscriptionIdentifier: [.publish, .subscribe]
        case .sessionExpiryInterval: [.connect, .connack, .disconnect]
        case .assignedClientIdentifier, .serverKeepAlive, .responseInformation, .maximumQoS, .retainAvailable,
            .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable:
            .connack
        case .authenticationMethod, .authenticationData: [.connect, .connack, .auth]
        case .requestProblemInformation, .requestResponseInformation: .connect
        case .willDelayInterval: .will
        case .serverReference: [.connack, .disconnect]
        case .reasonString:
            [.connack, .puback, .pubrec, .pubrel, .pubcomp, .suback, .unsuback, .disconnect, .auth]
        case .receiveMaximum, .topicAliasMaximum, .maximumPacketSize: [.connect, .connack]
        case .topicAlias: .publish
        case .userProperty: .all
        }
    }

    /// Whether the property may appear more than once in `context`.
    func mayRepeat(in context: PropertyContext) -> Bool {
        switch self {
        case .userProperty: true
        case .subscriptionIdentifier: context == .publish
        default: false
        }
    }
}

/// A place in a packet that carries properties.
public struct PropertyContext: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let connect = PropertyContext(rawValue: 1 << 0)
    public static let connack = PropertyContext(rawValue: 1 << 1)
    public static let publish = PropertyContext(rawValue: 1 << 2)
    /// The will properties in the CONNECT payload.
    public static let will = PropertyContext(rawValue: 1 << 3)
    public static let puback = PropertyContext(rawValue: 1 << 4)
    public static let pubrec = PropertyContext(rawValue: 1 << 5)
    public static let pubrel = PropertyContext(rawValue: 1 << 6)
    public static let pubcomp = PropertyContext(rawValue: 1 << 7)
    public static let subscribe = PropertyContext(rawValue: 1 << 8)
    public static let suback = PropertyContext(rawValue: 1 << 9)
    public static let unsubscribe = PropertyContext(rawValue: 1 << 10)
    public static let unsuback = PropertyContext(rawValue: 1 << 11)
    public static let disconnect = PropertyContext(rawValue: 1 << 12)
    public static let auth = PropertyContext(rawValue: 1 << 13)
    public static let all = PropertyContext(rawValue: (1 << 14) - 1)

    public var description: String {
        let names = [
            "CONNECT", "CONNACK", "PUBLISH", "will", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK",
            "UNSUBSCRIBE", "UNSUBACK", "DISCONNECT", "AUTH",
        ]
        return names.indices.filter { rawValue & (1 << $0) != 0 }.map { names[$0] }.joined(separator: "|")
    }
}

/// One MQTT 5.0 property with its value.
public enum Property: Sendable, Hashable {
    /// 0 = unspecified bytes, 1 = UTF-8 text.
    case payloadFormatIndicator(UInt8)
    /// Lifetime of the message in seconds.
    case messageExpiryInterval(UInt32)
    case contentType(String)
    case responseTopic(String)
    case correlationData(ByteBuffer)
    /// 1...268,435,455.
    case subscriptionIdentifier(Int)
    case sessionExpiryInterval(UInt32)
    case assignedClientIdentifier(String)
    case serverKeepAlive(UInt16)
    case authenticationMethod(String)
    case authenticationData(ByteBuffer)
    case requestProblemInformation(UInt8)
    case willDelayInterval(UInt32)
    case requestResponseInformation(UInt8)
    case responseInformation(String)
    case serverReference(String)
    case reasonString(String)
    case receiveMaximum(UInt16)
    case topicAliasMaximum(UInt16)
    case topicAlias(UInt16)
    case maximumQoS(UInt8)
    case retainAvailable(UInt8)
    case userProperty(String, String)
    case maximumPacketSize(UInt32)
    case wildcardSubscriptionAvailable(UInt8)
    case subscriptionIdentifierAvailable(UInt8)
    case sharedSubscriptionAvailable(UInt8)

    /// The identifier byte of this property.
    public var identifier: PropertyIdentifier {
        switch self {
        case .payloadFormatIndicator: .payloadFormatIndicator
        case .messageExpiryInterval: .messageExpiryInterval
        case .contentType: .contentType
        case .responseTopic: .responseTopic
        case .correlationData: .correlationData
        case .subscriptionIdentifier: .subscriptionIdentifier
        case .sessionExpiryInterval: .sessionExpiryInterval
        case .assignedClientIdentifier: .assignedClientIdentifier
        case .serverKeepAlive: .serverKeepAlive
        case .authenticationMethod: .authenticationMethod
        case .authenticationData: .authenticationData
        case .requestProblemInformation: .requestProblemInformation
        case .willDelayInterval: .willDelayInterval
        case .requestResponseInformation: .requestResponseInformation
        case .responseInformation: .responseInformation
        case .serverReference: .serverReference
        case .reasonString: .reasonString
        case .receiveMaximum: .receiveMaximum
        case .topicAliasMaximum: .topicAliasMaximum
        case .topicAlias: .topicAlias
        case .maximumQoS: .maximumQoS
        case .retainAvailable: .retainAvailable
        case .userProperty: .userProperty
        case .maximumPacketSize: .maximumPacketSize
        case .wildcardSubscriptionAvailable: .wildcardSubscriptionAvailable
        case .subscriptionIdentifierAvailable: .subscriptionIdentifierAvailable
        case .sharedSubscriptionAvailable: .sharedSubscriptionAvailable
        }
    }
}

/// The properties of a packet, in the order they were read or added.
public struct Properties: Sendable, Hashable, ExpressibleByArrayLiteral, RandomAccessCollection {
    public private(set) var elements: [Property]

    public init() { self.elements = [] }
    public init(_ elements: [Property]) { self.elements = elements }
    public init(arrayLiteral elements: Property...) { self.elements = elements }

    public var startIndex: Int { elements.startIndex }
    public var endIndex: Int { elements.endIndex }
    public subscript(position: Int) -> Property { elements[position] }

    public mutating func append(_ property: Property) { elements.append(property) }

    /// Removes every property with `identifier`.
    public mutating func removeAll(_ identifier: PropertyIdentifier) {
        elements.removeAll { $0.identifier == identifier }
    }

    /// Replaces the properties with `identifier` by `property`.
    public mutating func set(_ property: Property) {
        removeAll(property.identifier)
        elements.append(property)
    }
}

extension Properties {
    public var payloadFormatIndicator: UInt8? { first { if case .payloadFormatIndicator(let v) = $0 { v } else { nil } } }
    public var messageExpiryInterval: UInt32? { first { if case .messageExpiryInterval(let v) = $0 { v } else { nil } } }
    public var contentType: String? { first { if case .contentType(let v) = $0 { v } else { nil } } }
    public var responseTopic: String? { first { if case .responseTopic(let v) = $0 { v } else { nil } } }
    public var correlationData: ByteBuffer? { first { if case .correlationData(let v) = $0 { v } else { nil } } }
    public var subscriptionIdentifiers: [Int] {
        elements.compactMap { if case .subscriptionIdentifier(let v) = $0 { v } else { nil } }
    }
    public var sessionExpiryInterval: UInt32? { first { if case .sessionExpiryInterval(let v) = $0 { v } else { nil } } }
    public var assignedClientIdentifier: String? {
        first { if case .assignedClientIdentifier(let v) = $0 { v } else { nil } }
    }
    public var serverKeepAlive: UInt16? { first { if case .serverKeepAlive(let v) = $0 { v } else { nil } } }
    public var authenticationMethod: String? { first { if case .authenticationMethod(let v) = $0 { v } else { nil } } }
    public var authenticationData: ByteBuffer? { first { if case .authenticationData(let v) = $0 { v } else { nil } } }
    public var requestProblemInformation: UInt8? {
        first { if case .requestProblemInformation(let v) = $0 { v } else { nil } }
    }
    public var willDelayInterval: UInt32? { first { if case .willDelayInterval(let v) = $0 { v } else { nil } } }
    public var requestResponseInformation: UInt8? {
        first { if case .requestResponseInformation(let v) = $0 { v } else { nil } }
    }
    public var responseInformation: String? { first { if case .responseInformation(let v) = $0 { v } else { nil } } }
    public var serverReference: String? { first { if case .serverReference(let v) = $0 { v } else { nil } } }
    public var reasonString: String? { first { if case .reasonString(let v) = $0 { v } else { nil } } }
    public var receiveMaximum: UInt16? { first { if case .receiveMaximum(let v) = $0 { v } else { nil } } }
    public var topicAliasMaximum: UInt16? { first { if case .topicAliasMaximum(let v) = $0 { v } else { nil } } }
    public var topicAlias: UInt16? { first { if case .topicAlias(let v) = $0 { v } else { nil } } }
    public var maximumQoS: UInt8? { first { if case .maximumQoS(let v) = $0 { v } else { nil } } }
    public var retainAvailable: UInt8? { first { if case .retainAvailable(let v) = $0 { v } else { nil } } }
    public var userProperties: [(name: String, value: String)] {
        elements.compactMap { if case .userProperty(let n, let v) = $0 { (n, v) } else { nil } }
    }
    public var maximumPacketSize: UInt32? { first { if case .maximumPacketSize(let v) = $0 { v } else { nil } } }
    public var wildcardSubscriptionAvailable: UInt8? {
        first { if case .wildcardSubscriptionAvailable(let v) = $0 { v } else { nil } }
    }
    public var subscriptionIdentifierAvailable: UInt8? {
        first { if case .subscriptionIdentifierAvailable(let v) = $0 { v } else { nil } }
    }
    public var sharedSubscriptionAvailable: UInt8? {
        first { if case .sharedSubscriptionAvailable(let v) = $0 { v } else { nil } }
    }

    private func first<T>(_ extract: (Property) -> T?) -> T? {
        for element in elements {
            if let value = extract(element) { return value }
        }
        return nil
    }
}

// MARK: Wire format

extension Properties {
    /// Reads a property length and the properties after it, checking each belongs in `context`.
    static func read(from buffer: inout ByteBuffer, context: PropertyContext) throws(MQTTDecodingError) -> Properties {
        let length = try buffer.readMQTTVariableByteInteger()
        guard length > 0 else { return Properties() }
        guard var slice = buffer.readSlice(length: length) else {
            throw MQTTDecodingError(.propertyLengthOverrun, "property length \(length) runs past the end of the packet")
        }
        var properties = Properties()
        // Every property takes at least two bytes; reserving once avoids regrowing the array.
        properties.elements.reserveCapacity(Swift.min(length / 2, 16))
        var seen: UInt64 = 0
        while slice.readableBytes > 0 {
            let property = try Property.read(from: &slice)
            let identifier = property.identifier
            guard identifier.allowedIn.contains(context) else {
                throw MQTTDecodingError(.propertyNotAllowed, "property \(identifier) may not appear in \(context)")
            }
            let bit: UInt64 = 1 << identifier.rawValue
            if seen & bit != 0 && !identifier.mayRepeat(in: context) {
                throw MQTTDecodingError(.duplicateProperty, "property \(identifier) appears more than once in \(context)")
            }
            seen |= bit
            properties.elements.append(property)
        }
        return properties
    }

    /// The size of the property length field plus the properties, after checking every value fits its field.
    func encodedSize() throws(MQTTEncodingError) -> Int {
        var length = 0
        for property in elements {
            try property.validateForEncoding()
            length += property.wireSize
        }
        return EncodedSize.variableByteInteger(length) + length
    }

    /// Writes the property length and the properties (already checked by ``encodedSize()``).
    func write(to buffer: inout ByteBuffer) {
        var length = 0
        for property in elements { length += property.wireSize }
        buffer.writeMQTTVariableByteInteger(length)
        for property in elements { property.write(to: &buffer) }
    }
}

extension Property {
    private static func overrun(_ identifier: PropertyIdentifier) -> MQTTDecodingError {
        MQTTDecodingError(.propertyLengthOverrun, "property \(identifier) runs past the end of the properties")
    }

    static func read(from buffer: inout ByteBuffer) throws(MQTTDecodingError) -> Property {
        let idByte: UInt8
        switch buffer.peekMQTTVariableByteInteger(at: buffer.readerIndex) {
        case .value(let value, let length) where length == 1:
            idByte = UInt8(value)
            buffer.moveReaderIndex(forwardBy: 1)
        case .value(let value, _):
            throw MQTTDecodingError(.unknownProperty, "unknown property identifier \(value)")
        case .needMoreBytes, .tooLong:
            throw MQTTDecodingError(.malformed, "property identifier is not a valid variable byte integer")
        }
        guard let identifier = PropertyIdentifier(rawValue: idByte) else {
            throw MQTTDecodingError(.unknownProperty, "unknown property identifier 0x\(String(idByte, radix: 16))")
        }
        do throws(MQTTDecodingError) {
            switch identifier.wireType {
            case .byte:
                let value = try buffer.readMQTTByte()
                // Every one-byte property is a 0/1 flag or indicator.
                if value > 1 {
                    throw MQTTDecodingError(.invalidPropertyValue, "property \(identifier) must be 0 or 1, not \(value)")
                }
                return try byteProperty(identifier, value)
            case .twoByteInteger:
                let value = try buffer.readMQTTUInt16()
                if value == 0 && (identifier == .receiveMaximum || identifier == .topicAlias) {
                    throw MQTTDecodingError(.invalidPropertyValue, "property \(identifier) must not be 0")
                }
                return twoByteProperty(identifier, value)
            case .fourByteInteger:
                let value = try buffer.readMQTTUInt32()
                if value == 0 && identifier == .maximumPacketSize {
                    throw MQTTDecodingError(.invalidPropertyValue, "property maximumPacketSize must not be 0")
                }
                return fourByteProperty(identifier, value)
            case .variableByteInteger:
                let value = try buffer.readMQTTVariableByteInteger()
                guard value != 0 else {
                    throw MQTTDecodingError(.invalidPropertyValue, "subscription identifier must not be 0")
                }
                return .subscriptionIdentifier(value)
            case .utf8String:
                return stringProperty(identifier, try buffer.readMQTTString())
            case .binaryData:
                let data = try buffer.readMQTTBinary()
                return identifier == .correlationData ? .correlationData(data) : .authenticationData(data)
            case .utf8StringPair:
                let name = try buffer.readMQTTString()
                return .userProperty(name, try buffer.readMQTTString())
            }
        } catch {
            throw error.kind == .remainingLengthMismatch ? overrun(identifier) : error
        }
    }

    private static func byteProperty(_ identifier: PropertyIdentifier, _ value: UInt8) throws(MQTTDecodingError) -> Property {
        switch identifier {
        case .payloadFormatIndicator: return .payloadFormatIndicator(value)
        case .requestProblemInformation: return .requestProblemInformation(value)
        case .requestResponseInformation: return .requestResponseInformation(value)
        case .maximumQoS: return .maximumQoS(value)
        case .retainAvailable: return .retainAvailable(value)
        case .wildcardSubscriptionAvailable: return .wildcardSubscriptionAvailable(value)
        case .subscriptionIdentifierAvailable: return .subscriptionIdentifierAvailable(value)
        case .sharedSubscriptionAvailable: return .sharedSubscriptionAvailable(value)
        default: throw MQTTDecodingError(.malformed, "property \(identifier) is not a byte")
        }
    }

    private static func twoByteProperty(_ identifier: PropertyIdentifier, _ value: UInt16) -> Property {
        switch identifier {
        case .serverKeepAlive: .serverKeepAlive(value)
        case .receiveMaximum: .receiveMaximum(value)
        case .topicAliasMaximum: .topicAliasMaximum(value)
        default: .topicAlias(value)
        }
    }

    private static func fourByteProperty(_ identifier: PropertyIdentifier, _ value: UInt32) -> Property {
        switch identifier {
        case .messageExpiryInterval: .messageExpiryInterval(value)
        case .sessionExpiryInterval: .sessionExpiryInterval(value)
        case .willDelayInterval: .willDelayInterval(value)
        default: .maximumPacketSize(value)
        }
    }

    private static func stringProperty(_ identifier: PropertyIdentifier, _ value: String) -> Property {
        switch identifier {
        case .contentType: .contentType(value)
        case .responseTopic: .responseTopic(value)
        case .assignedClientIdentifier: .assignedClientIdentifier(value)
        case .authenticationMethod: .authenticationMethod(value)
        case .responseInformation: .responseInformation(value)
        case .serverReference: .serverReference(value)
        default: .reasonString(value)
        }
    }

    /// Identifier byte plus value.
    var wireSize: Int {
        switch self {
        case .payloadFormatIndicator, .requestProblemInformation, .requestResponseInformation, .maximumQoS,
            .retainAvailable, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable,
            .sharedSubscriptionAvailable:
            2
        case .serverKeepAlive, .receiveMaximum, .topicAliasMaximum, .topicAlias: 3
        case .messageExpiryInterval, .sessionExpiryInterval, .willDelayInterval, .maximumPacketSize: 5
        case .subscriptionIdentifier(let value): 1 + EncodedSize.variableByteInteger(value)
        case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s), .authenticationMethod(let s),
            .responseInformation(let s), .serverReference(let s), .reasonString(let s):
            3 + s.utf8.count
        case .correlationData(let data), .authenticationData(let data): 3 + data.readableBytes
        case .userProperty(let name, let value): 5 + name.utf8.count + value.utf8.count
        }
    }

    /// Checks that the value fits its field on the wire.
    func validateForEncoding() throws(MQTTEncodingError) {
        switch self {
        case .subscriptionIdentifier(let value):
            guard (1...maximumVariableByteInteger).contains(value) else {
                throw MQTTEncodingError("subscription identifier \(value) is outside 1...268,435,455")
            }
        case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s), .authenticationMethod(let s),
            .responseInformation(let s), .serverReference(let s), .reasonString(let s):
            _ = try EncodedSize.string(s, "property \(identifier)")
        case .correlationData(let data), .authenticationData(let data):
            _ = try EncodedSize.binary(data, "property \(identifier)")
        case .userProperty(let name, let value):
            _ = try EncodedSize.string(name, "user property name")
            _ = try EncodedSize.string(value, "user property value")
        default:
            break
        }
    }

    func write(to buffer: inout ByteBuffer) {
        buffer.writeInteger(identifier.rawValue)
        switch self {
        case .payloadFormatIndicator(let v), .requestProblemInformation(let v), .requestResponseInformation(let v),
            .maximumQoS(let v), .retainAvailable(let v), .wildcardSubscriptionAvailable(let v),
            .subscriptionIdentifierAvailable(let v), .sharedSubscriptionAvailable(let v):
            buffer.writeInteger(v)
        case .serverKeepAlive(let v), .receiveMaximum(let v), .topicAliasMaximum(let v), .topicAlias(let v):
            buffer.writeInteger(v)
        case .messageExpiryInterval(let v), .sessionExpiryInterval(let v), .willDelayInterval(let v),
            .maximumPacketSize(let v):
            buffer.writeInteger(v)
        case .subscriptionIdentifier(let v):
            buffer.writeMQTTVariableByteInteger(v)
        case .contentType(let s), .responseTopic(let s), .assignedClientIdentifier(let s), .authenticationMethod(let s),
            .responseInformation(let s), .serverReference(let s), .reasonString(let s):
            buffer.writeMQTTString(s)
        case .correlationData(let data), .authenticationData(let data):
            buffer.writeMQTTBinary(data)
        case .userProperty(let name, let value):
            buffer.writeMQTTString(name)
            buffer.writeMQTTString(value)
        }
    }
}

// MARK: Storage

extension Properties {
    /// The properties in their wire form (property length, then each property), for storing.
    public func encodedForStorage() throws(MQTTEncodingError) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(try encodedSize())
        write(to: &buffer)
        return buffer
    }

    /// Reads properties stored by ``encodedForStorage()``, checking them as if they came in `context`.
    public static func decodeFromStorage(_ buffer: ByteBuffer, context: PropertyContext) throws(MQTTDecodingError) -> Properties {
        var buffer = buffer
        let properties = try read(from: &buffer, context: context)
        guard buffer.readableBytes == 0 else {
            throw MQTTDecodingError(.remainingLengthMismatch, "stored properties have \(buffer.readableBytes) trailing bytes")
        }
        return properties
    }
}
