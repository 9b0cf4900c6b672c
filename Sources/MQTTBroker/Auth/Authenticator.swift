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
