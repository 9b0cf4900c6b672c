import Foundation
import MQTTCore

/// The password files, ACLs and JWT keys a configuration names, read once at start and again
/// on every reload, and the built-in decision on who may connect.
///
/// Per listener with `per_listener_settings true`, else one set for all: the material is
/// keyed by the ``SecuritySettings`` value, so listeners sharing settings share what is loaded.
final class SecurityPolicy: Sendable {
    struct Material: Sendable {
        var passwordFile: PasswordFile?
        var acl: AccessControlList?
        var jwt: JWTVerifier?
    }

    private let materials: [SecuritySettings: Material]
    /// Whether any ACL is in force: when not, no message is checked.
    let hasACL: Bool

    /// No files: `allow_anonymous` decides alone and every topic is open.
    static let open = SecurityPolicy(materials: [:])

    private init(materials: [SecuritySettings: Material]) {
        self.materials = materials
        self.hasACL = materials.values.contains { $0.acl != nil }
    }

    /// Reads every file the configuration names; the first unreadable or malformed one
    /// is the error (naming its file and line).
    static func load(_ configuration: BrokerConfiguration) async throws(ConfigurationError) -> SecurityPolicy {
        var settingsInUse: Set<SecuritySettings> = [configuration.security]
        if configuration.perListenerSettings {
            settingsInUse = Set(configuration.listeners.map(\.security))
        }
        var materials: [SecuritySettings: Material] = [:]
        for settings in settingsInUse {
            var material = Material()
            if let path = settings.passwordFile { material.passwordFile = try PasswordFile(contentsOf: path) }
            if let path = settings.aclFile { material.acl = try AccessControlList(contentsOf: path) }
            if let jwt = settings.jwt { material.jwt = try await JWTVerifier(settings: jwt) }
            materials[settings] = material
        }
        return SecurityPolicy(materials: materials)
    }

    private func material(on listener: BrokerConfiguration.Listener, _ configuration: BrokerConfiguration) -> Material {
        materials[configuration.security(on: listener)] ?? Material()
    }

    /// Whether connecting through `listener` needs more than the `allow_anonymous` rule (a
    /// password file, a JWT key or a certificate identity): then it runs off the event loop.
    func needsCredentialsCheck(on listener: BrokerConfiguration.Listener, _ configuration: BrokerConfiguration) -> Bool {
        let material = material(on: listener, configuration)
        return material.passwordFile != nil || material.jwt != nil || listener.tls.useIdentityAsUsername
            || listener.tls.useSubjectAsUsername
    }

    /// mosquitto's rules, in order: a certificate identity when the listener takes the
    /// username from it; else a username found in the password file must give its password;
    /// else a password that is a JWT must verify; else a client is anonymous, admitted only
    /// when `allow_anonymous` is true (and, as in mosquitto, a username that no password file
    /// or JWT vouches for counts as anonymous when no password file is configured).
    func authenticate(_ request: ConnectRequest, configuration: BrokerConfiguration) async -> AuthenticationResult {
        let listener = request.listener
        let fromCertificate = certificateUsername(for: listener, certificate: request.clientCertificate)
        if let refusal = fromCertificate.refusal {
            // mosquitto answers "bad user name or password" here.
            return .refused(.badUserNameOrPassword, why: refusal)
        }
        if let username = fromCertificate.username {
            // As in mosquitto, the password file is not consulted for a certificate identity.
            return .accepted(username: username, method: "certificate")
        }
        let material = material(on: listener, configuration)
        let password = request.password.map { Array($0.readableBytesView) }
        if let username = request.username, let passwords = material.passwordFile, passwords.hash(for: username) != nil {
            guard let password, passwords.verify(username: username, password: password) else {
                return .refused(.notAuthorized, why: "wrong password for user \(username)")
            }
            return .accepted(username: username, method: "password_file")
        }
        if let jwt = material.jwt, let password {
            switch await jwt.verify(String(decoding: password, as: UTF8.self), username: request.username) {
            case .accepted(let username): return .accepted(username: username, method: "jwt")
            case .refused(let reason, let why): return .refused(reason, why: why)
            }
        }
        if let username = request.username, material.passwordFile != nil {
            _ = PasswordHash.decoy.verify(password ?? [])
            return .refused(.notAuthorized, why: "user \(username) is not in the password file")
        }
        if material.jwt != nil && material.passwordFile == nil && request.username != nil {
            return .refused(.notAuthorized, why: "no JWT was given as the password")
        }
        guard configuration.allowsAnonymous(on: listener) else {
            return .refused(.notAuthorized, why: "anonymous clients are not allowed")
        }
        return .accepted(username: request.username, method: "anonymous")
    }

    /// The hash `username` has in the password file of `listener`, if any.
    func passwordHash(on listener: BrokerConfiguration.Listener, _ configuration: BrokerConfiguration, username: String) -> PasswordHash? {
        material(on: listener, configuration).passwordFile?.hash(for: username)
    }

    /// Whether a client admitted earlier would still be admitted: mosquitto re-checks on
    /// reload, and so do we for password-file users (same hash) and anonymous clients.
    func stillAdmits(_ identity: Session.Identity, on listener: BrokerConfiguration.Listener, _ configuration: BrokerConfiguration) -> Bool {
        switch identity.method {
        case "password_file":
            guard let username = identity.username else { return false }
            return passwordHash(on: listener, configuration, username: username) == identity.credential
        case "anonymous":
            return configuration.allowsAnonymous(on: listener)
        default:
            return true
        }
    }

    /// The rules for one client, or nil when its listener has no ACL (everything allowed).
    func access(
        on listener: BrokerConfiguration.Listener,
        _ configuration: BrokerConfiguration,
        username: String?,
        clientID: String
    )
        -> ClientAccess?
    {
        material(on: listener, configuration).acl?.access(username: username, clientID: clientID)
    }
}
