import ArgumentParser
import Foundation
import MQTTClient
import MQTTCore
import NIOCore

/// The connection flags `databus pub` and `databus sub` share, spelled as mosquitto_pub and
/// mosquitto_sub spell them.
struct ClientOptions: ParsableArguments {
    @Option(name: [.customShort("h"), .customLong("host")], help: "The broker's host name or address.")
    var host = "localhost"

    @Option(name: [.customShort("p"), .customLong("port")], help: "The broker's port (default: 1883, or 8883 with TLS).")
    var port: Int?

    @Option(
        name: [.customShort("V"), .customLong("protocol-version")],
        help: "The MQTT version: mqttv31 (or 31), mqttv311 (or 311, the default as in mosquitto) or mqttv5 (or 5). -D implies mqttv5."
    )
    var protocolVersion: String?

    @Option(name: [.customShort("i"), .customLong("id")], parsing: .unconditional, help: "The client identifier (default: generated).")
    var id: String?

    @Option(
        name: [.customShort("I"), .customLong("id-prefix")],
        parsing: .unconditional,
        help: "Use this prefix followed by the process id as the client identifier."
    )
    var idPrefix: String?

    @Option(name: [.customShort("u"), .customLong("username")], parsing: .unconditional, help: "The user name.")
    var username: String?

    @Option(name: [.customShort("P"), .customLong("pw")], parsing: .unconditional, help: "The password.")
    var password: String?

    @Option(
        name: .customLong("jwt-command"),
        parsing: .unconditional,
        help: ArgumentHelp(
            "Run this shell command before every connect and reconnect; its output (less the final newline) is the password.",
            discussion: "For brokers that take a short-lived JWT as the password: the token is fetched fresh for each attempt.",
            valueName: "command"
        )
    )
    var jwtCommand: String?

    @Option(name: [.customShort("k"), .customLong("keepalive")], help: "Seconds between PINGREQs when idle (default: 60; 0 turns keep alive off).")
    var keepAlive: Int = 60

    @Flag(
        name: [.customShort("c"), .customLong("disable-clean-session")],
        help: "Keep the session on the broker after disconnecting (needs -i); with MQTT 5 it never expires unless -x says otherwise."
    )
    var disableCleanSession = false

    @Option(
        name: [.customShort("x"), .customLong("session-expiry-interval")],
        parsing: .unconditional,
        help: "MQTT 5 session expiry in seconds; -1, 4294967295 or ∞ for never (default: 0, or never with -c)."
    )
    var sessionExpiry: String?

    @Option(
        name: [.customShort("D"), .customLong("property")],
        parsing: .upToNextOption,
        help: ArgumentHelp(
            "An MQTT 5 property: -D COMMAND PROPERTY VALUE, or -D COMMAND user-property NAME VALUE. May be repeated.",
            discussion: """
                COMMAND is connect, publish, subscribe, unsubscribe or will; PROPERTY is the property's \
                name with dashes (content-type, correlation-data, message-expiry-interval, \
                payload-format-indicator, response-topic, topic-alias, user-property, \
                session-expiry-interval, receive-maximum, maximum-packet-size, topic-alias-maximum, \
                subscription-identifier, will-delay-interval, authentication-method, authentication-data).
                """,
            valueName: "command property value"
        )
    )
    var propertyWords: [String] = []

    @Option(name: .customLong("cafile"), help: "Trust the CA certificates in this PEM file, and connect with TLS.")
    var caFile: String?

    @Option(
        name: .customLong("capath"),
        help: "Trust the CA certificates in this folder (hashed names, as `openssl rehash` makes), and connect with TLS."
    )
    var caPath: String?

    @Flag(name: .customLong("tls-use-os-certs"), help: "Trust the operating system's CA certificates, and connect with TLS.")
    var tlsUseOSCertificates = false

    @Option(name: .customLong("cert"), help: "The client certificate (PEM) for mutual TLS; needs --key.")
    var certificate: String?

    @Option(name: .customLong("key"), help: "The client certificate's private key (PEM).")
    var key: String?

    @Flag(name: .customLong("insecure"), help: "Do not check that the broker's certificate names the host (as mosquitto's --insecure).")
    var insecure = false

    @Option(name: .customLong("will-topic"), parsing: .unconditional, help: "The topic of the will the broker publishes if the connection is lost.")
    var willTopic: String?

    @Option(name: .customLong("will-payload"), parsing: .unconditional, help: "The will's payload (default: empty).")
    var willPayload: String?

    @Option(name: .customLong("will-qos"), help: "The will's QoS (default: 0).")
    var willQoS: Int = 0

    @Flag(name: .customLong("will-retain"), help: "Make the will a retained message.")
    var willRetain = false

    @Flag(name: [.customShort("d"), .customLong("debug")], help: "Log the client's connection events to standard error.")
    var debug = false

    @Flag(name: .customLong("quiet"), help: "Print no error messages at run time (usage errors are still printed).")
    var quiet = false

    /// The protocol version the flags ask for.
    func version() throws -> MQTTProtocolVersion {
        switch protocolVersion?.lowercased() {
        case nil: propertyWords.isEmpty ? .v3_1_1 : .v5
        case "mqttv311", "311", "v311", "3.1.1": .v3_1_1
        case "mqttv5", "5", "v5", "5.0": .v5
        case "mqttv31", "31", "v31", "3.1": .v3_1
        default:
            throw ValidationError("Invalid protocol version '\(protocolVersion ?? "")': use mqttv31 (31), mqttv311 (311) or mqttv5 (5).")
        }
    }

    /// Checks the flags that do not depend on the command.
    func validateCommon() throws {
        let version = try version()
        if !propertyWords.isEmpty && version != .v5 {
            throw ValidationError("-D/--property needs MQTT 5 (-V mqttv5).")
        }
        if let port, !(1...65_535).contains(port) { throw ValidationError("Invalid port \(port): it must be 1 to 65535.") }
        if !(0...65_535).contains(keepAlive) { throw ValidationError("Invalid keepalive \(keepAlive): it must be 0 to 65535.") }
        if id != nil && idPrefix != nil { throw ValidationError("-i and -I cannot be used together.") }
        if disableCleanSession && id == nil { throw ValidationError("-c needs a client identifier (-i): the session is kept under it.") }
        if let id, id.utf8.count > 65_535 { throw ValidationError("The client identifier is too long.") }
        if password != nil && jwtCommand != nil { throw ValidationError("-P and --jwt-command cannot be used together.") }
        if let sessionExpiry, Self.parseSessionExpiry(sessionExpiry) == nil {
            throw ValidationError("Invalid session expiry interval '\(sessionExpiry)': give 0 to 4294967295 seconds, or -1 or ∞ for never.")
        }
        if (certificate == nil) != (key == nil) { throw ValidationError("--cert and --key must be given together.") }
        if certificate != nil && caFile == nil && caPath == nil && !tlsUseOSCertificates {
            throw ValidationError("--cert and --key need --cafile, --capath or --tls-use-os-certs to say which CA to trust.")
        }
        if [caFile != nil, caPath != nil, tlsUseOSCertificates].filter({ $0 }).count > 1 {
            throw ValidationError("Give only one of --cafile, --capath and --tls-use-os-certs.")
        }
        if insecure && !usesTLS { throw ValidationError("--insecure only applies to TLS (--cafile, --capath or --tls-use-os-certs).") }
        for file in [caFile, certificate, key].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: file) {
            throw ValidationError("Cannot read \(file).")
        }
        if willTopic == nil && (willPayload != nil || willRetain || willQoS != 0) {
            throw ValidationError("--will-payload, --will-qos and --will-retain need --will-topic.")
        }
        if let willTopic {
            do {
                try TopicName.validate(willTopic)
            } catch {
                throw ValidationError("Invalid will topic '\(willTopic)': \(error)")
            }
        }
        if QoS(rawValue: UInt8(clamping: willQoS)) == nil || willQoS < 0 {
            throw ValidationError("Invalid will QoS \(willQoS): it must be 0, 1 or 2.")
        }
    }

    var usesTLS: Bool { caFile != nil || caPath != nil || tlsUseOSCertificates }

    /// `-x`: seconds, or `nil` when the text is not a valid interval.
    static func parseSessionExpiry(_ text: String) -> UInt32? {
        if text == "-1" || text == "∞" { return UInt32.max }
        return UInt32(text)
    }

    /// The client configuration the flags describe, for a command whose default client
    /// identifiers start with `defaultIdentifierPrefix`.
    func makeConfiguration(defaultIdentifierPrefix: String, properties: PropertyArguments) throws -> MQTTClient.Configuration {
        let version = try version()
        let clientIdentifier: String
        if let id {
            clientIdentifier = id
        } else if let idPrefix {
            clientIdentifier = "\(idPrefix)\(getpid())"
        } else {
            clientIdentifier = "\(defaultIdentifierPrefix)\(getpid())-\(Self.randomSuffix())"
        }
        var tls: MQTTClient.TLS?
        if usesTLS {
            let trust: MQTTClient.TLS.Trust = if let caFile { .caFile(caFile) } else if let caPath { .caFile(caPath) } else { .systemDefault }
            var settings = MQTTClient.TLS(trust: trust, certificateFile: certificate, privateKeyFile: key)
            settings.verifiesHostname = !insecure
            tls = settings
        }
        var configuration = MQTTClient.Configuration(
            host: host,
            port: port,
            clientIdentifier: clientIdentifier,
            protocolVersion: version,
            tls: tls
        )
        configuration.keepAlive = .seconds(keepAlive)
        configuration.cleanStart = !disableCleanSession
        // As mosquitto's clients: no topic aliases from the broker, so `%A` shows what it sent.
        configuration.topicAliasMaximum = 0
        if version == .v5 {
            let expiry = sessionExpiry.flatMap(Self.parseSessionExpiry) ?? (disableCleanSession ? UInt32.max : 0)
            configuration.sessionExpiry = .seconds(Int64(expiry))
        }
        configuration.username = username
        configuration.password = password.map { Array($0.utf8) }
        if let jwtCommand {
            let username = self.username
            configuration.credentialsProvider = {
                let token = try await ShellCommand.output(of: jwtCommand)
                return (username, Array(token.utf8))
            }
        }
        if let willTopic {
            configuration.will = ConnectPacket.Will(
                topic: willTopic,
                payload: ByteBuffer(string: willPayload ?? ""),
                qos: QoS(rawValue: UInt8(willQoS)) ?? .atMostOnce,
                retain: willRetain,
                properties: Properties(properties.will)
            )
        }
        try properties.applyConnect(to: &configuration)
        return configuration
    }

    private static func randomSuffix() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }
}
