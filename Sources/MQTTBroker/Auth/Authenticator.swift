import MQTTCore
import NIOCore

/// What a client presented in CONNECT, for an ``Authenticator`` to decide on.
public struct ConnectRequest: Sendable {
    public var clientIdentifier: String
    public var username: String?
    public var password: ByteBuffer?
    public var protocolVersion: MQTTProtocolVersion
    /// The listener the client connected to.
    public var listener: BrokerConfiguration.Listener
    public var remoteAddress: SocketAddress?
    public var properties: Properties
    /// The verified client certificate on a TLS listener that asked for one.
    public var clientCertificate: ClientCertificateIdentity?
}

/// Who a verified client certificate names.
public struct ClientCertificateIdentity: Sendable, Hashable {
    /// The subject's common name (CN), the username with `use_identity_as_username`.
    public var commonName: String?
    /// The whole subject in RFC 2253 form (`CN=cam-7,O=Acme`), with `use_subject_as_username`.
    public var subject: String

    public init(commonName: String?, subject: String) {
        self.commonName = commonName
        self.subject = subject
    }
}

/// An authenticator's decision.
public enum AuthenticationResult: Sendable, Hashable {
    /// Admitted, with the user name the ACL will see (a certificate CN, a JWT claim, ...).
    case accepted(username: String?, method: String)
    /// Refused with a 5.0 reason code (sent as the closest 3.1.1 return code to 3.1.1 clients).
    case refused(ReasonCode, why: String)
}

/// Decides who may connect: the seam for password files, client certificates and JWTs.
///
/// Runs off the event loop (it may hash passwords or verify signatures); the connection
/// waits for it and keeps any packets the client sends meanwhile.
public protocol Authenticator: Sendable {
    func authenticate(_ request: ConnectRequest) async -> AuthenticationResult
}
