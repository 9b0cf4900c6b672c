import Foundation
import MQTTBroker

/// The folder `databus up` keeps everything in: the broker's `mosquitto.conf`, `passwd`, `acl`,
/// `broker.db`, the LPR store `lpr.sqlite`, `certs/` (a CA, the broker's and per-client
/// certificates) and the API tokens. What is missing is made on first start; what is there is
/// used as it is, so a user can edit the files and run again.
public struct UpDataFolder: Sendable {
    /// The folder, absolute.
    public let path: String

    /// The user the embedded LPR server logs in to the broker as.
    public static let serverUsername = "lprserver"
    /// The clients certificates are made for on first start.
    public static let firstClients = [serverUsername, "CAM001"]

    public init(path: String) {
        self.path = URL(fileURLWithPath: path).standardizedFileURL.path
    }

    public var configurationFile: String { path + "/mosquitto.conf" }
    public var passwordFile: String { path + "/passwd" }
    public var aclFile: String { path + "/acl" }
    public var certificatesFolder: String { path + "/certs" }
    public var databaseFile: String { path + "/lpr.sqlite" }
    public var adminTokenFile: String { path + "/api-token" }
    public var readOnlyTokenFile: String { path + "/api-token-read-only" }
    public var serverPasswordFile: String { path + "/server-password" }
    /// Made once the admin token has been printed at a start that became ready.
    public var tokenShownMarker: String { path + "/.api-token-shown" }

    /// What ``prepare()`` found or made.
    public struct Contents: Sendable {
        /// The admin API token.
        public var adminToken: String
        /// A read-only API token (GET only).
        public var readOnlyToken: String
        /// Whether the admin token has not been shown yet (first start, or a first start that
        /// never became ready): print it, then call ``UpDataFolder/markTokenShown()``.
        public var madeAdminToken: Bool
        /// The embedded server's broker password.
        public var serverPassword: String
        /// Files made now, for the log.
        public var made: [String]
    }

    /// Makes what is missing: the folder (0700), certificates, password file (with the server's
    /// user), ACL, mosquitto.conf and the API tokens (0600).
    public func prepare(now: Date = Date()) throws -> Contents {
        var made: [String] = []
        let manager = FileManager.default
        if !manager.fileExists(atPath: path) {
            try manager.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            made.append(path)
        }
        if !manager.fileExists(atPath: certificatesFolder + "/ca/ca.crt") || !manager.fileExists(atPath: certificatesFolder + "/broker/broker.crt") {
            var hosts = ["localhost"]
            let hostName = ProcessInfo.processInfo.hostName
            if !hostName.isEmpty, hostName != "localhost" { hosts.append(hostName) }
            let request = CertificateRequest(hosts: hosts, ips: ["127.0.0.1", "::1"], clients: Self.firstClients)
            _ = try CertificateDirectory(path: certificatesFolder).create(request, now: now)
            made.append(certificatesFolder)
        }
        // The server's broker password: kept in a file of ours and in the password file.
        var serverPassword = (try? String(contentsOfFile: serverPasswordFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        var passwords = manager.fileExists(atPath: passwordFile) ? try PasswordFile(contentsOf: passwordFile) : PasswordFile()
        if serverPassword.isEmpty || !passwords.verify(username: Self.serverUsername, password: Array(serverPassword.utf8)) {
            if serverPassword.isEmpty {
                serverPassword = Self.randomHex(bytes: 24)
                try Self.writeSecret(serverPassword, to: serverPasswordFile)
                made.append(serverPasswordFile)
            }
            passwords.set(
                Self.serverUsername,
                PasswordHash(hashing: Array(serverPassword.utf8), algorithm: .pbkdf2SHA512(iterations: PasswordHash.defaultIterations))
            )
            try PasswordFileTool.write(passwords, to: passwordFile)
            made.append(passwordFile)
        }
        if !manager.fileExists(atPath: aclFile) {
            try Self.defaultACL.write(toFile: aclFile, atomically: true, encoding: .utf8)
            made.append(aclFile)
        }
        if !manager.fileExists(atPath: configurationFile) {
            try defaultConfiguration.write(toFile: configurationFile, atomically: true, encoding: .utf8)
            made.append(configurationFile)
        }
        var adminToken = Self.readSecret(adminTokenFile)
        if adminToken == nil {
            adminToken = "dbadm_" + Self.randomHex(bytes: 32)
            try Self.writeSecret(adminToken!, to: adminTokenFile)
            try? manager.removeItem(atPath: tokenShownMarker)
            made.append(adminTokenFile)
        }
        let madeAdminToken = !manager.fileExists(atPath: tokenShownMarker)
        var readOnlyToken = Self.readSecret(readOnlyTokenFile)
        if readOnlyToken == nil {
            readOnlyToken = "dbro_" + Self.randomHex(bytes: 32)
            try Self.writeSecret(readOnlyToken!, to: readOnlyTokenFile)
            made.append(readOnlyTokenFile)
        }
        return Contents(
            adminToken: adminToken!,
            readOnlyToken: readOnlyToken!,
            madeAdminToken: madeAdminToken,
            serverPassword: serverPassword,
            made: made
        )
    }

    /// Notes that the admin token was printed, so later starts do not print it again.
    public func markTokenShown() {
        _ = FileManager.default.createFile(atPath: tokenShownMarker, contents: Data(), attributes: [.posixPermissions: 0o600])
    }

    /// The mosquitto.conf made on first start.
    public var defaultConfiguration: String {
        """
        # databus up: the broker's configuration, made on first start. Edit it and run databus up again
        # (mosquitto.conf syntax; databus broker --help). --mqtt HOST:PORT and --mqtts HOST:PORT replace
        # the plain and the TLS listeners below for one run.

        # Plain MQTT, on loopback only. The LPR server inside databus up connects here.
        listener 1883 127.0.0.1

        # Anonymous clients are let in only while every listener is on a loopback address: a listener
        # on any other address needs allow_anonymous false (users in the password file) or client
        # certificates (--mqtts).
        allow_anonymous true
        password_file \(passwordFile)
        acl_file \(aclFile)

        # Crash-safe: QoS 1 and 2 messages are acknowledged only once in broker.db.
        persistence true
        persistence_location \(path)/

        # The LPR server acknowledges a detection only once it is stored, so it wants many in
        # flight at once (mosquitto's default, 20, would cap it at one commit per 20 detections).
        max_inflight_messages 1000

        """
    }

    /// The ACL made on first start.
    public static let defaultACL = """
        # databus up: who may read and write what (mosquitto's acl_file syntax), made on first start.
        # Lines before the first "user" are for anonymous clients (loopback only), "pattern" lines for
        # everyone: %u is the user name (a client certificate's CN, or the password file's name).

        topic readwrite lprserver/#
        topic read $SYS/#

        # A camera whose certificate or user name is its camera id uses its own topics.
        pattern readwrite lprserver/cameras/%u/#
        pattern read lprserver/blacklist/updates
        pattern read lprserver/system/status

        user \(serverUsername)
        topic readwrite lprserver/#
        topic read $SYS/#

        """

    // MARK: Listener rules

    /// Whether `address` is a loopback address (an empty one means every address: not loopback).
    public static func isLoopback(_ address: String?) -> Bool {
        guard let address, !address.isEmpty else { return false }
        return address == "localhost" || address == "::1" || address.hasPrefix("127.") || address == "[::1]"
    }

    /// Refuses a configuration that lets anonymous clients in on a listener other than loopback:
    /// anonymous MQTT is allowed only while every listener on which it applies is on loopback.
    /// A TLS listener that requires client certificates is fine anywhere.
    /// - Throws: a message saying what to add.
    public func checkListeners(_ configuration: BrokerConfiguration) throws(UpSetupError) {
        guard configuration.listeners.contains(where: { !$0.tls.isEnabled }) else {
            throw UpSetupError(
                "databus up needs one plain MQTT listener for its LPR server: keep \"listener 1883 127.0.0.1\" in \(configurationFile) (or give --mqtt 127.0.0.1:1883)"
            )
        }
        for listener in configuration.listeners where !Self.isLoopback(listener.address) {
            if listener.tls.isEnabled && listener.tls.requireCertificate { continue }
            let anonymous = configuration.perListenerSettings ? (listener.allowAnonymous ?? false) : configuration.allowAnonymous
            guard anonymous else { continue }
            let name = "\(listener.address ?? "every address"):\(listener.port)"
            throw UpSetupError(
                """
                refusing to let anonymous MQTT clients in on \(name), which is not a loopback address. Either:
                  - give cameras client certificates: --mqtts \(listener.address ?? "0.0.0.0"):8883 (certificates in \(certificatesFolder); \
                add one with databus certs create --out \(certificatesFolder) --client CAMERA-ID) and keep --mqtt on 127.0.0.1, or
                  - give them passwords: databus passwd -b \(passwordFile) CAMERA-ID PASSWORD, then set allow_anonymous false in \(configurationFile)
                """
            )
        }
    }

    /// The broker configuration: the folder's mosquitto.conf with the flags' listeners in place of
    /// its plain (`mqtt`) or TLS (`mqtts`) ones. A TLS listener from `mqtts` uses the folder's
    /// certificates and requires a client certificate whose CN becomes the user name.
    public func brokerConfiguration(mqtt: (host: String, port: Int)?, mqtts: (host: String, port: Int)?) throws -> BrokerConfiguration {
        var configuration = try MosquittoConfigParser.parse(fileAt: configurationFile)
        if let mqtt {
            configuration.listeners.removeAll { !$0.tls.isEnabled }
            configuration.listeners.insert(.init(port: mqtt.port, address: mqtt.host), at: 0)
        }
        if let mqtts {
            configuration.listeners.removeAll { $0.tls.isEnabled }
            var listener = BrokerConfiguration.Listener(port: mqtts.port, address: mqtts.host)
            listener.tls.caFile = certificatesFolder + "/broker/ca.crt"
            listener.tls.certFile = certificatesFolder + "/broker/broker.crt"
            listener.tls.keyFile = certificatesFolder + "/broker/broker.key"
            listener.tls.requireCertificate = true
            listener.tls.useIdentityAsUsername = true
            configuration.listeners.append(listener)
        }
        return configuration
    }

    // MARK: Files

    static func randomHex(bytes count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    static func readSecret(_ file: String) -> String? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        let secret = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return secret.isEmpty ? nil : secret
    }

    /// Writes a secret readable by its owner only.
    static func writeSecret(_ secret: String, to file: String) throws {
        let manager = FileManager.default
        try? manager.removeItem(atPath: file)
        guard manager.createFile(atPath: file, contents: Data((secret + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw UpSetupError("cannot write \(file)")
        }
    }
}

/// Why `databus up` cannot start as configured, in words a user can act on.
public struct UpSetupError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
