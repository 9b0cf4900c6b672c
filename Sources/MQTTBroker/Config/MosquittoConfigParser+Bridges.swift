import Foundation
import MQTTCore

extension MosquittoConfigParser {
    /// The bridge keys, each applying to the `connection` block it follows.
    static let bridgeKeys: Set<String> = [
        "address", "addresses", "topic", "bridge_protocol_version", "cleansession", "local_clientid", "remote_clientid", "clientid",
        "remote_username", "username", "remote_password", "password", "keepalive_interval", "restart_timeout", "try_private",
        "notifications", "notifications_local_only", "notification_topic", "bridge_attempt_unsubscribe", "bridge_outgoing_retain",
        "bridge_cafile", "bridge_capath", "bridge_certfile", "bridge_keyfile", "bridge_insecure", "bridge_tls_version",
        "bridge_max_packet_size", "round_robin", "start_type", "idle_timeout", "threshold", "bridge_jwt_command",
    ]

    /// mosquitto's bridge keys that Databus does not implement yet: refused, never ignored.
    static let bridgeKeysNotYetSupported: Set<String> = [
        "local_username", "local_password", "local_cleansession", "bridge_bind_address", "bridge_alpn", "bridge_identity", "bridge_psk",
        "bridge_require_ocsp", "bridge_tcp_keepalive", "bridge_tcp_user_timeout", "bridge_receive_maximum",
        "bridge_session_expiry_interval", "bridge_max_topic_alias", "bridge_reload_type", "bridge_ciphers", "bridge_ciphers_tls1.3",
    ]

    /// Where each bridge's `connection` line is, for errors found once the block is read.
    struct BridgeParseState {
        var current: Int?
        var lines: [(file: String, line: Int)] = []
        /// Keys given once per bridge that were seen, by bridge.
        var seen: [Set<String>] = []
    }

    static func applyConnection(_ line: LineContext, to configuration: inout BrokerConfiguration, state: inout ParseState) throws(ConfigurationError)
    {
        let name = try line.single()
        if configuration.bridges.contains(where: { $0.name == name }) {
            throw line.error("a bridge named \"\(name)\" is defined already")
        }
        configuration.bridges.append(BridgeConfiguration(name: name))
        state.bridges.current = configuration.bridges.count - 1
        state.bridges.lines.append((line.file, line.line))
        state.bridges.seen.append([])
    }

    static func applyBridge(_ line: LineContext, to configuration: inout BrokerConfiguration, state: inout ParseState) throws(ConfigurationError) {
        guard let index = state.bridges.current else {
            throw line.error("is a bridge key: it must follow a `connection NAME` line")
        }
        // Aliases mosquitto keeps for older files.
        let key =
            ["clientid": "remote_clientid", "username": "remote_username", "password": "remote_password", "addresses": "address"][line.key]
            ?? line.key
        if key != "topic" {
            guard state.bridges.seen[index].insert(key).inserted else {
                throw line.error("is given twice for bridge \"\(configuration.bridges[index].name)\"")
            }
        }
        try applyBridgeKey(key, line, to: &configuration.bridges[index])
    }

    private static func applyBridgeKey(_ key: String, _ line: LineContext, to bridge: inout BridgeConfiguration) throws(ConfigurationError) {
        func path() throws(ConfigurationError) -> String {
            guard !line.rest.isEmpty else { throw line.error("expects a path") }
            return line.rest
        }
        switch key {
        case "address":
            guard !line.values.isEmpty else { throw line.error("expects one or more host[:port]") }
            bridge.addresses = []
            for word in line.values { bridge.addresses.append(try address(word, line)) }
        case "topic":
            bridge.topics.append(try topic(line))
        case "bridge_protocol_version":
            switch try line.single() {
            case "mqttv31": bridge.protocolVersion = .v3_1
            case "mqttv311": bridge.protocolVersion = .v3_1_1
            case "mqttv50": bridge.protocolVersion = .v5
            case let other: throw line.error("expects mqttv31, mqttv311 or mqttv50, not \"\(other)\"")
            }
        case "cleansession": bridge.cleanSession = try line.bool()
        case "local_clientid": bridge.localClientIDSetting = try clientID(line)
        case "remote_clientid": bridge.remoteClientIDSetting = try clientID(line)
        case "remote_username": bridge.remoteUsername = try line.single()
        case "remote_password": bridge.remotePassword = try line.single()
        case "bridge_jwt_command":
            guard !line.rest.isEmpty else { throw line.error("expects a command") }
            bridge.jwtCommand = line.rest
        case "keepalive_interval":
            bridge.keepaliveInterval = try line.int(in: 5...65_535)
        case "restart_timeout":
            guard (1...2).contains(line.values.count), let first = Int(line.values[0]), first >= 1 else {
                throw line.error("expects SECONDS, or BASE CAP (whole seconds, at least 1)")
            }
            if line.values.count == 1 {
                bridge.restartTimeout = .constant(seconds: first)
            } else {
                guard let cap = Int(line.values[1]), cap > first else {
                    throw line.error("the cap (\(line.values[1])) must be a whole number of seconds above the base (\(first))")
                }
                bridge.restartTimeout = .backoff(base: first, cap: cap)
            }
        case "try_private": bridge.tryPrivate = try line.bool()
        case "notifications": bridge.notifications = try line.bool()
        case "notifications_local_only": bridge.notificationsLocalOnly = try line.bool()
        case "notification_topic":
            let topic = try line.single()
            do {
                try TopicName.validate(topic)
            } catch {
                throw line.error("\"\(topic)\" is not a topic name: \(error)")
            }
            bridge.notificationTopicSetting = topic
        case "bridge_attempt_unsubscribe": bridge.attemptUnsubscribe = try line.bool()
        case "bridge_outgoing_retain": bridge.outgoingRetain = try line.bool()
        case "bridge_cafile": bridge.tls.caFile = try path()
        case "bridge_capath": bridge.tls.caPath = try path()
        case "bridge_certfile": bridge.tls.certFile = try path()
        case "bridge_keyfile": bridge.tls.keyFile = try path()
        case "bridge_insecure": bridge.tls.insecure = try line.bool()
        case "bridge_tls_version":
            let text = try line.single()
            guard let version = TLSSettings.Version(rawValue: text) else {
                throw line.error("expects tlsv1.3, tlsv1.2 or tlsv1.1, not \"\(text)\"")
            }
            bridge.tls.minimumVersion = version
        case "bridge_max_packet_size":
            let value = try line.int(in: 0...268_435_460)
            if value > 0 && value < 20 { throw line.error("must be 0 (no limit) or at least 20 bytes") }
            bridge.maxPacketSize = value
        case "round_robin": bridge.roundRobin = try line.bool()
        case "start_type":
            let text = try line.single()
            guard let type = BridgeConfiguration.StartType(rawValue: text) else {
                throw line.error("expects automatic, lazy or once, not \"\(text)\"")
            }
            bridge.startType = type
        case "idle_timeout": bridge.idleTimeout = try line.int(in: 1...Int(Int32.max))
        case "threshold": bridge.threshold = try line.int(in: 1...Int(Int32.max))
        default: throw line.error("unknown bridge key")
        }
    }

    /// `host[:port]`: the port follows the last colon, so an IPv6 address needs one (as in
    /// mosquitto); `[v6]:port` is accepted too.
    private static func address(_ word: String, _ line: LineContext) throws(ConfigurationError) -> BridgeConfiguration.Address {
        var host = Substring(word)
        var port = 1883
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            let rest = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !rest.isEmpty {
                guard rest.hasPrefix(":"), let number = Int(rest.dropFirst()), (1...65_535).contains(number) else {
                    throw line.error("\"\(word)\" is not host[:port]")
                }
                port = number
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let number = Int(host[host.index(after: colon)...]), (1...65_535).contains(number) else {
                throw line.error("\"\(word)\": the port must be 1-65535 (an IPv6 address needs its port)")
            }
            port = number
            host = host[..<colon]
        }
        guard !host.isEmpty else { throw line.error("\"\(word)\" has no host") }
        return BridgeConfiguration.Address(host: String(host), port: port)
    }

    private static func clientID(_ line: LineContext) throws(ConfigurationError) -> String {
        let value = try line.single()
        guard value.utf8.count <= 65_535 else { throw line.error("is too long") }
        return value
    }

    /// `topic PATTERN [out|in|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX]`, with `""` for an empty
    /// pattern or prefix, and mosquitto's rules for which may be empty.
    private static func topic(_ line: LineContext) throws(ConfigurationError) -> BridgeConfiguration.Topic {
        let words = line.values.map { $0 == "\"\"" ? "" : $0 }
        guard (1...5).contains(words.count) else {
            throw line.error("expects PATTERN [out|in|both] [QOS] [LOCAL_PREFIX] [REMOTE_PREFIX]")
        }
        var topic = BridgeConfiguration.Topic(pattern: words[0])
        if words.count > 1 {
            guard let direction = BridgeConfiguration.Direction(rawValue: words[1]) else {
                throw line.error("the direction must be out, in or both, not \"\(words[1])\"")
            }
            topic.direction = direction
        }
        if words.count > 2 {
            guard let number = UInt8(words[2]), let qos = QoS(rawValue: number) else {
                throw line.error("the QoS must be 0, 1 or 2, not \"\(words[2])\"")
            }
            topic.qos = qos
        }
        if words.count > 3 { topic.localPrefix = words[3] }
        if words.count > 4 { topic.remotePrefix = words[4] }
        for (name, prefix) in [("local", topic.localPrefix), ("remote", topic.remotePrefix)] where prefix.contains(where: { $0 == "+" || $0 == "#" })
        {
            throw line.error("the \(name) prefix \"\(prefix)\" may not hold a wildcard")
        }
        if topic.pattern.isEmpty && (topic.localPrefix.isEmpty || topic.remotePrefix.isEmpty) {
            throw line.error("an empty pattern (\"\") needs both a local and a remote prefix: it maps one topic to another")
        }
        for (side, filter) in [("local", topic.localFilter), ("remote", topic.remoteFilter)] {
            do {
                try TopicFilter.validate(filter)
            } catch {
                throw line.error("the \(side) topic \"\(filter)\" is not a valid filter: \(error)")
            }
        }
        return topic
    }

    /// Checks each bridge once the whole file is read.
    static func finishBridges(_ configuration: BrokerConfiguration, state: ParseState) throws(ConfigurationError) {
        let hostname = BridgeConfiguration.hostname
        var localIDs: [String: String] = [:]
        for (index, bridge) in configuration.bridges.enumerated() {
            let origin = state.bridges.lines[index]
            func failure(_ message: String) -> ConfigurationError {
                ConfigurationError(file: origin.file, line: origin.line, key: "connection", message: "bridge \"\(bridge.name)\": \(message)")
            }
            if bridge.addresses.isEmpty { throw failure("has no address line") }
            if bridge.topics.isEmpty { throw failure("has no topic line") }
            if bridge.remotePassword != nil && bridge.jwtCommand != nil {
                throw failure("remote_password and bridge_jwt_command cannot both be set")
            }
            if (bridge.remotePassword != nil || bridge.jwtCommand != nil) && bridge.remoteUsername == nil && bridge.protocolVersion != .v5 {
                throw failure("a password (remote_password or bridge_jwt_command) needs remote_username before MQTT 5")
            }
            if (bridge.tls.certFile == nil) != (bridge.tls.keyFile == nil) {
                throw failure("bridge_certfile and bridge_keyfile go together")
            }
            if (bridge.tls.certFile != nil || bridge.tls.insecure) && !bridge.tls.isEnabled {
                throw failure("TLS needs bridge_cafile or bridge_capath")
            }
            let localID = bridge.localClientID(hostname: hostname)
            if let other = localIDs[localID] {
                throw failure("its local client identifier \"\(localID)\" is the one of bridge \"\(other)\"; set local_clientid")
            }
            localIDs[localID] = bridge.name
        }
    }
}

extension BridgeConfiguration {
    /// This computer's name, for the default client identifiers (`NAME.HOSTNAME`).
    public static var hostname: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
