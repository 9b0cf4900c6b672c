import Foundation

/// Reads mosquitto.conf syntax into a ``BrokerConfiguration``.
///
/// One `key value...` a line; `#` starts a comment line; `listener` starts a listener whose
/// settings follow it. Unknown keys, bad values and missing files are errors naming the file,
/// the line and the key. Keys of mosquitto that Databus does not implement yet are refused
/// with that reason rather than silently ignored.
public enum MosquittoConfigParser {
    /// Keys mosquitto knows that we do not implement yet; refused with a clear message.
    static let notYetSupported: Set<String> = [
        "psk_file", "psk_hint", "auth_plugin", "plugin", "auth_opt", "bridge", "protocol", "mount_point", "websockets_log_level", "http_dir",
        "socket_domain", "bind_interface",
        "queue_qos0_messages", "max_inflight_bytes", "upgrade_outgoing_qos", "allow_duplicate_messages",
        "check_retain_source", "autosave_interval", "autosave_on_changes", "persistence_file", "pid_file", "user",
        "retry_interval", "store_clean_interval", "log_facility", "log_timestamp", "log_timestamp_format",
        "connection_messages", "clientid_prefixes", "use_username_as_clientid", "listener_allow_anonymous",
        "listener_auto_id_prefix", "certfile_pkcs11", "keyform", "dhparamfile", "tls_engine", "tls_engine_kpass_sha1",
        "tls_keyform",
    ]

    /// Parses the file at `path` (and any `include_dir` it names).
    public static func parse(fileAt path: String) throws(ConfigurationError) -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        var state = ParseState()
        try parseFile(path, into: &configuration, state: &state)
        try finish(&configuration, state: state, file: path)
        return configuration
    }

    /// Parses configuration text; `file` names it in errors.
    public static func parse(_ text: String, file: String = "<configuration>") throws(ConfigurationError) -> BrokerConfiguration {
        var configuration = BrokerConfiguration()
        var state = ParseState()
        try parseText(text, file: file, into: &configuration, state: &state)
        try finish(&configuration, state: state, file: file)
        return configuration
    }

    struct ParseState {
        var currentListener: Int?
        /// Whether a `port` line made the default listener (index 0).
        var sawPort = false
        /// TLS keys given before any `listener` line: they belong to the default listener.
        var defaultTLS: TLSSettings?
        var defaultTLSLine: (file: String, line: Int)?
        var includeDepth = 0
        var sawLogDest = false
        var sawLogTypes = false
        var bridges = BridgeParseState()
    }

    private static func parseFile(
        _ path: String,
        into configuration: inout BrokerConfiguration,
        state: inout ParseState
    ) throws(ConfigurationError) {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(file: path, line: 0, key: nil, message: "cannot read the file: \(error.localizedDescription)")
        }
        try parseText(text, file: path, into: &configuration, state: &state)
    }

    private static func parseText(
        _ text: String,
        file: String,
        into configuration: inout BrokerConfiguration,
        state: inout ParseState
    ) throws(ConfigurationError) {
        // "\r\n" is one Character in Swift: splitting on isNewline handles LF and CRLF files alike.
        for (index, rawLine) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            var words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            // A word starting with # begins a trailing comment, which mosquitto ignores; in a bridge's
            // `topic` line the pattern (the second word) may be the wildcard #.
            let commentFrom = words.first == "topic" ? 2 : 1
            if let comment = words.dropFirst(commentFrom).firstIndex(where: { $0.hasPrefix("#") }) { words.removeSubrange(comment...) }
            let key = words[0]
            let values = Array(words.dropFirst())
            let rest = values.joined(separator: " ")
            let context = LineContext(file: file, line: index + 1, key: key, values: values, rest: rest)
            try apply(context, to: &configuration, state: &state)
        }
    }

    struct LineContext {
        let file: String
        let line: Int
        let key: String
        let values: [String]
        /// The whole value text, for keys whose value may hold spaces (paths).
        let rest: String

        func error(_ message: String) -> ConfigurationError {
            ConfigurationError(file: file, line: line, key: key, message: message)
        }

        func single() throws(ConfigurationError) -> String {
            guard values.count == 1 else { throw error("expects exactly one value, got \(values.count)") }
            return values[0]
        }

        func bool() throws(ConfigurationError) -> Bool {
            switch try single() {
            case "true", "1": return true
            case "false", "0": return false
            case let other: throw error("expects true or false, not \"\(other)\"")
            }
        }

        func int(in range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
            let text = try single()
            guard let value = Int(text), range.contains(value) else {
                throw error("expects a whole number in \(range.lowerBound)...\(range.upperBound), not \"\(text)\"")
            }
            return value
        }
    }

    private static func apply(
        _ line: LineContext,
        to configuration: inout BrokerConfiguration,
        state: inout ParseState
    ) throws(ConfigurationError) {
        switch line.key {
        case "listener":
            guard (1...2).contains(line.values.count), let port = Int(line.values[0]), (0...65_535).contains(port) else {
                throw line.error("expects a port (0-65535) and optionally an address")
            }
            configuration.listeners.append(.init(port: port, address: line.values.count == 2 ? line.values[1] : nil))
            state.currentListener = configuration.listeners.count - 1
        case "port":
            let port = try line.int(in: 0...65_535)
            configuration.listeners.insert(.init(port: port), at: 0)
            state.currentListener = state.currentListener.map { $0 + 1 }
            state.sawPort = true
        case "max_connections":
            let value = try line.int(in: -1...Int(Int32.max))
            if let current = state.currentListener {
                configuration.listeners[current].maxConnections = value
            } else {
                // Before any listener, it applies to the default listener as in mosquitto.
                for index in configuration.listeners.indices { configuration.listeners[index].maxConnections = value }
            }
        case "per_listener_settings": configuration.perListenerSettings = try line.bool()
        case "allow_anonymous":
            let value = try line.bool()
            if configuration.perListenerSettings, let current = state.currentListener {
                configuration.listeners[current].allowAnonymous = value
            } else {
                configuration.allowAnonymous = value
            }
        case "max_inflight_messages": configuration.maxInflightMessages = try line.int(in: 0...65_535)
        case "max_queued_messages": configuration.maxQueuedMessages = try line.int(in: 0...Int(Int32.max))
        case "max_queued_bytes": configuration.maxQueuedBytes = try line.int(in: 0...Int.max)
        case "message_size_limit": configuration.messageSizeLimit = try line.int(in: 0...268_435_455)
        case "max_packet_size":
            let value = try line.int(in: 0...268_435_460)
            if value > 0 && value < 20 { throw line.error("must be 0 (no limit) or at least 20 bytes") }
            configuration.maxPacketSize = value
        case "max_keepalive": configuration.maxKeepalive = UInt16(try line.int(in: 10...65_535))
        case "max_topic_alias": configuration.maxTopicAlias = UInt16(try line.int(in: 0...65_535))
        case "persistent_client_expiration": configuration.persistentClientExpiration = try duration(line)
        case "persistence": configuration.persistence = try line.bool()
        case "persistence_max_bytes": configuration.persistenceMaxBytes = try byteCount(line)
        case "backpressure": configuration.backpressure = try line.bool()
        case "persistence_location":
            guard !line.rest.isEmpty else { throw line.error("expects a folder") }
            configuration.persistenceLocation = line.rest
        case "retain_available": configuration.retainAvailable = try line.bool()
        case "allow_zero_length_clientid": configuration.allowZeroLengthClientID = try line.bool()
        case "auto_id_prefix":
            configuration.autoIDPrefix = try line.single()
        case "sys_interval": configuration.sysInterval = try line.int(in: 0...65_535)
        case "set_tcp_nodelay": configuration.setTCPNoDelay = try line.bool()
        case "threads": configuration.threads = try line.int(in: 0...1024)
        case "park_idle_connections": configuration.parkIdleConnections = try line.int(in: 0...86_400)
        case "connect_timeout": configuration.connectTimeout = try line.int(in: 1...3600)
        case "log_type":
            let text = try line.single()
            guard let type = BrokerConfiguration.LogType(rawValue: text) else {
                throw line.error(
                    "unknown log type \"\(text)\"; expected one of \(BrokerConfiguration.LogType.allCases.map(\.rawValue).joined(separator: ", "))"
                )
            }
            if !state.sawLogTypes { configuration.logTypes = [] }
            state.sawLogTypes = true
            configuration.logTypes.insert(type)
        case "log_dest":
            guard let kind = line.values.first else { throw line.error("expects stdout, stderr, file PATH or none") }
            let destination: BrokerConfiguration.LogDestination
            switch kind {
            case "stdout": destination = .stdout
            case "stderr": destination = .stderr
            case "none": destination = .none
            case "file":
                let path = line.rest.dropFirst("file".count).trimmingCharacters(in: .whitespaces)
                guard !path.isEmpty else { throw line.error("log_dest file expects a path") }
                destination = .file(path)
            case "syslog", "topic", "dlt":
                throw line.error("log_dest \(kind) is not supported by Databus; use stdout, stderr, file PATH or none")
            default: throw line.error("expects stdout, stderr, file PATH or none, not \"\(kind)\"")
            }
            if !state.sawLogDest { configuration.logDestinations = [] }
            state.sawLogDest = true
            configuration.logDestinations.append(destination)
        case "metrics_listener":
            guard (1...2).contains(line.values.count), let port = Int(line.values[0]), (0...65_535).contains(port) else {
                throw line.error("expects a port (0-65535) and optionally an address")
            }
            configuration.metricsListener = .init(port: port, address: line.values.count == 2 ? line.values[1] : nil)
        case "cafile", "capath", "certfile", "keyfile", "require_certificate", "use_identity_as_username",
            "use_subject_as_username", "tls_version", "ciphers", "ciphers_tls1.3", "crlfile":
            if let current = state.currentListener {
                try applyTLS(line, to: &configuration.listeners[current].tls)
            } else {
                var settings = state.defaultTLS ?? TLSSettings()
                try applyTLS(line, to: &settings)
                state.defaultTLS = settings
                state.defaultTLSLine = (line.file, line.line)
            }
        case "password_file", "acl_file", "jwt_keyfile", "jwt_jwksfile", "jwt_algorithms", "jwt_audience", "jwt_issuer",
            "jwt_username_claim", "jwt_clock_skew":
            if configuration.perListenerSettings, let current = state.currentListener {
                try applySecurity(line, to: &configuration.listeners[current].security)
            } else {
                try applySecurity(line, to: &configuration.security)
            }
        case "connection":
            try applyConnection(line, to: &configuration, state: &state)
        case _ where bridgeKeys.contains(line.key):
            try applyBridge(line, to: &configuration, state: &state)
        case "include_dir":
            let folder = line.rest
            guard state.includeDepth < 8 else { throw line.error("include_dir nested too deeply") }
            let names: [String]
            do {
                names = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasSuffix(".conf") }.sorted()
            } catch {
                throw line.error("cannot read folder \(folder): \(error.localizedDescription)")
            }
            state.includeDepth += 1
            for name in names { try parseFile(folder + "/" + name, into: &configuration, state: &state) }
            state.includeDepth -= 1
        default:
            if notYetSupported.contains(line.key) || bridgeKeysNotYetSupported.contains(line.key) || line.key.hasPrefix("auth_opt_")
                || line.key.hasPrefix("plugin_opt_")
            {
                throw line.error("is a mosquitto key that Databus does not support yet")
            }
            throw line.error("unknown configuration key")
        }
    }

    /// Checks what only the whole file can tell.
    private static func finish(
        _ configuration: inout BrokerConfiguration,
        state: ParseState,
        file: String
    ) throws(ConfigurationError) {
        try finishBridges(configuration, state: state)
        if let tls = state.defaultTLS, let where_ = state.defaultTLSLine {
            guard state.sawPort else {
                throw ConfigurationError(
                    file: where_.file,
                    line: where_.line,
                    key: nil,
                    message: "TLS settings must follow a listener (or port) line"
                )
            }
            configuration.listeners[0].tls = tls
        }
        for listener in configuration.listeners where listener.tls != TLSSettings() {
            let tls = listener.tls
            let name = "listener \(listener.port)"
            if tls.certFile == nil || tls.keyFile == nil {
                throw ConfigurationError(file: file, line: 0, key: nil, message: "\(name): TLS needs both certfile and keyfile")
            }
            if (tls.requireCertificate || tls.useIdentityAsUsername || tls.useSubjectAsUsername || tls.crlFile != nil)
                && tls.caFile == nil && tls.caPath == nil
            {
                throw ConfigurationError(
                    file: file,
                    line: 0,
                    key: nil,
                    message: "\(name): client certificates need cafile or capath"
                )
            }
        }
    }

    private static func applyTLS(_ line: LineContext, to tls: inout TLSSettings) throws(ConfigurationError) {
        func path() throws(ConfigurationError) -> String {
            guard !line.rest.isEmpty else { throw line.error("expects a path") }
            return line.rest
        }
        switch line.key {
        case "cafile": tls.caFile = try path()
        case "capath": tls.caPath = try path()
        case "certfile": tls.certFile = try path()
        case "keyfile": tls.keyFile = try path()
        case "crlfile": tls.crlFile = try path()
        case "require_certificate": tls.requireCertificate = try line.bool()
        case "use_identity_as_username": tls.useIdentityAsUsername = try line.bool()
        case "use_subject_as_username": tls.useSubjectAsUsername = try line.bool()
        case "ciphers": tls.ciphers = try line.single()
        case "ciphers_tls1.3": tls.ciphersTLS13 = try line.single()
        case "tls_version":
            let text = try line.single()
            guard let version = TLSSettings.Version(rawValue: text) else {
                throw line.error("expects tlsv1.3, tlsv1.2 or tlsv1.1, not \"\(text)\"")
            }
            tls.minimumVersion = version
        default: throw line.error("unknown TLS key")
        }
    }

    private static func applySecurity(_ line: LineContext, to security: inout SecuritySettings) throws(ConfigurationError) {
        func path() throws(ConfigurationError) -> String {
            guard !line.rest.isEmpty else { throw line.error("expects a path") }
            return line.rest
        }
        var jwt = security.jwt ?? JWTSettings()
        switch line.key {
        case "password_file":
            security.passwordFile = try path()
            return
        case "acl_file":
            security.aclFile = try path()
            return
        case "jwt_keyfile": jwt.keyFiles.append(try path())
        case "jwt_jwksfile": jwt.jwksFile = try path()
        case "jwt_algorithms":
            let names = line.values.flatMap { $0.split(separator: ",") }.map { $0.uppercased() }
            guard !names.isEmpty else { throw line.error("expects one or more of ES256, RS256, HS256") }
            for name in names where !["ES256", "RS256", "HS256"].contains(name) {
                throw line.error("algorithm \"\(name)\" is not accepted; use ES256, RS256 or HS256")
            }
            jwt.algorithms = names
        case "jwt_audience": jwt.audience = try line.single()
        case "jwt_issuer": jwt.issuer = try line.single()
        case "jwt_username_claim": jwt.usernameClaim = try line.single()
        case "jwt_clock_skew": jwt.clockSkew = try line.int(in: 0...86_400)
        default: throw line.error("unknown security key")
        }
        security.jwt = jwt
    }

    /// mosquitto's `persistent_client_expiration` syntax: a number and h, d, w, m or y.
    /// A size in bytes: a whole number, optionally followed by K, M or G (powers of 1024).
    private static func byteCount(_ line: LineContext) throws(ConfigurationError) -> Int {
        let text = try line.single()
        let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30]
        var digits = Substring(text)
        var multiplier = 1
        if let last = digits.last, let unit = units[last] {
            multiplier = unit
            digits = digits.dropLast()
        }
        guard let value = Int(digits), value >= 0, value <= Int(Int64.max) / multiplier else {
            throw line.error("expects a number of bytes, optionally followed by K, M or G (e.g. 2G), not \"\(text)\"")
        }
        return value * multiplier
    }

    private static func duration(_ line: LineContext) throws(ConfigurationError) -> Duration {
        let text = try line.single()
        guard let unit = text.last, let amount = Int(text.dropLast()), amount > 0 else {
            throw line.error("expects a number followed by h, d, w, m or y (e.g. 2d), not \"\(text)\"")
        }
        let hours: Int
        switch unit {
        case "h": hours = 1
        case "d": hours = 24
        case "w": hours = 24 * 7
        case "m": hours = 24 * 30
        case "y": hours = 24 * 365
        default: throw line.error("unit must be h, d, w, m or y, not \"\(unit)\"")
        }
        return .seconds(amount * hours * 3600)
    }
}
