import ArgumentParser
import MQTTClient
import MQTTCore
import NIOCore

/// The MQTT 5 properties given with `-D COMMAND PROPERTY VALUE` (or `-D COMMAND user-property
/// NAME VALUE`), sorted by the packet they go in.
struct PropertyArguments {
    /// The packets `-D` can name.
    enum Command: String, CaseIterable {
        case connect, publish, subscribe, unsubscribe, will, disconnect, auth

        var context: PropertyContext {
            switch self {
            case .connect: .connect
            case .publish: .publish
            case .subscribe: .subscribe
            case .unsubscribe: .unsubscribe
            case .will: .will
            case .disconnect: .disconnect
            case .auth: .auth
            }
        }
    }

    private(set) var connect: [Property] = []
    private(set) var publish: [Property] = []
    private(set) var subscribe: [Property] = []
    private(set) var unsubscribe: [Property] = []
    private(set) var will: [Property] = []

    /// Reads the words of every `-D` in order, for a command that accepts `allowed`.
    init(words: [String], allowed: Set<Command>, commandName: String) throws {
        var index = 0
        while index < words.count {
            guard index + 2 < words.count else {
                throw ValidationError("-D needs COMMAND PROPERTY VALUE; got '\(words[index...].joined(separator: " "))'.")
            }
            guard let command = Command(rawValue: words[index].lowercased()) else {
                throw ValidationError(
                    "Invalid -D command '\(words[index])': use one of \(Command.allCases.map(\.rawValue).joined(separator: ", "))."
                )
            }
            guard allowed.contains(command) else {
                throw ValidationError("-D \(command.rawValue) is not supported by \(commandName).")
            }
            let name = words[index + 1].lowercased()
            guard let identifier = Self.identifiers[name] else {
                throw ValidationError("Invalid property name '\(words[index + 1])' in -D \(command.rawValue).")
            }
            guard identifier.allowedIn.contains(command.context) else {
                throw ValidationError("The property \(name) does not belong in -D \(command.rawValue).")
            }
            let property: Property
            if identifier == .userProperty {
                guard index + 3 < words.count else { throw ValidationError("-D \(command.rawValue) user-property needs a NAME and a VALUE.") }
                property = .userProperty(words[index + 2], words[index + 3])
                index += 4
            } else {
                property = try Self.parse(identifier, name: name, value: words[index + 2])
                index += 3
            }
            switch command {
            case .connect: connect.append(property)
            case .publish: publish.append(property)
            case .subscribe: subscribe.append(property)
            case .unsubscribe: unsubscribe.append(property)
            case .will: will.append(property)
            case .disconnect, .auth: throw ValidationError("-D \(command.rawValue) is not supported by \(commandName).")
            }
        }
        if publish.contains(where: { $0.identifier == .subscriptionIdentifier }) {
            throw ValidationError("A client may not send subscription-identifier in PUBLISH.")
        }
        if let unsupported = connect.first(where: { [.requestProblemInformation, .requestResponseInformation].contains($0.identifier) }) {
            throw ValidationError("-D connect \(Self.name(of: unsupported.identifier)) is not supported by \(commandName).")
        }
        if connect.contains(where: { $0.identifier == .authenticationData }) && !connect.contains(where: { $0.identifier == .authenticationMethod }) {
            throw ValidationError("-D connect authentication-data needs -D connect authentication-method.")
        }
    }

    /// Puts the CONNECT properties where the client configuration keeps them.
    func applyConnect(to configuration: inout MQTTClient.Configuration) throws {
        var method: String?
        var data: ByteBuffer?
        for property in connect {
            switch property {
            case .sessionExpiryInterval(let seconds): configuration.sessionExpiry = .seconds(Int64(seconds))
            case .receiveMaximum(let maximum): configuration.receiveMaximum = maximum
            case .maximumPacketSize(let maximum): configuration.maximumPacketSize = maximum
            case .topicAliasMaximum(let maximum): configuration.topicAliasMaximum = maximum
            case .userProperty(let name, let value): configuration.connectUserProperties.append((name, value))
            case .authenticationMethod(let value): method = value
            case .authenticationData(let value): data = value
            default: throw ValidationError("-D connect \(Self.name(of: property.identifier)) is not supported.")
            }
        }
        if let method {
            let data = data
            configuration.enhancedAuthentication = MQTTClient.EnhancedAuthentication(
                method: method,
                initialData: { data },
                respond: { _ in
                    throw ValidationError("the broker asked for another authentication step, which a command line cannot answer")
                }
            )
        }
    }

    /// The subscription identifier given with `-D subscribe subscription-identifier`.
    var subscriptionIdentifier: Int? {
        subscribe.lazy.compactMap { if case .subscriptionIdentifier(let value) = $0 { value } else { nil } }.first
    }

    // MARK: Names and values

    /// Property names as mosquitto's clients spell them: the specification's names with dashes.
    static let identifiers: [String: PropertyIdentifier] = [
        "payload-format-indicator": .payloadFormatIndicator,
        "message-expiry-interval": .messageExpiryInterval,
        "content-type": .contentType,
        "response-topic": .responseTopic,
        "correlation-data": .correlationData,
        "subscription-identifier": .subscriptionIdentifier,
        "session-expiry-interval": .sessionExpiryInterval,
        "assigned-client-identifier": .assignedClientIdentifier,
        "server-keep-alive": .serverKeepAlive,
        "authentication-method": .authenticationMethod,
        "authentication-data": .authenticationData,
        "request-problem-information": .requestProblemInformation,
        "will-delay-interval": .willDelayInterval,
        "request-response-information": .requestResponseInformation,
        "response-information": .responseInformation,
        "server-reference": .serverReference,
        "reason-string": .reasonString,
        "receive-maximum": .receiveMaximum,
        "topic-alias-maximum": .topicAliasMaximum,
        "topic-alias": .topicAlias,
        "maximum-qos": .maximumQoS,
        "retain-available": .retainAvailable,
        "user-property": .userProperty,
        "maximum-packet-size": .maximumPacketSize,
        "wildcard-subscription-available": .wildcardSubscriptionAvailable,
        "subscription-identifier-available": .subscriptionIdentifierAvailable,
        "shared-subscription-available": .sharedSubscriptionAvailable,
    ]

    static func name(of identifier: PropertyIdentifier) -> String {
        identifiers.first { $0.value == identifier }?.key ?? "\(identifier)"
    }

    private static func parse(_ identifier: PropertyIdentifier, name: String, value: String) throws -> Property {
        func integer<T: FixedWidthInteger>(_: T.Type, in range: ClosedRange<T> = T.min...T.max) throws -> T {
            guard let number = T(value), range.contains(number) else {
                throw ValidationError(
                    "Invalid value '\(value)' for \(name): expected a whole number from \(range.lowerBound) to \(range.upperBound)."
                )
            }
            return number
        }
        switch identifier {
        case .payloadFormatIndicator: return .payloadFormatIndicator(try integer(UInt8.self, in: 0...1))
        case .messageExpiryInterval: return .messageExpiryInterval(try integer(UInt32.self))
        case .contentType: return .contentType(value)
        case .responseTopic:
            do {
                try TopicName.validate(value)
            } catch {
                throw ValidationError("Invalid response-topic '\(value)': \(error)")
            }
            return .responseTopic(value)
        case .correlationData: return .correlationData(ByteBuffer(string: value))
        case .subscriptionIdentifier: return .subscriptionIdentifier(Int(try integer(UInt32.self, in: 1...268_435_455)))
        case .sessionExpiryInterval: return .sessionExpiryInterval(try integer(UInt32.self))
        case .authenticationMethod: return .authenticationMethod(value)
        case .authenticationData: return .authenticationData(ByteBuffer(string: value))
        case .requestProblemInformation: return .requestProblemInformation(try integer(UInt8.self, in: 0...1))
        case .willDelayInterval: return .willDelayInterval(try integer(UInt32.self))
        case .requestResponseInformation: return .requestResponseInformation(try integer(UInt8.self, in: 0...1))
        case .reasonString: return .reasonString(value)
        case .receiveMaximum: return .receiveMaximum(try integer(UInt16.self, in: 1...UInt16.max))
        case .topicAliasMaximum: return .topicAliasMaximum(try integer(UInt16.self))
        case .topicAlias: return .topicAlias(try integer(UInt16.self, in: 1...UInt16.max))
        case .maximumPacketSize: return .maximumPacketSize(try integer(UInt32.self, in: 1...UInt32.max))
        case .assignedClientIdentifier, .serverKeepAlive, .responseInformation, .serverReference, .maximumQoS, .retainAvailable,
            .userProperty, .wildcardSubscriptionAvailable, .subscriptionIdentifierAvailable, .sharedSubscriptionAvailable:
            throw ValidationError("The property \(name) is not one a client sends.")
        }
    }
}
